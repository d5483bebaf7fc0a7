"""Strokes drawn on a copy of the picture as the mask: found through the upload path, on a real photo."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

from engine.engine import Engine
from engine.errors import MaskError
from engine.images import UploadedMask, load_mask, load_pictures
from engine.job import InpaintRequest, MaskSource
from engine.masking import prepare_mask
from engine.settings import InpaintSettings
from tests.pictures import astronaut, circled_face_copy, phone_copy, photo, png_bytes, rect_mask

LIMIT = 10_000_000
FAST = {"steps": 4, "resolution": 64, "seed": 1234}


def uploaded(picture: Image.Image, mask: bytes) -> UploadedMask:
    found = load_pictures(png_bytes(picture), mask, find_faces=False, max_pixels=LIMIT)[1]
    assert found is not None
    return found


def iou(mask: Image.Image, truth: Image.Image) -> float:
    found, expected = np.asarray(mask) >= 128, np.asarray(truth) >= 128
    return float((found & expected).sum() / (found | expected).sum())


@pytest.mark.parametrize(
    "colour", [(255, 0, 0), (0, 0, 255), (255, 255, 0)], ids=["red", "blue", "yellow"]
)
def test_circling_the_face_on_a_resized_jpeg_copy_marks_the_whole_face(
    colour: tuple[int, int, int],
) -> None:
    copy, outline = circled_face_copy(colour)
    found = uploaded(astronaut(), copy)
    assert found.scribbled
    assert found.mask.mode == "L" and found.mask.size == (512, 512)
    assert set(np.unique(np.asarray(found.mask))) == {0, 255}
    assert iou(found.mask, outline) >= 0.9


def test_an_open_stroke_marks_the_stroke_itself() -> None:
    points = [(100, 300), (200, 350), (300, 300)]
    copy = astronaut()
    ImageDraw.Draw(copy).line(points, fill=(255, 0, 0), width=10)
    stroke = Image.new("L", copy.size, 0)
    ImageDraw.Draw(stroke).line(points, fill=255, width=10)
    found = uploaded(astronaut(), phone_copy(copy))
    assert found.scribbled
    assert iou(found.mask, stroke) >= 0.8  # not the area under the bend: the stroke encloses nothing


def test_a_gap_where_the_stroke_crossed_its_own_colour_is_bridged() -> None:
    copy, outline = astronaut(), Image.new("L", (512, 512), 0)
    ImageDraw.Draw(copy).arc((150, 30, 300, 190), start=5, end=355, fill=(255, 0, 0), width=6)
    ImageDraw.Draw(outline).ellipse((150, 30, 300, 190), fill=255)
    assert iou(uploaded(astronaut(), phone_copy(copy)).mask, outline) >= 0.9


def test_a_copy_of_another_picture_is_refused() -> None:
    other = Image.fromarray(data.chelsea()).resize((512, 512))
    with pytest.raises(MaskError, match=r"\d+% of it differs from the image: it is probably another"):
        uploaded(astronaut(), phone_copy(other))


def test_a_copy_with_nothing_drawn_is_refused() -> None:
    with pytest.raises(MaskError, match="copy of the image with nothing drawn on it"):
        uploaded(astronaut(), phone_copy(astronaut()))


def test_a_copy_of_another_shape_is_refused_like_any_mask() -> None:
    copy, _ = circled_face_copy()
    cropped = Image.open(io.BytesIO(copy)).crop((0, 0, 461, 300))
    with pytest.raises(MaskError, match="The mask is 461x300 but the image is 512x512"):
        uploaded(astronaut(), png_bytes(cropped))


def gradient(size: tuple[int, int]) -> Image.Image:
    return Image.linear_gradient("L").resize(size)


def strokes_on_a_layer(size: tuple[int, int]) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((150, 30, 300, 190), outline=(255, 0, 0, 255), width=6)
    return layer


def black_and_white_jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    rect_mask(*size, (100, 100, 300, 260)).convert("RGB").save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("picture", "mask"),
    [
        (astronaut(), png_bytes(rect_mask(512, 512, (100, 100, 300, 260)))),
        (astronaut(), black_and_white_jpeg((512, 512))),
        (astronaut(), png_bytes(rect_mask(256, 256, (50, 50, 150, 130)))),
        (astronaut(), png_bytes(gradient((512, 512)))),
        (astronaut(), png_bytes(strokes_on_a_layer((512, 512)))),
        (astronaut().convert("L").convert("RGB"), black_and_white_jpeg((512, 512))),
        (astronaut().convert("L").convert("RGB"), png_bytes(gradient((512, 512)))),
        (photo(96, 64), png_bytes(rect_mask(96, 64, (24, 16, 72, 48)))),
    ],
    ids=[
        "mask",
        "mask-jpeg",
        "mask-half-size",
        "soft-mask",
        "layer",
        "grey-photo",
        "grey-photo-soft",
        "small-photo",
    ],
)
def test_masks_are_read_as_before(picture: Image.Image, mask: bytes) -> None:
    found = uploaded(picture, mask)
    assert not found.scribbled
    plain = load_mask(mask, size=picture.size, max_pixels=LIMIT)
    assert np.array_equal(np.asarray(found.mask), np.asarray(plain))


def test_paint_on_a_copy_of_a_grey_photo_is_a_copy() -> None:
    """Grey on grey: the copy is told from a mask because most of it matches the picture."""
    grey = astronaut().convert("L").convert("RGB")
    copy, painted = grey.copy(), Image.new("L", grey.size, 0)
    ImageDraw.Draw(copy).ellipse((180, 70, 270, 170), fill=(0, 0, 0))
    ImageDraw.Draw(painted).ellipse((180, 70, 270, 170), fill=255)
    found = uploaded(grey, phone_copy(copy))
    assert found.scribbled
    assert iou(found.mask, painted) >= 0.9


def test_only_the_marked_area_is_repainted(engine: Engine) -> None:
    copy, _ = circled_face_copy()
    picture = astronaut()
    settings = InpaintSettings.parse(**FAST)
    result = engine.inpaint(InpaintRequest(png_bytes(picture), settings, mask=copy))
    assert result.mask_source is MaskSource.SCRIBBLE
    assert f"Mask source: {MaskSource.SCRIBBLE.value}" in result.images[0].parameters

    marked = uploaded(picture, copy).mask
    blurred = prepare_mask(marked, invert=False, grow=settings.mask_grow, blur=settings.mask_blur)
    outside = np.asarray(blurred) == 0
    out = np.asarray(Image.open(io.BytesIO(result.images[0].png)).convert("RGB"))
    original = np.asarray(picture)
    assert np.array_equal(out[outside], original[outside])
    inside = np.asarray(marked) == 255
    assert np.abs(out[inside].astype(int) - original[inside]).mean() > 5, "the face was not repainted"
