"""The data that goes into and comes out of the engine.

Plain frozen dataclasses: the queue stores requests, the bot and the CLI read results. Nothing here
knows about Discord, threads or the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from PIL import Image

from engine.images import MaskSource
from engine.masking import Box
from engine.metadata import encode_png
from engine.settings import InpaintSettings

__all__ = [
    "GeneratedImage",
    "InpaintRequest",
    "InpaintResult",
    "MaskSource",
    "Progress",
    "ProgressCallback",
]


@dataclass(frozen=True)
class InpaintRequest:
    """One job as a user asked for it: raw upload bytes plus validated settings.

    ``found_mask`` is the mask the settings' ``mask_prompt`` found when the job was first prepared
    (``PreparedJob.found_mask``, stored with the job): re-runs and re-rolls pass it back, so they paint
    the same area without searching again.
    """

    image: bytes
    settings: InpaintSettings
    mask: bytes | None = None
    found_mask: bytes | None = None


@dataclass(frozen=True)
class Progress:
    """One denoising step done. ``preview`` is a small RGB picture when previews were asked for."""

    step: int
    total: int
    preview: Image.Image | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class GeneratedImage:
    """One output picture at the input's full size, and the seed that made it.

    The PNG (with the A1111 ``parameters`` chunk) is encoded on first access to ``png``: for a 12 MP
    photo that takes longer than the denoising of its crop, so the GPU worker hands the picture on and
    whoever delivers it pays the encoding, off the GPU's critical path. For the same reason the engine
    gives ``picture`` as a function that pastes the repainted crop into the full-size photo, called on
    first access to ``image``.
    """

    picture: Image.Image | Callable[[], Image.Image]
    seed: int
    parameters: str

    @cached_property
    def image(self) -> Image.Image:
        return self.picture if isinstance(self.picture, Image.Image) else self.picture()

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @cached_property
    def png(self) -> bytes:
        return encode_png(self.image, self.parameters)


@dataclass(frozen=True)
class InpaintResult:
    """Everything a job produced. ``settings`` holds the concrete seed actually used."""

    images: list[GeneratedImage]
    settings: InpaintSettings
    mask_source: MaskSource
    model: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # Where each picture was repainted (the passes' crop boxes): the safety checker looks at each closely.
    repainted: tuple[Box, ...] = ()
