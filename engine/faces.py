"""Automatic face masks (ADetailer semantics): find faces, one box mask per face.

Two backends, both offline: OpenCV's bundled Haar cascade by default, or YuNet through
``cv2.FaceDetectorYN`` when the operator provides its ONNX file (``INPAINTBOT_FACE_DETECTOR_MODEL``).
The engine grows, blurs and inpaints each mask separately; this module only says where the faces are.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from cv2.data import haarcascades
from PIL import Image

from engine.errors import MaskError, ModelLoadError, NoFaceError
from engine.masking import Box

# alt2 finds the same faces as "default" on our photos without its false positives on textures.
HAAR_CASCADE = "haarcascade_frontalface_alt2.xml"
# Detection runs at most this long side: cost grows with pixels while faces stay findable.
DETECT_MAX_SIDE = 2048
# Haar windows smaller than this share of the short side are mostly noise and cost the most time.
HAAR_MIN_FACE_RATIO = 0.02
HAAR_MIN_FACE_PX = 16
# Fewer agreeing windows let textures through (grass, gravel, a suit's folds); more lose dim faces.
HAAR_MIN_NEIGHBOURS = 6
# For the no-face message only: roughly the smallest face YuNet's finest (stride 8) head reports.
YUNET_MIN_FACE_PX = 10
# ADetailer keeps detections with confidence >= 0.3.
YUNET_SCORE_THRESHOLD = 0.3
YUNET_NMS_THRESHOLD = 0.3
# A box covering more than this share of a bigger box is the same face found twice.
DUPLICATE_OVERLAP = 0.5

# x, y, width, height, score, in the pixels of the image the detector saw.
_Box = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class Face:
    """A face box in image pixels, ``x1``/``y1`` exclusive, clamped to the image.

    ``score`` is YuNet's confidence in [0, 1], or for Haar the number of detection windows that agreed
    (not a probability).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


