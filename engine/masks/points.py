"""Masks from a click: SAM 2 outlines the thing under a point (the painter's Select tool).

The same segmenter as masks from words (``words.WordModels``), prompted with one positive point
instead of a box; the painter adds the outline to the member's mask or takes it away.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from engine.errors import MaskError

OFF_MESSAGE = (
    "Selecting things by clicking needs the models of masks from words, which this bot has turned "
    "off; paint the area instead."
)


@runtime_checkable
class PointSegmenter(Protocol):
    def segment_point(self, image: Image.Image, point: tuple[float, float]) -> np.ndarray: ...


def object_at(segmenter: PointSegmenter, image: Image.Image, point: tuple[float, float]) -> Image.Image:
    """The outline of the thing at ``point`` (picture pixels) as an "L" mask, white inside."""
    x, y = point
    if not (0 <= x < image.width and 0 <= y < image.height):
        raise MaskError(f"The point ({x:g}, {y:g}) is outside the {image.width}x{image.height} picture.")
    found = segmenter.segment_point(image, (float(x), float(y)))
    if not found.any():
        raise MaskError("Nothing was found there; click on the thing itself, or paint it.")
    return Image.fromarray(found.astype(np.uint8) * 255, mode="L")
