"""Masks from strokes drawn on a copy of the picture ("scribble on a copy").

A member marks the area on a copy of the picture in any phone app, in any colour, and uploads it as
the mask. Phones re-save copies as JPEG and often resize them, so the copy is compared with the
picture in CIELAB, where a colour difference (ΔE) means the same to the eye everywhere: JPEG noise
stays well below ``CHANGE_DELTA_E`` and a coloured stroke lies far above it. The changed pixels are
cleaned of speckle, and closed outlines are filled, so circling an area marks all of it.

Pure picture functions (Pillow, NumPy, OpenCV), in the style of ``engine.masking``. Masks are mode
"L", white (255) = repaint.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from engine.errors import MaskError

# ΔE (CIE 1976) above which a pixel of the copy counts as drawn on, once both pictures are blurred by
# NOISE_SIGMA px. JPEG noise is fine-grained: after the blur, quality 75 leaves 99.9 % of a photo's
# pixels under 13 (at most 25 in the busiest textures, specks that the opening below removes), while a
# red stroke on skin stays about 80 away.
CHANGE_DELTA_E = 25.0
NOISE_SIGMA = 1.0

# The comparison runs at most this long side: strokes from a finger are wide, and a 40 MP picture
# costs what a 2 MP one would.
WORK_LONG_SIDE = 1536

# Speckle (noise that got past the threshold) is opened away, then pinholes and ragged edges of the
# strokes are closed, with discs whose radius is this share of the working picture's long side (at
# least 1 px). Finding what an outline encloses bridges gaps up to twice GAP_RADIUS_SHARE wide, where
# the stroke crossed something of its own colour.
OPEN_RADIUS_SHARE = 0.002
CLOSE_RADIUS_SHARE = 0.004
GAP_RADIUS_SHARE = 0.02

# A copy where more than this share of the pixels changed is another picture, not a marked copy.
MAX_CHANGED_SHARE = 0.7

# Telling a copy from a mask: a mask is drawn in greys (at most this share of its pixels has a
# colour, a channel spread above GREY_SPREAD) and mostly pure black or white (at least BINARY_SHARE
# of its pixels within BINARY_MARGIN of 0 or 255). A grey copy of a grey picture is a copy when at
# least COPY_SAME_SHARE of its pixels match the picture.
GREY_SPREAD = 32
GREY_MAX_COLOURED_SHARE = 0.005
BINARY_MARGIN = 32
BINARY_SHARE = 0.9
COPY_SAME_SHARE = 0.5


def is_marked_copy(upload: Image.Image, picture: Image.Image) -> bool:
    """Whether an opaque mask upload (of the picture's shape) is a marked-up copy of the picture.

    A mask is black and white, or grey on a colour picture: it is read as grey levels, as always. An
    upload in colour can only be a copy (``scribble_mask`` refuses one that is another picture). Only
    a grey upload with mid-tones on a grey picture needs a closer look: it is a copy when most of it
    matches the picture.
    """
    copy, original = _working_pair(upload, picture)
    if not _is_grey(copy):
        return True
    if _is_binary(copy) or not _is_grey(original):
        return False
    return float(np.mean(_delta_e(copy, original) <= CHANGE_DELTA_E)) >= COPY_SAME_SHARE


def scribble_mask(copy: Image.Image, picture: Image.Image) -> Image.Image:
    """The area marked on ``copy``: its strokes, and all that a closed stroke encloses, as "L" at
    the picture's size.

    Refuses a copy that changed almost everywhere (another picture) or nowhere (nothing drawn).
    """
    small_copy, small_picture = _working_pair(copy, picture)
    changed = _delta_e(small_copy, small_picture) > CHANGE_DELTA_E
    share = float(changed.mean())
    if share > MAX_CHANGED_SHARE:
        raise MaskError(
            f"The mask looks like a marked-up copy of the image, but {share:.0%} of it differs from "
            "the image: it is probably another picture. Draw on a copy of this image, or send a "
            "black-and-white mask (white = repaint)."
        )
    long_side = max(changed.shape)
    marked = _clean(changed.astype(np.uint8) * 255, long_side)
    if not marked.any():
        raise MaskError(
            "The mask looks like a copy of the image with nothing drawn on it: no strokes were found. "
            "Draw over the area to repaint (or around it) in a bright colour, or send a black-and-white "
            "mask (white = repaint)."
        )
    bridged = cv2.morphologyEx(marked, cv2.MORPH_CLOSE, _disc(long_side, GAP_RADIUS_SHARE))
    filled = marked | _enclosed(bridged)
    full = cv2.resize(filled, picture.size, interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(np.where(full >= 128, np.uint8(255), np.uint8(0)))


def _working_pair(copy: Image.Image, picture: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Both pictures as RGB arrays of one size: the picture's shape, no larger than either of them
    (shrinking both the same way makes their resampling alike) nor than ``WORK_LONG_SIDE``."""
    scale = min(1.0, WORK_LONG_SIDE / max(picture.size), copy.width / picture.width)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return _shrunk(copy, size), _shrunk(picture, size)


def _shrunk(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    rgb = np.asarray(image.convert("RGB"))
    if image.size == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _delta_e(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """CIE 1976 ΔE of two RGB arrays, per pixel, after a blur that evens out JPEG noise."""
    lab_first, lab_second = (
        cv2.cvtColor(
            cv2.GaussianBlur(rgb.astype(np.float32) / 255, (0, 0), NOISE_SIGMA), cv2.COLOR_RGB2Lab
        )
        for rgb in (first, second)
    )
    return np.sqrt(np.sum((lab_first - lab_second) ** 2, axis=-1))


def _clean(marked: np.ndarray, long_side: int) -> np.ndarray:
    """Open away speckle, then close small gaps in the strokes."""
    opened = cv2.morphologyEx(marked, cv2.MORPH_OPEN, _disc(long_side, OPEN_RADIUS_SHARE))
    return cv2.morphologyEx(opened, cv2.MORPH_CLOSE, _disc(long_side, CLOSE_RADIUS_SHARE))


def _disc(long_side: int, share: float) -> np.ndarray:
    radius = max(1, round(long_side * share))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _enclosed(marked: np.ndarray) -> np.ndarray:
    """The pixels that strokes enclose (the holes in ``marked``), 255 where enclosed."""
    contours, _ = cv2.findContours(marked, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(marked)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled & ~marked


def _is_grey(rgb: np.ndarray) -> bool:
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)
    return float(np.mean(spread > GREY_SPREAD)) <= GREY_MAX_COLOURED_SHARE


def _is_binary(rgb: np.ndarray) -> bool:
    grey = rgb.mean(axis=-1)
    return float(np.mean((grey <= BINARY_MARGIN) | (grey >= 255 - BINARY_MARGIN))) >= BINARY_SHARE