class FaceDetector:
    """Finds faces; loads its cascade or model on first use and reuses it.

    A lock serialises loading and detection, so one instance can be shared by worker threads.
    """

    def __init__(self, yunet_model: Path | None = None) -> None:
        self.yunet_model = yunet_model
        self._lock = threading.Lock()
        self._haar: cv2.CascadeClassifier | None = None
        self._yunet: cv2.FaceDetectorYN | None = None
        # Local contrast, not a global equalizeHist: a large plain background dominates the global
        # histogram and flattens a small face (it lost a third of our small-face cases).
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def load(self) -> None:
        """Load now, so a bad model file fails at startup rather than on the first face job."""
        with self._lock:
            self._load()

    def detect(self, image: Image.Image, *, max_faces: int = 0) -> list[Face]:
        """Faces largest first; ``max_faces`` > 0 keeps only the largest ones. May be empty.

        Huge pictures are searched downscaled; boxes always come back in the image's own pixels.
        """
        rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        scale = _detect_scale(width, height)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        else:
            small = rgb
        with self._lock:
            self._load()
            boxes = self._detect_yunet(small) if self._yunet is not None else self._detect_haar(small)
        sx, sy = width / small.shape[1], height / small.shape[0]
        faces = [
            _face((x * sx, y * sy, (x + w) * sx, (y + h) * sy), score, width, height)
            for x, y, w, h, score in boxes
        ]
        faces = _drop_duplicates([f for f in faces if f.area > 0])
        return faces[:max_faces] if max_faces > 0 else faces

    def min_face_size(self, width: int, height: int) -> int:
        """The smallest face width, in image pixels, this detector can find in such an image."""
        scale = _detect_scale(width, height)
        if self.yunet_model is not None:
            return math.ceil(YUNET_MIN_FACE_PX / scale)
        return math.ceil(_haar_min_size(round(width * scale), round(height * scale)) / scale)

    def _load(self) -> None:
        if self._haar is not None or self._yunet is not None:
            return
        if self.yunet_model is None:
            self._haar = cv2.CascadeClassifier(haarcascades + HAAR_CASCADE)
            if self._haar.empty():
                raise ModelLoadError(
                    f"OpenCV's face cascade {HAAR_CASCADE} is missing from this install."
                )
            return
        path = self.yunet_model
        if not path.is_file():
            raise _model_error(path, "there is no such file")
        try:
            yunet = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), YUNET_SCORE_THRESHOLD, YUNET_NMS_THRESHOLD
            )
            # Any readable network loads; only a forward pass shows it has YuNet's outputs.
            yunet.detect(np.zeros((320, 320, 3), np.uint8))
        except cv2.error as exc:
            raise _model_error(path, "it is not a readable YuNet ONNX model") from exc
        self._yunet = yunet

    def _detect_haar(self, rgb: np.ndarray) -> list[_Box]:
        assert self._haar is not None
        gray = self._clahe.apply(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        side = _haar_min_size(gray.shape[1], gray.shape[0])
        boxes, neighbours = self._haar.detectMultiScale2(
            gray, scaleFactor=1.1, minNeighbors=HAAR_MIN_NEIGHBOURS, minSize=(side, side)
        )
        return [(x, y, w, h, float(n)) for (x, y, w, h), n in zip(boxes, neighbours, strict=True)]

    def _detect_yunet(self, rgb: np.ndarray) -> list[_Box]:
        assert self._yunet is not None
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._yunet.detect(bgr)
        # Columns: x, y, w, h, five landmarks (x, y), score.
        return [] if rows is None else [(r[0], r[1], r[2], r[3], r[14]) for r in rows]


def detect_faces_or_raise(
    detector: FaceDetector, image: Image.Image, max_faces: int = 0, limit: int | None = None
) -> list[Face]:
    """``detector.detect`` for the face auto-mask, where finding nothing, or more than ``limit`` faces
    (the operator's cap: each face is a denoising pass), must stop the job."""
    faces = detector.detect(image, max_faces=max_faces)
    if not faces:
        min_px = detector.min_face_size(*image.size)
        raise NoFaceError(
            f"No face was found in the image. Faces must be visible and at least ~{min_px} px wide; "
            "upload a mask instead."
        )
    if limit is not None and len(faces) > limit:
        raise MaskError(
            f"Found {len(faces)} faces; this bot repaints at most {limit} faces per job. Upload a mask "
            "of the faces to repaint instead, or crop the picture to fewer faces."
        )
    return faces


def face_mask(face: Face, width: int, height: int, margin: int) -> tuple[Image.Image, Box]:
    """The face's box in white on black, kept only ``margin`` px around it within the ``width`` x
    ``height`` picture, and where that patch lies: a full-size mask per face would take gigabytes for
    a crowd in a big photo, while the engine only ever works near each face."""
    patch = Box(face.x0, face.y0, face.x1, face.y1).expanded(margin, width, height)
    mask = Image.new("L", (patch.width, patch.height), 0)
    mask.paste(255, (face.x0 - patch.x0, face.y0 - patch.y0, face.x1 - patch.x0, face.y1 - patch.y0))
    return mask, patch


def _detect_scale(width: int, height: int) -> float:
    return min(1.0, DETECT_MAX_SIDE / max(width, height))


def _haar_min_size(width: int, height: int) -> int:
    return max(HAAR_MIN_FACE_PX, round(HAAR_MIN_FACE_RATIO * min(width, height)))


def _face(box: tuple[float, float, float, float], score: float, width: int, height: int) -> Face:
    x0, y0, x1, y1 = box
    return Face(
        x0=min(max(math.floor(x0), 0), width),
        y0=min(max(math.floor(y0), 0), height),
        x1=min(max(math.ceil(x1), 0), width),
        y1=min(max(math.ceil(y1), 0), height),
        score=float(score),
    )


def _drop_duplicates(faces: list[Face]) -> list[Face]:
    """Largest first, dropping boxes mostly inside a bigger kept one (nested or twice-found faces)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.area, reverse=True):
        if all(_overlap(face, other) <= DUPLICATE_OVERLAP for other in kept):
            kept.append(face)
    return kept


def _overlap(small: Face, big: Face) -> float:
    """Share of ``small``'s area inside ``big``."""
    w = min(small.x1, big.x1) - max(small.x0, big.x0)
    h = min(small.y1, big.y1) - max(small.y0, big.y0)
    return max(w, 0) * max(h, 0) / small.area


def _model_error(path: Path, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"The face detector model {path} could not be loaded: {reason}. "
        "Fix or unset INPAINTBOT_FACE_DETECTOR_MODEL."
    )
