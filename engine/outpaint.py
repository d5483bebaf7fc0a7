"""Outpainting as inpainting of a larger canvas: its size, its mask and the crops the model paints.

The picture is placed on a canvas with a new border (a zoom factor, or pixels per side). The mask is the
border plus an overlap band ``2 x mask_blur`` into the picture (A1111's "poor man's outpainting"), then
grown and blurred like any mask; the border itself stays fully masked, so no new pixel keeps its
starting colour. The border starts from ``fill`` colours diffused from the picture's edge.

The model never sees the canvas whole: the border is covered by windows of the model's size, strip by
strip from the picture outward, each painted at 1:1 scale by one pass of the engine (like "only
masked"), so the cost follows the border's area and the detail matches the picture's. Each window's
mask fades out over ``feather`` px at its sides inside the canvas, and the windows' unfaded cores
together cover the whole mask, so neighbouring windows blend without a seam and the fill never shows.
Pure geometry and pictures: no model, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine import masking
from engine.errors import SettingsError
from engine.images import megapixels
from engine.masking import Box
from engine.settings import OUTPAINT_FIELDS, InpaintSettings

NOTHING_TO_ADD = (
    "Nothing to add: give a zoom (more than 1) or pixels for at least one side (left, right, up, down)."
)
_CANVAS_MULTIPLE = 8  # a zoomed canvas's sides: the latents' grid, as the model's sizes are


@dataclass(frozen=True)
class Border:
    """Pixels added on each side of the picture."""

    left: int
    right: int
    up: int
    down: int

    def canvas_size(self, width: int, height: int) -> tuple[int, int]:
        return width + self.left + self.right, height + self.up + self.down


@dataclass(frozen=True)
class Window:
    """One pass: a box of the canvas and its mask (the box's size, faded at its inner sides)."""

    box: Box
    mask: Image.Image


@dataclass(frozen=True)
class Plan:
    """Everything the engine needs to outpaint one picture."""

    canvas: Image.Image  # the picture on the new canvas, its border filled from the picture's edge
    mask: Image.Image  # what is repainted, over the whole canvas
    picture: Box  # where the picture lies on the canvas
    keep: Box  # the picture's pixels no window changes (empty where the band eats all of it)
    windows: tuple[Window, ...]


def require_border(settings: InpaintSettings) -> None:
    """An outpainting command whose settings add nothing is refused with what to give instead."""
    if not settings.outpaints:
        raise SettingsError(NOTHING_TO_ADD)


def border_for(settings: InpaintSettings, width: int, height: int) -> Border:
    """The border the settings ask for around a ``width`` x ``height`` picture.

    A zoom makes each side ``zoom`` times longer, rounded up to a multiple of 8, the picture centred
    (an odd extra pixel goes right or down); pixels per side are taken as given.
    """
    if settings.zoom is not None:
        new_width = _round_up(width * settings.zoom, _CANVAS_MULTIPLE)
        new_height = _round_up(height * settings.zoom, _CANVAS_MULTIPLE)
        left, up = (new_width - width) // 2, (new_height - height) // 2
        return Border(left, new_width - width - left, up, new_height - height - up)
    left, right, up, down = (getattr(settings, name) or 0 for name in OUTPAINT_FIELDS[1:])
    if not left + right + up + down:
        raise SettingsError(NOTHING_TO_ADD)
    return Border(left, right, up, down)


def check_canvas(border: Border, width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The canvas size, refused when it is over the operator's limit on pictures."""
    canvas = border.canvas_size(width, height)
    if canvas[0] * canvas[1] > max_pixels:
        raise SettingsError(
            f"Outpainting this {width}x{height} picture makes it {canvas[0]}x{canvas[1]} "
            f"({megapixels(canvas[0] * canvas[1])} megapixels), over this bot's limit of "
            f"{megapixels(max_pixels)} megapixels. Zoom out less, or add fewer pixels."
        )
    return canvas


def overlap(settings: InpaintSettings) -> int:
    """How far into the picture the repainted band can reach, in px: the inset of twice the blur,
    then growing and blurring (``masking.mask_reach``)."""
    return 2 * settings.mask_blur + masking.mask_reach(max(settings.mask_grow, 0), settings.mask_blur)


def plan(picture: Image.Image, settings: InpaintSettings, long_side: int, max_pixels: int) -> Plan:
    """The canvas, mask and windows for outpainting ``picture`` (RGB) as ``settings`` say, with windows
    of ``long_side`` px (the model's size)."""
    border = border_for(settings, picture.width, picture.height)
    width, height = check_canvas(border, picture.width, picture.height, max_pixels)
    where = Box(border.left, border.up, border.left + picture.width, border.up + picture.height)
    outside = np.full((height, width), 255, np.uint8)
    outside[where.slices()] = 0
    band = 2 * settings.mask_blur
    marked = np.full((height, width), 255, np.uint8)
    marked[_inset(where, border, band).slices()] = 0
    blurred = masking.prepare_mask(
        Image.fromarray(marked), invert=False, grow=settings.mask_grow, blur=settings.mask_blur
    )
    # The blur's ramp (and a negative mask_grow) reaches past the picture's edge: the new pixels next
    # to it would keep a little of their fill. Every new pixel is repainted in full.
    mask = np.maximum(np.asarray(blurred), outside)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(picture, (where.x0, where.y0))
    canvas = masking.fill_masked(canvas, Image.fromarray(outside))
    keep = _inset(where, border, overlap(settings))
    windows = tuple(
        Window(box, Image.fromarray(faded))
        for box in cover(width, height, keep, long_side)
        if (faded := _faded(mask, box, width, height, long_side)).any()
    )
    return Plan(canvas, Image.fromarray(mask), where, keep, windows)


def cover(width: int, height: int, keep: Box, size: int) -> list[Box]:
    """Windows of at most ``size`` px a side whose cores (each less its faded sides) cover the canvas
    but ``keep``: strip by strip (top, bottom, left, right), each from the picture outward, each with
    ``size // 4`` px of the picture as context. An empty ``keep`` is tiled whole."""
    fade_x, fade_y = _feather(size, width), _feather(size, height)
    long_x, long_y = min(size, width), min(size, height)
    context = size // 4
    if keep.width <= 0 or keep.height <= 0:
        rows = _spans(0, height, long_y, height, fade_y)
        columns = _spans(0, width, long_x, width, fade_x)
        return [Box(x0, y0, x1, y1) for y0, y1 in rows for x0, x1 in columns]
    boxes: list[Box] = []
    across = _spans(0, width, long_x, width, fade_x)
    if keep.y0 > 0:  # the top strip, in rows from the picture up
        rows = _spans(0, keep.y0 + context, long_y, height, fade_y, outward_up=True, thin=True)
        boxes += [Box(x0, y0, x1, y1) for y0, y1 in rows for x0, x1 in across]
    if keep.y1 < height:
        rows = _spans(keep.y1 - context, height, long_y, height, fade_y, thin=True)
        boxes += [Box(x0, y0, x1, y1) for y0, y1 in rows for x0, x1 in across]
    down = _spans(keep.y0, keep.y1, long_y, height, fade_y)
    if keep.x0 > 0:
        columns = _spans(0, keep.x0 + context, long_x, width, fade_x, outward_up=True, thin=True)
        boxes += [Box(x0, y0, x1, y1) for x0, x1 in columns for y0, y1 in down]
    if keep.x1 < width:
        columns = _spans(keep.x1 - context, width, long_x, width, fade_x, thin=True)
        boxes += [Box(x0, y0, x1, y1) for x0, x1 in columns for y0, y1 in down]
    return boxes


def _spans(
    low: int,
    high: int,
    length: int,
    limit: int,
    fade: int,
    *,
    outward_up: bool = False,
    thin: bool = False,
) -> list[tuple[int, int]]:
    """Intervals of ``length`` (at most ``limit``) within ``[0, limit)`` whose cores (less ``fade`` at
    ends inside ``[0, limit)``) cover ``[low, high)``, as few as greedily fit, each next overlapping the
    last by ``2 * fade``: from ``low`` upwards, or (``outward_up``) from ``high`` down. ``thin``: across
    a strip, where the range ends in the picture's context, an interval is cut to the range, so a thin
    border gets thin windows."""
    low, high = max(low, 0), min(high, limit)
    if thin:  # a multiple of 8 where it can, so the window is painted at 1:1 scale
        length = min(length, _round_up(high - low, _CANVAS_MULTIPLE), limit)
    spans: list[tuple[int, int]] = []
    if outward_up:
        end = high
        while True:
            start = max(end - length, 0)
            end = start + length
            spans.append((start, end))
            core = start + (fade if start > 0 else 0)
            if core <= low:
                return spans
            end = core + fade
    start = low
    while True:
        end = min(start + length, limit)
        start = end - length
        spans.append((start, end))
        core = end - (fade if end < limit else 0)
        if core >= high:
            return spans
        start = core - fade


def _feather(size: int, limit: int) -> int:
    """How far a window's mask fades in at its sides inside the canvas: an eighth of its size."""
    return max(1, min(size, limit) // 8)


def _faded(mask: np.ndarray, box: Box, width: int, height: int, size: int) -> np.ndarray:
    """The canvas mask over ``box``, faded to 0 over the feather at each side inside the canvas."""
    across = _ramp(box.x0, box.x1, width, _feather(size, width))
    down = _ramp(box.y0, box.y1, height, _feather(size, height))
    weight = down[:, None] * across[None, :]
    return np.rint(mask[box.slices()] * weight).astype(np.uint8)


def _ramp(start: int, end: int, limit: int, fade: int) -> np.ndarray:
    """1 inside, rising from 0 over ``fade`` px at an end that is not the canvas's edge."""
    ramp = np.ones(end - start, np.float32)
    steps = (np.arange(min(fade, end - start), dtype=np.float32) + 0.5) / fade
    if start > 0:
        ramp[: len(steps)] = np.minimum(ramp[: len(steps)], steps)
    if end < limit:
        ramp[len(ramp) - len(steps) :] = np.minimum(ramp[len(ramp) - len(steps) :], steps[::-1])
    return ramp


def _inset(where: Box, border: Border, by: int) -> Box:
    """``where`` less ``by`` px on each side that has a border (the others reach the canvas's edge)."""
    return Box(
        where.x0 + (by if border.left else 0),
        where.y0 + (by if border.up else 0),
        where.x1 - (by if border.right else 0),
        where.y1 - (by if border.down else 0),
    )


def _round_up(value: float, multiple: int) -> int:
    return math.ceil(round(value, 6) / multiple) * multiple
