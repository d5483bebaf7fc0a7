"""A job's mask passes and their picture work, kept off the GPU thread.

``mask_passes`` makes one pass per mask a job found: the mask prepared at full resolution, its crop
box and processing size. Before its pipeline call a pass crops its box out of the picture, resizes
the crop (LANCZOS) and its mask to the processing size, fills the masked area (``fill``) and makes
the ControlNet's control image: a ``StagedCrop``. Most passes crop the upload as it is, so
``stage_ahead`` makes theirs in ``prepare``, in the prepare thread. A pass whose box an earlier pass
paints into (faces close together) must see that repaint, so its crop is made between the passes, on
the GPU thread: the upload's pixels in its box with the earlier outputs pasted over them
(``MaskPass.staged_for``), work the size of the box, never of the picture. The full-size picture is
put together once, when the result is first read (``Composite``), by the queue's worker thread.
Every pixel is what cropping and pasting the whole picture pass by pass gives: Pillow blends a paste
pixel by pixel.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from engine import controlnet, masking
from engine.mask_preview import RawMask
from engine.settings import Area, ControlNet, InpaintSettings, MaskedContent


@dataclass(frozen=True)
class StagedCrop:
    """A pass's picture work before the pipeline: the crop and its mask at the processing size, the
    crop with the masked area filled when the masked content is ``fill``, and the control image (made
    from the crop before any fill) when the job has a ControlNet."""

    picture: Image.Image
    mask: Image.Image
    filled: Image.Image | None = None
    control: np.ndarray | None = None


@dataclass(frozen=True)
class MaskPass:
    """One denoising pass: its crop box in the picture, the prepared mask over that box (of the box's
    size, so a crowd of small faces keeps small masks) and the processing size.

    Both set by ``stage_ahead``: ``after``, the earlier passes that paint into this one's box, in
    order; ``staged``, the crop made by ``prepare`` when there are none."""

    mask: Image.Image
    box: masking.Box
    size: tuple[int, int]
    staged: StagedCrop | None = None
    after: tuple[int, ...] = ()

    def painted_area(self) -> masking.Box | None:
        """Where this pass can change the picture: its mask's non-zero pixels, in picture pixels."""
        found = self.mask.getbbox()
        return masking.Box(*found).moved(self.box.x0, self.box.y0) if found else None

    def staged_for(
        self, picture: Image.Image, painted: Sequence[masking.Patch], settings: InpaintSettings
    ) -> StagedCrop:
        """The staged crop, made now from ``picture`` (the upload) and ``painted`` (the earlier passes'
        outputs) when ``prepare`` could not make it."""
        if self.staged is not None:
            return self.staged
        crop = picture.crop(self.box.as_tuple())
        for index in self.after:
            masking.paste(crop, painted[index], at=(self.box.x0, self.box.y0))
        return self.stage(crop, settings)

    def stage(self, crop: Image.Image, settings: InpaintSettings) -> StagedCrop:
        """Resize the box's ``crop`` and the mask to the processing size; fill; the control image."""
        picture = crop.resize(self.size, Image.Resampling.LANCZOS)
        mask = self.mask.resize(self.size, Image.Resampling.BILINEAR)
        filled = None
        if settings.masked_content is MaskedContent.FILL:
            filled = masking.fill_masked(picture, mask)
        control = None
        if settings.controlnet is not ControlNet.NONE:
            control = controlnet.control_image(
                settings.controlnet, picture, mask, settings.tile_downsample
            )
        return StagedCrop(picture, mask, filled, control)


def mask_passes(
    masks: Sequence[RawMask],
    picture: Image.Image,
    settings: InpaintSettings,
    long_side: int,
    area: Area,
) -> list[MaskPass]:
    """One pass per mask: the mask prepared at full resolution (invert, grow, blur), its box (the
    masked region and its padding for ``Area.MASKED``, as A1111's "only masked"; else the whole
    picture) and processing size, and the part of the mask inside the box."""
    passes = []
    for raw in masks:
        mask = masking.prepare_mask(
            raw.mask, invert=settings.invert_mask, grow=settings.mask_grow, blur=settings.mask_blur
        )
        if area is Area.MASKED:
            box, size = masking.masked_region(
                mask,
                padding=settings.padding,
                long_side=long_side,
                within=(raw.at, picture.width, picture.height),
            )
        else:
            box = masking.Box(0, 0, picture.width, picture.height)
            size = masking.processing_size(picture.width, picture.height, long_side)
        # Outside its patch a face's mask is black; Pillow's crop fills what it has not with 0.
        kept = mask.crop(box.moved(-raw.at.x0, -raw.at.y0).as_tuple())
        passes.append(MaskPass(mask=kept, box=box, size=size))
    return passes


def stage_ahead(
    passes: Sequence[MaskPass], picture: Image.Image, settings: InpaintSettings
) -> tuple[MaskPass, ...]:
    """Link each pass to the earlier ones that paint into its box, and stage the crops of those that
    no earlier pass paints into, from ``picture`` (the upload) as it is."""
    areas = [p.painted_area() for p in passes]
    linked = []
    for index, mask_pass in enumerate(passes):
        after = tuple(
            earlier
            for earlier, area in enumerate(areas[:index])
            if area is not None and area.meets(mask_pass.box)
        )
        staged = None if after else mask_pass.stage(picture.crop(mask_pass.box.as_tuple()), settings)
        linked.append(replace(mask_pass, after=after, staged=staged))
    return tuple(linked)


class Composite:
    """The full-size result of one image, made when first asked for (``GeneratedImage.image``): the
    upload with each pass's output pasted over it in order. Pasting into a 40 MP photo (a full-size
    copy) is done by the queue's finishing step or whoever reads the picture first, not by the GPU
    thread. It lets go of its parts once made."""

    def __init__(self, picture: Image.Image, painted: Sequence[masking.Patch]) -> None:
        self._parts: tuple[Image.Image, Sequence[masking.Patch]] | None = (picture, painted)
        self._made: Image.Image | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Image.Image:
        with self._lock:
            if self._made is None:
                assert self._parts is not None
                canvas, painted = self._parts
                if painted:
                    canvas = masking.composite(canvas, *painted[0])
                    for patch in painted[1:]:
                        masking.paste(canvas, patch)
                self._made, self._parts = canvas, None
            return self._made
