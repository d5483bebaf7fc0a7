"""Giving GPU memory back: what the engine does after an out-of-memory error and a model switch."""

from __future__ import annotations

import gc

import torch


def release_memory() -> None:
    """Collect what only the garbage collector frees (pipelines and tracebacks hold cycles), then hand
    the CUDA cache's free blocks back. Call it once the last reference to the memory is gone: outside
    the ``except`` block whose traceback holds the failed call's tensors, after a pipeline is dropped."""
    gc.collect()
    torch.cuda.empty_cache()  # does nothing where CUDA was never used
