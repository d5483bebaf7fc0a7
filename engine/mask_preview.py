"""What a member sees before painting: the picture with the mask tinted and outlined.

Pure picture work on the CPU (Pillow, NumPy, OpenCV), no torch: the bot shows it in seconds while the
GPU queue is long, and ``inpaintbot inpaint --mask-preview`` writes it without importing torch when
the mask needs no model. ``Engine.mask_preview`` finds the masks the way a job does and hands them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from engine import images, masking
from engine.images import MaskSource
from engine.masking import Box
from engine.masks import words
from engine.settings import InpaintSettings

LONG_SIDE = 1024  # small and fast to upload, still easy to read
TINT = (255, 0, 0)
TINT_OPACITY = 0.45
OUTLINE_PX = 2
# Where a blurred mask counts as "in": the outline follows the edge the member would call the mask's.
_EDGE_LEVEL = 128


@dataclass(frozen=True)
class RawMask:
    """A mask as a source found it, before the member's settings, and where it lies in the picture:
    all of it for an uploaded mask, transparency or words, a face's surroundings for a face. Words
    also keep what their finder saw (``match``: its box and confidence), which ``mask_pick`` goes by."""

    mask: Image.Image
    at: Box
    match: words.Match | None = None


@dataclass(frozen=True)
class MaskPreview:
    """The overlay, how many separate matches the source found (faces, things words name; 1 for a
    drawn mask), and which one is shown: 0 for all of them, else the 1-based match (``mask_pick``)."""

    overlay: Image.Image
    source: MaskSource
    matches: int
    shown: int = 0


def plain_masks(
    image: Image.Image, uploaded: images.UploadedMask | None
) -> tuple[list[RawMask], MaskSource]:
    """The sources that need no model: the uploaded mask (or marked-up copy), else the picture's
    transparency (``images.load_pictures`` made sure one of them is there when no other source is
    asked for)."""
    whole = Box(0, 0, image.width, image.height)
    if uploaded is not None:
        source = MaskSource.SCRIBBLE if uploaded.scribbled else MaskSource.UPLOADED
        return [RawMask(uploaded.mask, whole)], source
    return [RawMask(images.mask_from_alpha(image), whole)], MaskSource.TRANSPARENCY


def preview(
    image: Image.Image,
    found: Sequence[RawMask],
    source: MaskSource,
    settings: InpaintSettings,
    mask_pick: str,
) -> MaskPreview:
    """The overlay of the masks a job with ``settings`` would repaint (picked by ``mask_pick``,
    inverted, grown and blurred as the job will), over the picture. ``found`` is every match of the
    source: each face and each thing named in words is one, a drawn mask or transparency is one.
    ``mask_pick`` is the settings' or, for a re-run's stored found mask (already picked), all."""
    picture = images.flatten(image)
    whole = np.zeros((picture.height, picture.width), np.uint8)
    for raw in picked(found, source, mask_pick):
        mask = masking.prepare_mask(
            raw.mask, invert=settings.invert_mask, grow=settings.mask_grow, blur=settings.mask_blur
        )
        region = whole[raw.at.slices()]
        np.maximum(region, np.asarray(mask), out=region)
    return MaskPreview(
        overlay=overlay(picture, Image.fromarray(whole)),
        source=source,
        matches=len(found),
        shown=shown_rank(found, source, mask_pick),
    )


def picked(found: Sequence[RawMask], source: MaskSource, mask_pick: str) -> list[RawMask]:
    """The matches ``mask_pick`` keeps, with the rules of words (``engine.masks.words.pick``): all,
    the N-th in the source's order (faces: largest first; words: most confident first, by the
    finder's confidence), or by size or place (words: their finder's box)."""
    if mask_pick == "all":
        return list(found)
    # Fresh objects, so equal boxes stay apart when mapped back.
    candidates = [
        words.Match(raw.match.box, raw.match.score)
        if raw.match is not None
        else words.Match(raw.at.as_tuple(), float(len(found) - rank))
        for rank, raw in enumerate(found)
    ]
    chosen = {id(match) for match in words.pick(candidates, mask_pick, f"the {source.value}")}
    return [raw for raw, match in zip(found, candidates, strict=True) if id(match) in chosen]


def shown_rank(found: Sequence[RawMask], source: MaskSource, mask_pick: str) -> int:
    """Which match ``mask_pick`` shows, counting from 1 in the source's order; 0 for all of them."""
    kept = picked(found, source, mask_pick)
    if len(kept) != 1 or len(found) == 1:
        return 0
    return next(rank for rank, raw in enumerate(found, 1) if raw is kept[0])


def overlay(image: Image.Image, mask: Image.Image, *, long_side: int = LONG_SIDE) -> Image.Image:
    """``image`` (RGB) with ``mask`` ("L", its size) tinted ``TINT_OPACITY`` red in proportion to the
    mask's value and outlined ``OUTLINE_PX`` px where it crosses half, at most ``long_side`` px long.

    Scaled down first: the outline is then as thick on a 24 MP photo as on a small one.
    """
    if mask.size != image.size:
        raise ValueError(f"mask is {mask.size}, image is {image.size}")
    scale = min(1.0, long_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    rgb = np.asarray(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), np.float32)
    alpha = np.asarray(mask.resize(size, Image.Resampling.BILINEAR), np.float32)[..., None] / 255
    tint = np.array(TINT, np.float32)
    out = rgb + (tint - rgb) * alpha * TINT_OPACITY
    inside = (alpha[..., 0] * 255 >= _EDGE_LEVEL).astype(np.uint8)
    kernel = np.ones((2 * OUTLINE_PX - 1, 2 * OUTLINE_PX - 1), np.uint8)
    out[(cv2.dilate(inside, kernel) - cv2.erode(inside, kernel)).astype(bool)] = tint
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
