"""ControlNet Tile and Inpaint: which model, the control image, and the pipelines that run them.

Both kinds run on diffusers' ControlNet *inpaint* pipelines, built with ``from_pipe`` from the resident
base pipeline so the UNet, VAE and text encoders are shared. Tile uses it too, rather than the
ControlNet img2img pipeline: only the inpaint pipelines put the original back outside the mask after
every step, which is A1111's inpainting with a regular checkpoint, whatever the ControlNet.

Those pipelines encode the picture themselves and take no prepared latents, so the engine hands them
the processed crops, and they encode it the engine's deterministic way (``engine.latents.encode``): with
the same seed, a ControlNet at weight 0 paints what the job paints without one. The masked-content
modes that edit the start latents (latent noise, latent nothing) are applied right after that encoding
(``start_latents_edited``), as the engine does without a ControlNet.

The ControlNets are the operator's choice (``INPAINTBOT_CONTROLNET_*``): when one cannot be used, the
member is told which variable the operator must fix (``unusable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from diffusers import (
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
)
from PIL import Image

from engine import latents
from engine.config import EngineConfig
from engine.errors import ModelLoadError, SettingsError
from engine.settings import ControlNet

# A1111's preprocessor names, shown in the parameters line.
MODULES = {ControlNet.TILE: "tile_resample", ControlNet.INPAINT: "inpaint_only"}

# sd-webui-controlnet's tile_resample leaves the picture as it is below this rate.
_MIN_RESAMPLE_RATE = 1.1


def variable(kind: ControlNet, *, sdxl: bool) -> str:
    """The environment variable naming the ControlNet of this kind for the base model's family."""
    return f"INPAINTBOT_CONTROLNET_{kind.name}{'_SDXL' if sdxl else ''}"


def configured(config: EngineConfig, kind: ControlNet, *, sdxl: bool) -> str | None:
    """The ControlNet the operator named for this kind and family; None when they named none."""
    name: str | None = getattr(config, variable(kind, sdxl=sdxl).removeprefix("INPAINTBOT_").lower())
    return name


def model_name(config: EngineConfig, kind: ControlNet, *, sdxl: bool) -> str:
    """The configured ControlNet of this kind for the base model's family, or a clear refusal."""
    name = configured(config, kind, sdxl=sdxl)
    if name is None:
        raise SettingsError(
            f"No {kind.value} ControlNet is set up for SDXL models on this server "
            f"(the operator sets {variable(kind, sdxl=sdxl)}). Use an SD 1.x model or controlnet none."
        )
    return name


@contextmanager
def operator_setting(kind: ControlNet, *, sdxl: bool) -> Iterator[None]:
    """Blame a ControlNet that cannot be found or loaded on its variable (see ``unusable``)."""
    try:
        yield
    except ModelLoadError as exc:
        raise unusable(kind, sdxl=sdxl, problem=str(exc)) from None


def unusable(kind: ControlNet, *, sdxl: bool, problem: str) -> ModelLoadError:
    """Members see this on Discord: which ControlNet, why, and that only the operator can fix it."""
    name = variable(kind, sdxl=sdxl)
    return ModelLoadError(
        f"This server's {kind.value} ControlNet ({name}) cannot be used. {problem} "
        f"The bot's operator must fix {name}; until then, use controlnet none."
    )


def guidance_window(start: float, end: float, steps: int) -> tuple[float, float] | None:
    """diffusers' ``control_guidance_start/end`` that guide the steps A1111 guides, or None for none.

    sd-webui-controlnet guides step i (from 0) of n when start <= i/n <= end; diffusers guides it when
    i/n >= start and (i+1)/n <= end. So end 0.2 of 4 steps guides the first step in A1111 (0/4 <= 0.2)
    and none in diffusers (1/4 > 0.2). The window returned is made of the same i/n fractions diffusers
    computes, so float rounding cannot move a step in or out.
    """
    guided = [i for i in range(steps) if start <= i / steps <= end]
    if not guided:
        return None
    return guided[0] / steps, (guided[-1] + 1) / steps


