"""A batch through the GPU thread, as the local queue and a GPU worker both run it.

Three steps, so the GPU thread does only GPU work: the pipeline runs in the GPU thread; the picture
work of finishing and screening (the full-size composites, the safety checker's small copies) runs
beside it on a worker thread; then the checker's model runs in the GPU thread again. Each GPU step is
watched against the time limit (``GpuThread.run``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from bot.queue import screening
from bot.queue.gpu import GpuThread
from engine.job import InpaintResult, ProgressCallback
from engine.safety import SafetyChecker

# Seconds between two progress previews of a job: the delivery edits a status message at most every
# 2 s (bot.delivery.delivery.EDIT_INTERVAL) with the newest update, so more would be thrown away.
PREVIEW_INTERVAL = 1.0

# A job's result with the safety checker's verdict on each of its pictures (None: not checked).
Checked = tuple[InpaintResult, list[bool | None]]


class Runs(Protocol):
    """The engine's GPU stage (``engine.engine.Engine.run``)."""

    def run(
        self,
        jobs: Sequence[Any],
        *,
        on_progress: Sequence[ProgressCallback | None] | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
        preview_interval: float = 0.0,
    ) -> list[InpaintResult]: ...


async def run_and_screen(
    gpu: GpuThread,
    engine: Runs,
    safety: SafetyChecker | None,
    prepared: Sequence[Any],
    *,
    on_progress: Sequence[ProgressCallback | None],
    cancel: threading.Event,
    previews: bool,
    limit: float,
    stop: Callable[[], None],
) -> list[Checked]:
    """Run a batch and screen its pictures; ``stop`` asks a run past ``limit`` seconds to stop."""
    run = partial(
        engine.run,
        prepared,
        on_progress=on_progress,
        cancel=cancel,
        previews=previews,
        preview_interval=PREVIEW_INTERVAL,
    )
    results = await gpu.run(run, limit, stop)
    shown = await asyncio.get_running_loop().run_in_executor(None, screening.views, safety, results)
    verdicts = await gpu.run(partial(screening.verdicts, safety, results, shown), limit, stop)
    return list(zip(results, verdicts, strict=True))
