"""Pixels to latents, the engine's one way: deterministic, so a seed reproduces an image exactly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    with vae_dtype_kept(vae), torch.no_grad():
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae.to(torch.float32)  # the SDXL VAE overflows in fp16
        latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).to(dtype)


@contextmanager
def vae_dtype_kept(vae: Any) -> Iterator[None]:
    """Put the VAE back in its dtype afterwards, however the block ends.

    The VAE is shared by a model's pipelines, and diffusers' SDXL ControlNet inpaint pipeline upcasts
    a float16 one for decoding without casting it back: the next job would then feed it float16.
    """
    dtype = vae.dtype
    try:
        yield
    finally:
        if vae.dtype != dtype:
            vae.to(dtype)


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