def short_name(name: str) -> str:
    """How A1111 names a ControlNet model: the file or repository name, without folders or suffix."""
    path = Path(name)
    return path.stem if path.suffix == ".safetensors" else path.name


def control_image(
    kind: ControlNet, crop: Image.Image, mask: Image.Image, downsample: float
) -> np.ndarray:
    """The control image of one crop as float32 HxWx3, exactly as A1111's preprocessor makes it."""
    if kind is ControlNet.TILE:
        return np.asarray(tile_resample(crop, downsample), dtype=np.float32) / 255.0
    if kind is ControlNet.INPAINT:
        return inpaint_only(crop, mask)
    raise ValueError(f"no control image for {kind}")


def tile_resample(image: Image.Image, rate: float) -> Image.Image:
    """``tile_resample``: shrink by the down-sampling rate (area average), then scale back up (cubic).

    The round trip blurs away detail so the ControlNet keeps the composition and colours but lets the
    sampler redraw textures; rate 1 keeps the picture as it is.
    """
    if rate < _MIN_RESAMPLE_RATE:
        return image.copy()
    pixels = np.asarray(image.convert("RGB"))
    small = cv2.resize(
        pixels,
        (int(image.width / rate), int(image.height / rate)),
        interpolation=cv2.INTER_AREA,
    )
    return Image.fromarray(cv2.resize(small, (image.width, image.height), interpolation=cv2.INTER_CUBIC))


def inpaint_only(image: Image.Image, mask: Image.Image) -> np.ndarray:
    """``inpaint_only``: RGB in [0, 1] with the masked pixels (mask > 50 %) set to -1."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    pixels[np.asarray(mask.convert("L")) > 127] = -1.0
    return pixels


def as_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """A BxCxHxW float batch: the pipelines take tensors as they are, so -1 survives."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@dataclass
class _Call:
    """The engine's pipeline call under way: the masked-content edit and whether it was applied."""

    edit: Callable[[torch.Tensor], torch.Tensor]
    start_encoded: bool = False


class _EngineEncoding:
    """Encode the picture the engine's way instead of sampling with the job's generators."""

    vae: Any
    unet: Any
    vae_scale_factor: int
    sdxl: ClassVar[bool] = False  # whether the VAE may need float32 (latents.needs_upcast)
    _call: _Call | None = None

    @contextmanager
    def start_latents_edited(self, edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
        """Within this, the pipeline's start latents are changed by ``edit`` (the masked-content mode).

        The pipeline encodes the picture first, before drawing its noise, so the generators are used in
        the same order as on the engine's own path. The next encoding is the masked image, which only
        9-channel UNets look at. The edit ends with the call, even one that fails before encoding.
        """
        self._call = _Call(edit)
        try:
            yield
        finally:
            self._call = None

    def _encode_vae_image(self, image: torch.Tensor, generator: object) -> torch.Tensor:
        call = self._call
        if call is not None and call.start_encoded and self.unet.config.in_channels == 4:
            # The masked image, whose latents a 4-channel UNet never sees: skip a VAE pass.
            height, width = (side // self.vae_scale_factor for side in image.shape[-2:])
            shape = (image.shape[0], self.vae.config.latent_channels, height, width)
            return torch.zeros(shape, device=image.device, dtype=image.dtype)
        encoded = latents.encode(self.vae, image, image.dtype, sdxl=self.sdxl)
        if call is None or call.start_encoded:
            return encoded
        call.start_encoded = True
        return call.edit(encoded)


class ControlNetInpaintPipeline(_EngineEncoding, StableDiffusionControlNetInpaintPipeline):
    """SD 1.x/2.x ControlNet inpainting, encoding like the engine."""


class ControlNetInpaintXLPipeline(_EngineEncoding, StableDiffusionXLControlNetInpaintPipeline):
    """SDXL ControlNet inpainting, encoding like the engine."""

    sdxl = True
