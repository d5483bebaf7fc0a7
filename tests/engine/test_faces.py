"""Face detection on real photos (skimage's astronaut), and the YuNet path through a stand-in network.

No YuNet weights exist offline, so ``fake_yunet`` writes a weight-free Caffe network with YuNet's twelve
outputs that cv2.FaceDetectorYN loads and decodes exactly as it would the real model: each live grid
cell scores its mean brightness (0-1) and proposes a box of ``exp(0.5) * stride`` centred on the cell.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from engine.errors import MaskError, ModelLoadError, NoFaceError
from engine.faces import Face, FaceDetector, detect_faces_or_raise, face_mask
from engine.masking import Box
from tests.pictures import ASTRONAUT_FEATURES, ASTRONAUT_HEAD
from tests.pictures import astronaut as astronaut_photo

# Half the side of the box the stand-in YuNet proposes, in cell strides.
FAKE_HALF = math.exp(0.5) / 2


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return astronaut_photo()


def assert_astronaut_face(
    face: Face, scale: float | tuple[float, float] = 1.0, offset: tuple[float, float] = (0, 0)
) -> None:
    """The box holds the astronaut's features and stays inside her head, both scaled (x, y) and
    moved by ``offset``: where the face was pasted."""
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    dx, dy = offset
    ox0, ox1, cx0, cx1 = (v * sx for v in ASTRONAUT_HEAD[::2] + ASTRONAUT_FEATURES[::2])
    oy0, oy1, cy0, cy1 = (v * sy for v in ASTRONAUT_HEAD[1::2] + ASTRONAUT_FEATURES[1::2])
    assert ox0 + dx <= face.x0 <= cx0 + dx and oy0 + dy <= face.y0 <= cy0 + dy, face
    assert cx1 + dx <= face.x1 <= ox1 + dx and cy1 + dy <= face.y1 <= oy1 + dy, face


def test_finds_the_astronaut_face(detector: FaceDetector, astronaut: Image.Image) -> None:
    faces = detector.detect(astronaut)

    assert len(faces) == 1
    assert_astronaut_face(faces[0])
    assert faces[0].score > 0


def test_huge_photo_is_detected_downscaled_and_mapped_back(
    detector: FaceDetector, astronaut: Image.Image
) -> None:
    scale = 4000 / 512
    faces = detector.detect(astronaut.resize((4000, 4000), Image.Resampling.LANCZOS))

    assert len(faces) == 1
    assert_astronaut_face(faces[0], scale)


def test_small_face_on_a_big_plain_canvas(detector: FaceDetector, astronaut: Image.Image) -> None:
    """A ~60 px face in a 2000 px picture; a global equalizeHist loses it on a grey background."""
    scale = 334 / 512
    canvas = Image.new("RGB", (2000, 2000), (128, 128, 128))
    canvas.paste(astronaut.resize((334, 334), Image.Resampling.LANCZOS), (1200, 700))

    faces = detector.detect(canvas)

    assert len(faces) == 1
    assert 50 <= faces[0].x1 - faces[0].x0 <= 80
    assert_astronaut_face(faces[0], scale, offset=(1200, 700))


# Three astronaut heads (her head cropped, then resized to a square) of 420, 280 and 160 px, largest
# first, placed so that the smallest is top left: order cannot come from position.
HEAD_CROP = (120, 10, 330, 230)
HEADS = ((420, (700, 200)), (280, (300, 420)), (160, (40, 60)))


@pytest.fixture(scope="module")
def three_faces(astronaut: Image.Image) -> Image.Image:
    head = astronaut.crop(HEAD_CROP)
    canvas = Image.new("RGB", (1200, 800), (90, 110, 130))
    for size, place in HEADS:
        canvas.paste(head.resize((size, size), Image.Resampling.LANCZOS), place)
    return canvas


def assert_pasted_heads(faces: list[Face], heads: tuple[tuple[int, tuple[int, int]], ...]) -> None:
    """Each face box is the astronaut's face in the pasted head of the same rank."""
    assert len(faces) == len(heads)
    x0, y0, x1, y1 = HEAD_CROP
    for face, (size, (left, top)) in zip(faces, heads, strict=True):
        sx, sy = size / (x1 - x0), size / (y1 - y0)
        assert_astronaut_face(face, (sx, sy), offset=(left - x0 * sx, top - y0 * sy))


def test_multiple_faces_largest_first(detector: FaceDetector, three_faces: Image.Image) -> None:
    assert_pasted_heads(detector.detect(three_faces), HEADS)


@pytest.mark.parametrize("max_faces", [1, 2, 5])
def test_max_faces_keeps_the_largest(
    detector: FaceDetector, three_faces: Image.Image, max_faces: int
) -> None:
    assert_pasted_heads(detector.detect(three_faces, max_faces=max_faces), HEADS[:max_faces])


def gradient() -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, 3000, dtype=np.uint8), (2000, 1))
    return Image.fromarray(ramp).convert("RGB")


@pytest.mark.parametrize(
    ("image", "min_px"),
    [(Image.fromarray(data.coffee()), 16), (gradient(), 40)],
    ids=["coffee", "gradient"],
)
def test_no_face_raises_a_clear_error(detector: FaceDetector, image: Image.Image, min_px: int) -> None:
    assert detector.detect(image) == []
    with pytest.raises(NoFaceError) as caught:
        detect_faces_or_raise(detector, image)

    assert str(caught.value) == (
        f"No face was found in the image. Faces must be visible and at least ~{min_px} px wide; "
        "upload a mask instead."
    )


