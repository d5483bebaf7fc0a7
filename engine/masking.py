"""A1111's mask semantics and the crop math of "inpaint only masked".

Pure picture functions (Pillow, NumPy, OpenCV) that run on full-resolution uploads, so each one avoids
work that grows with the picture where the mask is small: the mask's bounding box bounds the work.
Masks are mode "L", white (255) = repaint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageFilter

from engine.errors import MaskError

MIN_SIDE = 64

# OpenCV's cost for a disc kernel grows with the square of its size (a 64 px disc takes 3 s on 24 MP),
# so wide discs are applied as several discs of at most this radius: their Minkowski sum is the wide
# disc give or take a pixel (about 2 % more area).
_MAX_DISC_STEP = 16

# How far Pillow's GaussianBlur spreads a value, in sigmas (measured: 2.55 sigma + 1 px).
_BLUR_REACH_SIGMAS = 3

# A1111's fill(): (Gaussian sigma, times the blurred layer is composited), coarse to fine. Its last
# layer, sigma 0, is the unmasked pixels themselves: here they are simply left untouched.
_FILL_COARSE = ((256, 1), (64, 1), (16, 2))
_FILL_FINE = ((4, 4), (2, 2))
# The coarse layers run on copies shrunk so that their sigma is 4 px (a quarter of the size for
# sigma 16, 1/64 for sigma 256): a blur that wide has no detail to lose, and a 24 MP picture costs what
# a 1.5 MP one would.
_FILL_WORKING_SIGMA = 4
_FILL_COARSE_SCALE = 16 // _FILL_WORKING_SIGMA
# How far from the masked area the widest layer looks: OpenCV truncates a float Gaussian at 4 sigma,
# plus one cell of its shrunk copy. Pixels further away cannot change the fill.
_FILL_REACH = 4 * 256 + 256 // _FILL_WORKING_SIGMA
# The fine layers run at full size, on tiles of the masked area's box (memory stays bounded on huge
# pictures) each seen with this margin, their reach.
_FILL_MARGIN = 4 * 4 + 2
_FILL_TILE = 256
# Colour for holes no blur reaches: the unmasked pixels' mean, composited first with this tiny opacity
# so it only shows where nothing else does. A picture that is all hole becomes neutral grey.
_FILL_BASE_ALPHA = 1e-3
_NEUTRAL_GREY = (128, 128, 128)


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, ``x1``/``y1`` exclusive, as Pillow's ``crop`` and ``paste`` take it."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def slices(self) -> tuple[slice, slice]:
        """Index of the box in a NumPy array of the picture (rows first)."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def expanded(self, margin: int, width: int, height: int) -> Box:
        """``margin`` px wider on each side, within a ``width`` x ``height`` picture."""
        return Box(
            max(0, self.x0 - margin),
            max(0, self.y0 - margin),
            min(width, self.x1 + margin),
            min(height, self.y1 + margin),
        )

    def moved(self, dx: int, dy: int) -> Box:
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)

    def meets(self, other: Box) -> bool:
        """Whether the two boxes share a pixel."""
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


class Patch(NamedTuple):
    """A generated crop, and the mask (of the box's size) and box it is pasted through and into."""

    generated: Image.Image
    mask: Image.Image
    box: Box


def prepare_mask(mask: Image.Image, *, invert: bool, grow: int, blur: int) -> Image.Image:
    """Apply the user's mask settings in order: invert, grow (+) or shrink (−), then blur.

    Grow and shrink use a disc, so corners stay round; blur is Pillow's Gaussian with sigma ``blur``
    (A1111 used it before switching to an OpenCV kernel of 2.5 sigma: same look, constant time).
    An empty result is an error: an all-black mask would otherwise be a silent img2img of nothing.
    """
    values = np.asarray(_grey(mask))
    _check_raw_mask(values, invert)
    if invert:
        values = 255 - values
    window = _nonzero_box(values).expanded(mask_reach(grow, blur), mask.width, mask.height)
    work = _grow(values[window.slices()], grow)
    if blur:
        work = np.asarray(Image.fromarray(work).filter(ImageFilter.GaussianBlur(blur)))
    result = np.zeros_like(values)
    result[window.slices()] = work
    if not result.any():
        raise MaskError(_emptied_message(grow, invert))
    return Image.fromarray(result)


