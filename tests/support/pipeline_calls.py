"""Record what the engine calls a real diffusers pipeline with, and still run it.

Some settings are best seen in the call itself (the guidance scale, the prompt embeddings, the
scheduler, how many denoising steps ran): a picture of random-weight noise shows that something
changed, the call shows it was the setting. The pipeline runs as usual, so the picture is real too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class PipelineCall:
    """One call: its keyword arguments, the scheduler it ran with and its UNet passes (with
    classifier-free guidance batched, one per denoising step actually run)."""

    kwargs: dict[str, Any]
    scheduler: Any
    unet_passes: int = 0


def record_calls(monkeypatch: pytest.MonkeyPatch, pipeline_class: type) -> list[PipelineCall]:
    """Wrap ``pipeline_class.__call__`` to record each call, then call through; undone after the test."""
    calls: list[PipelineCall] = []
    call = pipeline_class.__call__

    def recording(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        record = PipelineCall(kwargs, pipe.scheduler)
        calls.append(record)

        def count(*_: object) -> None:
            record.unet_passes += 1

        hook = pipe.unet.register_forward_hook(count)
        try:
            return call(pipe, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(pipeline_class, "__call__", recording)
    return calls
