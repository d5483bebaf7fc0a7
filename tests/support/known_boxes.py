"""A finder for masks from words whose boxes are known: tests say what each phrase finds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.masks.words import Match


@dataclass
class KnownBoxes:
    """``engine.masks.words.Finder``: each phrase finds its listed boxes (x0, y0, x1, y1, score), and
    each box's mask is the box itself; a click (``segment_point``) selects the smallest box around it. ``asked`` records the phrases looked for."""

    boxes: dict[str, list[tuple[int, int, int, int, float]]]
    asked: list[str] = field(default_factory=list)

    def detect(self, image: Image.Image, phrase: str) -> list[Match]:
        self.asked.append(phrase)
        return [Match((x0, y0, x1, y1), score) for x0, y0, x1, y1, score in self.boxes.get(phrase, [])]

    def segment_point(self, image: Image.Image, point: tuple[float, float]) -> np.ndarray:
        """The smallest known box around the point (the thing clicked), or nothing."""
        x, y = point
        around = [
            Match(box[:4], box[4])
            for boxes in self.boxes.values()
            for box in boxes
            if box[0] <= x < box[2] and box[1] <= y < box[3]
        ]
        if not around:
            return np.zeros((image.height, image.width), bool)
        (mask,) = self.segment(image, [min(around, key=lambda m: m.area)])
        return mask

    def segment(self, image: Image.Image, boxes: Sequence[Match]) -> list[np.ndarray]:
        masks = []
        for match in boxes:
            mask = np.zeros((image.height, image.width), bool)
            x0, y0, x1, y1 = (round(v) for v in match.box)
            mask[y0:y1, x0:x1] = True
            masks.append(mask)
        return masks
