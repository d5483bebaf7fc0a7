"""Finding a job's masks: which source says what to repaint, and every match it finds.

``Engine.prepare`` and ``Engine.mask_preview`` both start here, so a preview shows the masks the job
would repaint. The sources are tried in a fixed order: an uploaded mask (or marked-up copy), words
(``engine.masks.words``), the automatic face mask (``engine.faces``), then the picture's transparency.
A source may find several masks (faces, matches of words); ``mask_pick`` chooses among them later
(``engine.mask_preview.picked``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

from PIL import Image, ImageChops

from engine import faces, images, mask_preview, masking
from engine.config import EngineConfig
from engine.errors import MaskError
from engine.images import MaskSource
from engine.job import InpaintRequest
from engine.mask_preview import RawMask
from engine.masks import words
from engine.settings import AutoMask, InpaintSettings


class FoundMasks(NamedTuple):
    """The decoded picture, every mask its source found, that source, and the ``mask_pick`` still to
    apply."""

    picture: Image.Image
    masks: list[RawMask]
    source: MaskSource
    mask_pick: str


def find_masks(
    request: InpaintRequest,
    settings: InpaintSettings,
    config: EngineConfig,
    face_detector: faces.FaceDetector,
    word_finder: words.Finder | None,
) -> FoundMasks:
    """Decode the job's pictures and find its masks (``word_finder`` None: the operator turned
    ``mask_prompt`` off). The ``mask_pick`` is the settings', or "all" for a stored found mask, which
    is what the first run picked (picking again among its one mask would fail for "2"). A mask picture
    and words together are refused: which one the member meant is a guess."""
    image, uploaded = images.load_pictures(
        request.image,
        request.mask,
        find_faces=settings.finds_mask,
        max_pixels=config.max_pixels,
    )
    if uploaded is not None and settings.mask_prompt is not None:
        raise MaskError(
            "Give either a mask picture or mask_prompt, not both: both say what to repaint. "
            "(A mask_prompt can come from a preset: choose another preset then.)"
        )
    whole = masking.Box(0, 0, image.width, image.height)
    if settings.mask_prompt is not None and request.found_mask is not None:
        stored = images.load_mask(request.found_mask, size=image.size, max_pixels=config.max_pixels)
        return FoundMasks(image, [RawMask(stored, whole)], MaskSource.WORDS, "all")
    if settings.mask_prompt is not None:
        if word_finder is None:
            raise MaskError(words.OFF_MESSAGE)
        matches = words.find_matches(word_finder, images.flatten(image), settings.mask_prompt)
        found = [RawMask(mask, whole, match) for match, mask in matches]
        return FoundMasks(image, found, MaskSource.WORDS, settings.mask_pick)
    if uploaded is None and settings.auto_mask is AutoMask.FACE:
        boxes = faces.detect_faces_or_raise(
            face_detector, images.flatten(image), settings.max_faces, limit=config.max_faces_per_job
        )
        # Grow and blur reach this far; an inverted face mask is all the rest of the picture.
        margin = masking.mask_reach(settings.mask_grow, settings.mask_blur)
        if settings.invert_mask:
            margin = max(image.size)
        patches = [faces.face_mask(face, image.width, image.height, margin) for face in boxes]
        found = [RawMask(mask, at) for mask, at in patches]
        return FoundMasks(image, found, MaskSource.FACE, settings.mask_pick)
    return FoundMasks(image, *mask_preview.plain_masks(image, uploaded), settings.mask_pick)


def kept_mask(picked: Sequence[RawMask], source: MaskSource, stored: bytes | None) -> bytes | None:
    """What words found is kept with the job (a PNG of the picked matches' union), so a re-run does
    not search again; None for the other sources."""
    if source is not MaskSource.WORDS:
        return None
    return stored or words.mask_png(functools.reduce(ImageChops.lighter, [raw.mask for raw in picked]))
