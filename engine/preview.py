"""Cheap progress previews: a linear latent-to-RGB projection instead of a VAE decode.

A VAE decode costs about as much as several UNet steps; this costs a 4x3 matrix product. The factors
are the well-known least-squares fits used by A1111 and ComfyUI for their "approx cheap" previews.
"""

from __future__ import annotations

import torch
from PIL import Image

_SD15_FACTORS = torch.tensor(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
)
_SDXL_FACTORS = torch.tensor(
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ]
)
_SDXL_BIAS = torch.tensor([0.1084, -0.0175, -0.0011])


def latent_preview(latent: torch.Tensor, *, sdxl: bool, max_side: int = 256) -> Image.Image:
    """RGB preview of one image's latent (shape ``4, H, W``)."""
    latent = latent.detach().float().cpu()
    factors = _SDXL_FACTORS if sdxl else _SD15_FACTORS
    rgb = torch.einsum("chw,cr->hwr", latent, factors)
    if sdxl:
        rgb = rgb + _SDXL_BIAS
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels, mode="RGB")
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)
