"""Pixels to latents, the engine's one way: deterministic, so a seed reproduces an image exactly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from engine.settings import MaskedContent

log = logging.getLogger(__name__)


def encode(vae: Any, pixels: torch.Tensor, dtype: torch.dtype, *, sdxl: bool) -> torch.Tensor:
    """VAE-encode pixels in [-1, 1] to scaled latents, taking the distribution's mode.

    diffusers' pipelines sample the distribution with the job's generator instead, which both adds
    noise and shifts the generator's stream: the ControlNet pipelines are made to use this one too.
    """
    with vae_dtype_kept(vae), torch.no_grad():
        if needs_upcast(vae, sdxl=sdxl):
            vae.to(torch.float32)
        latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).to(dtype)


def needs_upcast(vae: Any, *, sdxl: bool) -> bool:
    """diffusers' rule: a float16 SDXL VAE runs in float32 when its config says ``force_upcast`` (the
    original SDXL VAE overflows in float16; fp16-fix VAEs say False). SD 1.x/2.x VAEs run in float16:
    their configs predate the flag, which then reads True by default, so it is not asked of them."""
    return sdxl and vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


@contextmanager
def nan_checked_decode(vae: Any) -> Iterator[None]:
    """Within this, a half-precision VAE decode that produces NaN is done again in float32 (A1111's
    "NaN in VAE" fallback): a black or broken picture would otherwise reach the member."""
    decode_as_is = vae.decode

    def decode(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        decoded = decode_as_is(z, *args, **kwargs)  # a DecoderOutput or a tuple: the picture first
        if vae.dtype not in (torch.float16, torch.bfloat16) or not decoded[0].isnan().any():
            return decoded
        log.warning("the VAE decoded NaN in %s: decoding again in float32", vae.dtype)
        with vae_dtype_kept(vae):
            vae.to(torch.float32)
            return decode_as_is(z.float(), *args, **kwargs)

    vae.decode = decode
    try:
        yield
    finally:
        del vae.decode  # the class's own method again


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


# What a VAE decode needs above what is resident, per megapixel, in float32: 3.8 GiB at 512 px and
# falling towards 3.5 as the picture grows (``python -m bench.vae_memory``: the full-size SD/SDXL VAE,
# measured on the CPU; an encode takes 2.5 GiB). Half precision takes about half.
DECODE_BYTES_PER_PIXEL = 3.8 * 2**30 / 1e6
# Largest decode that runs whole: 4 GiB (a float32 decode of 1024 x 1024 px, the SDXL VAE upcast at
# its native size, just fits; in float16, up to about 1448 x 1448 px). Beyond it the VAE works in
# tiles (diffusers' tiled encode/decode: the model's native size with a blended overlap), whose peak
# is one tile's, so a 2048 px job on a 24 GB card does not run out of memory in the VAE. Tiling costs
# some time and blends seams, so it is not used where the whole picture fits.
TILE_ABOVE_BYTES = 4 * 2**30


def decode_bytes(vae: Any, pixels: int, *, sdxl: bool) -> float:
    """Estimated memory of one picture's decode (the VAE is sliced: one picture at a time)."""
    full = vae.dtype == torch.float32 or needs_upcast(vae, sdxl=sdxl)
    return pixels * DECODE_BYTES_PER_PIXEL / (1 if full else 2)


def tile_if_large(vae: Any, pixels: int, *, sdxl: bool) -> None:
    """Set the VAE to encode and decode pictures of ``pixels`` in tiles when whole they would take
    more than ``TILE_ABOVE_BYTES``: each pass sets it for its size before the VAE's first use."""
    vae.use_tiling = decode_bytes(vae, pixels, sdxl=sdxl) > TILE_ABOVE_BYTES


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