def mask_reach(grow: int, blur: int) -> int:
    """How far beyond its marked pixels ``prepare_mask`` can make a mask non-zero, in px."""
    return abs(grow) + _BLUR_REACH_SIGMAS * blur + 2


def processing_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The size the model works at: aspect kept, long side ``long_side``, both multiples of 8.

    The short side never drops below 64 px, so extreme strips get a slightly wider aspect instead of a
    size the UNet cannot take.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive (got {width}x{height})")
    if long_side < MIN_SIDE or long_side % 8:
        raise ValueError(f"long_side must be a multiple of 8, at least {MIN_SIDE} (got {long_side})")
    short = max(MIN_SIDE, round(min(width, height) / max(width, height) * long_side / 8) * 8)
    return (long_side, short) if width >= height else (short, long_side)


def masked_region(
    mask: Image.Image, *, padding: int, long_side: int, within: tuple[Box, int, int] | None = None
) -> tuple[Box, tuple[int, int]]:
    """The crop of "inpaint only masked" and the size it is processed at.

    The crop is the bounding box of the (blurred) mask's non-zero pixels, ``padding`` px wider on each
    side within the image, then grown to the processing size's aspect so the resize does not stretch.
    ``within`` is for a mask that is a patch of a bigger picture (a face's surroundings): where the
    patch lies, and the picture's width and height. The box is in the picture's pixels.
    """
    bbox = mask.getbbox()
    if bbox is None:
        raise MaskError("The mask is empty: white marks the area to repaint, and there is none.")
    patch, width, height = within or (Box(0, 0, mask.width, mask.height), mask.width, mask.height)
    padded = Box(*bbox).moved(patch.x0, patch.y0).expanded(padding, width, height)
    size = processing_size(padded.width, padded.height, long_side)
    return expand_to_aspect(padded, size[0], size[1], width, height), size


