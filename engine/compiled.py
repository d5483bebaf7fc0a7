"""``INPAINTBOT_COMPILE``: the UNet compiled with ``torch.compile``, off unless the operator asks.

The UNet is where a job's time goes (every step, twice with guidance), so it is the one part compiled.
Jobs come at many sizes and batch sizes: ``dynamic=True`` traces shapes symbolically, so a new size
does not mean a new compile (each would take a minute on a GPU). The first job of a kind still waits
for the compile; ``bench.gpu --compile`` measures what it buys on a given card.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

BACKEND: str | Callable[..., Any] = "inductor"  # torch's default; tests swap in a cheaper one


def compile_unet(unet: torch.nn.Module) -> None:
    """Compile in place (``nn.Module.compile``): the module stays a ``UNet2DConditionModel``, so its
    config, device and dtype read as before, and the pipeline calls it as before."""
    log.info("compiling the UNet (torch.compile, dynamic shapes, backend %s)", BACKEND)
    unet.compile(dynamic=True, backend=BACKEND)


def is_compiled(unet: torch.nn.Module) -> bool:
    return getattr(unet, "_compiled_call_impl", None) is not None
