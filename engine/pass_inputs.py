"""What one denoising pass hands the pipeline besides the prompts: the start latents, the ControlNet
inputs, and how many steps to schedule so that the wanted number runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine import controlnet, latents
from engine.models import LoadedModel
from engine.settings import InpaintSettings


def denoising_steps(settings: InpaintSettings) -> int:
    """Steps actually run: diffusers runs int(strength x steps), at least one (A1111 runs one more)."""
    if settings.strength == 0:
        return 0
    return max(1, min(int(settings.steps * settings.strength), settings.steps))


def latent_inputs(
    model: LoadedModel,
    crops: list[Image.Image],
    mask: torch.Tensor,
    settings: InpaintSettings,
    generators: list[torch.Generator],
) -> dict[str, torch.Tensor]:
    """The start latents, with the masked-content mode applied, and the masked-image latents."""
    pipe = model.pipe
    height, width = mask.shape[-2:]
    pixels = pipe.image_processor.preprocess(crops, height=height, width=width)
    pixels = pixels.to(model.device, model.dtype)
    if model.inpainting and settings.strength == 1.0:
        # A pure-noise start: the picture reaches a 9-channel UNet only through the masked-image
        # latents below, so encoding it here would be wasted work.
        latent_shape = (
            len(crops),
            4,
            height // pipe.vae_scale_factor,
            width // pipe.vae_scale_factor,
        )
        image_latents = torch.zeros(latent_shape, device=model.device, dtype=model.dtype)
    else:
        image_latents = latents.encode(pipe.vae, pixels, model.dtype, sdxl=model.sdxl)
    image_latents = latents.apply_masked_content(
        image_latents, mask, settings.masked_content, generators
    )
    # 9-channel UNets see the picture with the masked part greyed out; 4-channel ones ignore this.
    masked_latents = image_latents
    if model.inpainting:
        masked_latents = latents.encode(pipe.vae, pixels * (mask < 0.5), model.dtype, sdxl=model.sdxl)
    return {"image": image_latents, "masked_image_latents": masked_latents}


def control_inputs(settings: list[InpaintSettings], images: list[np.ndarray | None]) -> dict[str, Any]:
    """Each image's control image (made with its crop, ``engine.passes``, from its own
    ``tile_downsample``), and the ControlNet settings the batch shares (its batch_key), taken from the
    first image's settings."""
    made = [image for image in images if image is not None]
    if len(made) != len(images):
        raise ValueError("a crop was staged without its control image")
    shared = settings[0]
    window = controlnet.guidance_window(
        shared.control_start, shared.control_end, denoising_steps(shared)
    )
    start, end = window or (0.0, 1.0)
    return {
        "control_image": controlnet.as_tensor(made),
        # No step in the window (e.g. start 0.9 of 4 steps): weight 0 is what A1111 paints then.
        "controlnet_conditioning_scale": shared.control_weight if window else 0.0,
        "control_guidance_start": start,
        "control_guidance_end": end,
    }


def scheduled_steps(settings: InpaintSettings) -> int:
    """Length of the full schedule such that at least one step survives diffusers' strength cut."""
    if int(settings.steps * settings.strength) >= 1:
        return settings.steps
    return math.ceil(1 / settings.strength)