def expand_to_aspect(box: Box, aspect_w: int, aspect_h: int, image_w: int, image_h: int) -> Box:
    """Grow the box's short side (A1111's ``expand_crop_region``) to the aspect ``aspect_w:aspect_h``.

    The growth is split evenly between both ends; a box pushed past an image edge is shifted back
    inside, and one larger than the image is clamped to it (its aspect is then as close as it can be).
    """
    if box.width * aspect_h >= box.height * aspect_w:
        y0, y1 = _widen(box.y0, box.y1, round(box.width * aspect_h / aspect_w), image_h)
        return Box(box.x0, y0, box.x1, y1)
    x0, x1 = _widen(box.x0, box.x1, round(box.height * aspect_w / aspect_h), image_w)
    return Box(x0, box.y0, x1, box.y1)


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill": masked pixels get colour diffused from the unmasked ones around them.

    The masked area is ``mask >= 128`` (binarised like A1111's alpha rule: a blurred mask's faint edge
    keeps its real pixels). As in A1111, the unmasked pixels are blurred at sigmas 256, 64, 16, 4 and 2
    (weighted by how much unmasked area each blur saw) and composited coarse to fine, so holes fill
    from the outside in. Pixels outside the masked area are returned unchanged.
    """
    hole = np.asarray(_grey(mask)) >= 128
    if not hole.any():
        return image.copy()
    if hole.all():
        return Image.new("RGB", image.size, _NEUTRAL_GREY)
    window = _nonzero_box(hole)
    region = window.expanded(_FILL_REACH, image.width, image.height)
    rgb = np.asarray(image.crop(region.as_tuple()).convert("RGB"))
    colour = _diffuse(rgb, hole[region.slices()], window.moved(-region.x0, -region.y0))
    result = image.convert("RGB")
    result.paste(Image.fromarray(colour), window.as_tuple(), Image.fromarray(hole[window.slices()]))
    return result


def composite(original: Image.Image, generated: Image.Image, mask: Image.Image, box: Box) -> Image.Image:
    """Paste the generated crop over the full-resolution original in ``box``, the blurred mask (the
    part of it in ``box``, so of the box's size) as alpha.

    Where the mask is 0 the result is the original, bit for bit: the VAE round trip shifts colours
    everywhere, so the decoded picture is never returned as is.
    """
    result = original.convert("RGB")
    paste(result, Patch(generated, mask, box))
    return result


def paste(canvas: Image.Image, patch: Patch, at: tuple[int, int] = (0, 0)) -> None:
    """``composite`` in place, on a ``canvas`` that is the part of the picture whose top-left corner
    is at ``at`` (a crop of it): the part of the patch outside the canvas is left out. Blending is per
    pixel, so a crop pasted this way equals the same crop of the composited picture, bit for bit."""
    generated, mask, box = patch
    if mask.size != (box.width, box.height):
        raise ValueError(f"mask is {mask.size}, box is {box.width}x{box.height}")
    pixels = generated.convert("RGB")
    if pixels.size != (box.width, box.height):
        pixels = pixels.resize((box.width, box.height), Image.Resampling.LANCZOS)
    canvas.paste(pixels, (box.x0 - at[0], box.y0 - at[1]), _grey(mask))


def _grey(mask: Image.Image) -> Image.Image:
    """The mask as "L", without copying one that already is (masks are full-resolution)."""
    return mask if mask.mode == "L" else mask.convert("L")


def _check_raw_mask(values: np.ndarray, invert: bool) -> None:
    """Refuse a mask that marks nothing before any processing, naming the colour that was missing."""
    if not invert and not values.any():
        raise MaskError(
            "The mask is empty: it is all black. White marks the area to repaint, so paint the area "
            "to change in white."
        )
    if invert and values.min() == 255:
        raise MaskError(
            "The mask is empty: it is all white and invert mask is on, so nothing is left to repaint. "
            "With invert mask, black marks the area to repaint."
        )


def _emptied_message(grow: int, invert: bool) -> str:
    colour = "black" if invert else "white"
    if grow < 0:
        return (
            f"The mask is empty: nothing is left to repaint after shrinking it by {-grow} px. "
            f"{colour.capitalize()} marks the area to repaint: paint a larger area or shrink it less."
        )
    return (
        "The mask is empty: the marked area is too small or too faint to survive the mask blur. "
        f"{colour.capitalize()} marks the area to repaint: paint it in pure {colour}."
    )


def _nonzero_box(values: np.ndarray) -> Box:
    """Bounding box of the non-zero pixels of an array that has some."""
    rows = np.flatnonzero(values.any(axis=1))
    cols = np.flatnonzero(values.any(axis=0))
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _grow(values: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate (``pixels`` > 0) or erode (< 0) with a disc, as a few discs of at most 16 px.

    At the picture's edges OpenCV treats the mask as continuing outward, so shrinking does not eat a
    mask that touches the border.
    """
    operation = cv2.dilate if pixels > 0 else cv2.erode
    steps = math.ceil(abs(pixels) / _MAX_DISC_STEP)
    for step in range(steps):
        radius = abs(pixels) // steps + (1 if step < abs(pixels) % steps else 0)
        values = operation(values, _disc(radius))
    return values


def _disc(radius: int) -> np.ndarray:
    """Kernel of the pixels centred within radius + ½ px (r² + r): rounder than OpenCV's "ellipse",
    and several small discs add up to a large one without missing pixels."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * (radius + 1)).astype(np.uint8)


def _widen(start: int, end: int, length: int, limit: int) -> tuple[int, int]:
    """Grow [start, end) to ``length`` around its centre, shift it back into [0, limit), clamp."""
    extra = max(0, length - (end - start))
    start, end = start - extra // 2, end + extra - extra // 2
    past_end = max(0, end - limit)
    start, end = start - past_end, end - past_end
    before_start = max(0, -start)
    start, end = start + before_start, end + before_start
    return start, min(end, limit)


def _diffuse(rgb: np.ndarray, hole: np.ndarray, window: Box) -> np.ndarray:
    """Fill colour for every pixel of ``window`` (the hole's box): the wide layers on a shrunk copy of
    everything they can reach, then the fine layers at full size, tile by tile."""
    alpha = np.where(hole, np.uint8(0), np.uint8(255))
    premult = cv2.bitwise_and(rgb, rgb, mask=alpha)
    coarse = _fill_coarse(premult, alpha, cv2.mean(rgb, mask=alpha)[:3])
    colour = np.zeros((window.height, window.width, 3), np.uint8)
    for top in range(window.y0, window.y1, _FILL_TILE):
        for left in range(window.x0, window.x1, _FILL_TILE):
            tile = Box(left, top, min(left + _FILL_TILE, window.x1), min(top + _FILL_TILE, window.y1))
            if hole[tile.slices()].any():
                target = tile.moved(-window.x0, -window.y0)
                colour[target.slices()] = _fill_tile(premult, alpha, coarse, tile)
    return colour


def _fill_coarse(premult: np.ndarray, alpha: np.ndarray, mean_colour: tuple[float, ...]) -> np.ndarray:
    """The wide layers composited over the mean colour; the result has a quarter of the size."""
    height, width = alpha.shape
    quarter_size = _shrunk_size(width, height, _FILL_COARSE_SCALE)
    quarter = _layer(
        cv2.resize(premult, quarter_size, interpolation=cv2.INTER_AREA),
        cv2.resize(alpha, quarter_size, interpolation=cv2.INTER_AREA),
    )
    acc: np.ndarray = np.array(
        [*(c * _FILL_BASE_ALPHA for c in mean_colour), _FILL_BASE_ALPHA], np.float32
    )
    acc = acc.reshape(1, 1, 4)
    for sigma, repeats in _FILL_COARSE:
        size = _shrunk_size(width, height, sigma // _FILL_WORKING_SIGMA)
        level = cv2.resize(quarter, size, interpolation=cv2.INTER_AREA)
        acc = cv2.resize(acc, size, interpolation=cv2.INTER_LINEAR)
        acc = _composite_layer(acc, _blur(level, _FILL_WORKING_SIGMA), repeats)
    return acc


def _fill_tile(premult: np.ndarray, alpha: np.ndarray, coarse: np.ndarray, tile: Box) -> np.ndarray:
    """Colour of one tile: the fine layers composited over the upscaled coarse ones. Tiles deep inside
    a big hole skip the fine layers: nothing unmasked is within their reach."""
    height, width = alpha.shape
    acc = _upscale_part(coarse, (width, height), tile)
    around = tile.expanded(_FILL_MARGIN, width, height)
    if alpha[around.slices()].any():
        source = _layer(premult[around.slices()], alpha[around.slices()])
        inner = tile.moved(-around.x0, -around.y0).slices()
        for sigma, repeats in _FILL_FINE:
            acc = _composite_layer(acc, _blur(source, sigma)[inner], repeats)
    return np.clip(np.rint(acc[..., :3] / acc[..., 3:]), 0, 255).astype(np.uint8)


def _blur(layer: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur whose edges extend outward like Pillow's, which A1111's fill() used."""
    return cv2.GaussianBlur(layer, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def _layer(premult: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """One float32 premultiplied RGBA layer: colour 0-255, alpha 0-1."""
    layer = np.dstack([premult, alpha]).astype(np.float32)
    layer[..., 3] /= 255
    return layer


def _shrunk_size(width: int, height: int, scale: int) -> tuple[int, int]:
    return math.ceil(width / scale), math.ceil(height / scale)


def _composite_layer(acc: np.ndarray, layer: np.ndarray, repeats: int) -> np.ndarray:
    """Premultiplied "over" (Pillow's ``alpha_composite``) ``repeats`` times, in one pass:
    ``acc * t**n + layer * (1 + t + ... + t**(n-1))`` with ``t = 1 - alpha``."""
    see_through = 1 - layer[..., 3:]
    layer_weight = np.ones_like(see_through)
    for _ in range(repeats - 1):
        layer_weight = 1 + see_through * layer_weight
    return acc * see_through**repeats + layer * layer_weight


def _upscale_part(small: np.ndarray, full_size: tuple[int, int], part: Box) -> np.ndarray:
    """The pixels ``part`` of ``small`` resized to ``full_size``, without resizing the rest.

    Uses ``cv2.resize``'s pixel-centre mapping, so tiles join seamlessly.
    """
    scale_x = small.shape[1] / full_size[0]
    scale_y = small.shape[0] / full_size[1]
    to_small = np.array(
        [
            [scale_x, 0, (part.x0 + 0.5) * scale_x - 0.5],
            [0, scale_y, (part.y0 + 0.5) * scale_y - 0.5],
        ],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        small,
        to_small,
        (part.width, part.height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
