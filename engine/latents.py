"""Pixels to latents, the engine's one way: deterministic, so a seed reproduces an image exactly."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from engine.settings import MaskedContent


def encode(vae: Any, pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """VAE-encode pixels in [-1, 1] to scaled latents, taking the distribution's mode.

    diffusers' pipelines sample the distribution with the job's generator instead, which both adds
    noise and shifts the generator's stream: the ControlNet pipelines are made to use this one too.
    """
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:  # the SDXL VAE overflows in fp16
        vae.to(torch.float32)
    with torch.no_grad():
        latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode()
    if upcast:
        vae.to(torch.float16)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).to(dtype)


def apply_masked_content(
    image_latents: torch.Tensor,
    mask: torch.Tensor,
    content: MaskedContent,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """A1111's *latent noise* / *latent nothing*: the masked part of the start latents becomes seeded
    noise or zeros (``mask`` at pixel size, 1 = repaint). Other modes work on pixels, not here."""
    latent_mask = F.interpolate(mask, size=image_latents.shape[-2:])
    if content is MaskedContent.LATENT_NOISE:
        noise = randn_tensor(
            image_latents.shape,
            generator=generators,
            device=image_latents.device,
            dtype=image_latents.dtype,
        )
        return image_latents * (1 - latent_mask) + noise * latent_mask
    if content is MaskedContent.LATENT_NOTHING:
        return image_latents * (1 - latent_mask)
    return image_latents