def test_detect_faces_or_raise_returns_the_faces(
    detector: FaceDetector, three_faces: Image.Image
) -> None:
    assert_pasted_heads(detect_faces_or_raise(detector, three_faces, max_faces=2), HEADS[:2])


def test_face_mask_is_the_face_box_with_a_margin_within_the_picture() -> None:
    face = Face(10, 20, 110, 140, 1.0)

    mask, patch = face_mask(face, 300, 200, margin=16)

    assert patch == Box(0, 4, 126, 156)  # clamped at the left edge
    assert mask.mode == "L" and mask.size == (patch.width, patch.height)
    pixels = np.asarray(mask)
    assert (pixels[20 - 4 : 140 - 4, 10:110] == 255).all()
    assert np.count_nonzero(pixels) == face.area


def test_more_faces_than_the_limit_is_a_clear_error(
    detector: FaceDetector, three_faces: Image.Image
) -> None:
    with pytest.raises(MaskError, match=r"^Found 3 faces; this bot repaints at most 2 faces per job"):
        detect_faces_or_raise(detector, three_faces, limit=2)
    # Keeping the largest two (the member's max_faces) is within the limit.
    assert len(detect_faces_or_raise(detector, three_faces, max_faces=2, limit=2)) == 2


# --- YuNet --------------------------------------------------------------------------------------------


def fake_yunet(folder: Path, live: tuple[int, ...] = (32,), outputs: tuple[str, ...] = ()) -> Path:
    """A stand-in YuNet (see the module docstring) whose ``live`` strides score; others score 0."""
    layers = []
    for name in outputs or ("cls", "obj", "bbox", "kps"):
        for stride in (8, 16, 32):
            scores = name in ("cls", "obj")
            # Scores need one value per cell; boxes 4 and landmarks 10, so pool finer to get enough.
            kernel = stride if scores else stride // 2
            scale = 1 / 255 if scores and stride in live else 0
            shift = 0 if scores else 0.5
            layers.append(
                f'layer {{ name: "{name}_{stride}_pool" type: "Pooling" bottom: "input" '
                f'top: "{name}_{stride}_pool" pooling_param {{ pool: AVE kernel_size: {kernel} '
                f"stride: {kernel} }} }}\n"
                f'layer {{ name: "{name}_{stride}" type: "Power" bottom: "{name}_{stride}_pool" '
                f'top: "{name}_{stride}" power_param {{ power: 1 scale: {scale} shift: {shift} }} }}\n'
            )
    path = folder / "fake_yunet.prototxt"
    header = 'name: "fake_yunet"\ninput: "input"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
    path.write_text(header + "".join(layers), encoding="utf-8")
    return path


def block_image(
    width: int, height: int, box: tuple[int, int, int, int], value: int = 255
) -> Image.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = value
    return Image.fromarray(pixels)


def fake_box(cx: float, cy: float, stride: float) -> tuple[int, int, int, int]:
    half = FAKE_HALF * stride
    return math.floor(cx - half), math.floor(cy - half), math.ceil(cx + half), math.ceil(cy + half)


def test_yunet_finds_the_box_and_maps_it_back(tmp_path: Path) -> None:
    detector = FaceDetector(fake_yunet(tmp_path))
    # A bright 32 px cell (col 3, row 2): one face centred on it.
    faces = detector.detect(block_image(320, 256, (96, 64, 128, 96)))
    assert [(f.x0, f.y0, f.x1, f.y1) for f in faces] == [fake_box(112, 80, 32)]
    assert faces[0].score == pytest.approx(1.0)

    # A 4096 px picture is detected at half size: the box comes back doubled, at full resolution.
    faces = detector.detect(block_image(4096, 2560, (1600, 960, 1664, 1024)))
    assert [(f.x0, f.y0, f.x1, f.y1) for f in faces] == [fake_box(1632, 992, 64)]


def test_yunet_score_threshold_is_0_3(tmp_path: Path) -> None:
    detector = FaceDetector(fake_yunet(tmp_path))

    (face,) = detector.detect(block_image(320, 256, (96, 64, 128, 96), value=100))
    assert face.score == pytest.approx(100 / 255)
    assert detector.detect(block_image(320, 256, (96, 64, 128, 96), value=60)) == []


def test_yunet_boxes_are_clamped_and_nested_duplicates_dropped(tmp_path: Path) -> None:
    """Stride 16 adds four small boxes inside the stride-32 one: still one face."""
    detector = FaceDetector(fake_yunet(tmp_path, live=(16, 32)))

    faces = detector.detect(block_image(320, 256, (0, 0, 32, 32)))

    x1 = math.ceil(16 + FAKE_HALF * 32)
    assert [(f.x0, f.y0, f.x1, f.y1) for f in faces] == [(0, 0, x1, x1)]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "there is no such file"),
        (b"", "it is not a readable YuNet ONNX model"),
        (b"\x08\x01garbage, not an onnx model" * 20, "it is not a readable YuNet ONNX model"),
    ],
    ids=["missing", "empty", "garbage"],
)
def test_unusable_yunet_file_raises_model_load_error(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "yunet.onnx"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ModelLoadError) as caught:
        FaceDetector(path).load()

    assert str(caught.value) == (
        f"The face detector model {path} could not be loaded: {reason}. "
        "Fix or unset INPAINTBOT_FACE_DETECTOR_MODEL."
    )


def test_network_without_yunet_outputs_raises_model_load_error(tmp_path: Path) -> None:
    detector = FaceDetector(fake_yunet(tmp_path, outputs=("cls", "obj", "bbox")))

    with pytest.raises(ModelLoadError, match="INPAINTBOT_FACE_DETECTOR_MODEL"):
        detector.detect(block_image(64, 64, (0, 0, 32, 32)))
