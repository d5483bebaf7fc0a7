"""ControlNet Tile and Inpaint: which model, the control image, and the pipelines that run them.

Both kinds run on diffusers' ControlNet *inpaint* pipelines, built with ``from_pipe`` from the resident
base pipeline so the UNet, VAE and text encoders are shared. Tile uses it too, rather than the
ControlNet img2img pipeline: only the inpaint pipelines put the original back outside the mask after
every step, which is A1111's inpainting with a regular checkpoint, whatever the ControlNet.

Those pipelines encode the picture themselves and take no prepared latents, so the engine hands them
the processed crops, and they encode it the engine's deterministic way (``engine.latents.encode``): with
the same seed, a ControlNet at weight 0 paints what the job paints without one. The masked-content
modes that edit the start latents (latent noise, latent nothing) are applied right after that encoding
(``edit_start_latents``), as the engine does without a ControlNet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from engine.errors import SettingsError
from engine.settings import ControlNet

# A1111's preprocessor names, shown in the parameters line.
MODULES = {ControlNet.TILE: "tile_resample", ControlNet.INPAINT: "inpaint_only"}

# sd-webui-controlnet's tile_resample leaves the picture as it is below this rate.
_MIN_RESAMPLE_RATE = 1.1


def model_name(config: EngineConfig, kind: ControlNet, *, sdxl: bool) -> str:
    """The configured ControlNet of this kind for the base model's family, or a clear refusal."""
    names = {
        (ControlNet.TILE, False): ("INPAINTBOT_CONTROLNET_TILE", config.controlnet_tile),
        (ControlNet.INPAINT, False): ("INPAINTBOT_CONTROLNET_INPAINT", config.controlnet_inpaint),
        (ControlNet.TILE, True): ("INPAINTBOT_CONTROLNET_TILE_SDXL", config.controlnet_tile_sdxl),
        (ControlNet.INPAINT, True): (
            "INPAINTBOT_CONTROLNET_INPAINT_SDXL",
            config.controlnet_inpaint_sdxl,
        ),
    }
    variable, name = names[kind, sdxl]
    if name is None:
        raise SettingsError(
            f"No {kind.value} ControlNet is set up for SDXL models on this server "
            f"(the operator sets {variable}). Use an SD 1.x model or controlnet none."
        )
    return name


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


class _EngineEncoding:
    """Encode the picture the engine's way instead of sampling with the job's generators."""

    vae: Any
    _start_latents_edit: Callable[[torch.Tensor], torch.Tensor] | None = None

    def edit_start_latents(self, edit: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Change the next call's start latents with ``edit`` (the masked-content mode). The pipeline
        encodes the picture first, before drawing its noise, so the generators are used in the same
        order as on the engine's own path; later encodings (the masked image) are left alone."""
        self._start_latents_edit = edit

    def _encode_vae_image(self, image: torch.Tensor, generator: object) -> torch.Tensor:
        encoded = latents.encode(self.vae, image, image.dtype)
        edit, self._start_latents_edit = self._start_latents_edit, None
        return edit(encoded) if edit is not None else encoded


class ControlNetInpaintPipeline(_EngineEncoding, StableDiffusionControlNetInpaintPipeline):
    """SD 1.x/2.x ControlNet inpainting, encoding like the engine."""


class ControlNetInpaintXLPipeline(_EngineEncoding, StableDiffusionXLControlNetInpaintPipeline):
    """SDXL ControlNet inpainting, encoding like the engine."""
