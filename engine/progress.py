"""Progress of a running batch: steps counted across passes, previews, and cancellation.

The pipeline calls ``on_step_end`` after every step; raising ``JobCancelled`` there is how a job stops
between two steps rather than after the whole pass.
"""

from __future__ import annotations

import threading

from engine.errors import JobCancelled
from engine.job import Progress, ProgressCallback
from engine.preview import latent_preview


class StepTracker:
    """Counts steps across passes, reports progress, and stops the pipeline when cancelled."""

    def __init__(
        self,
        total: int,
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
        previews: bool,
        sdxl: bool,
    ) -> None:
        self.total = total
        self.done = 0
        self.on_progress = on_progress
        self.cancel = cancel
        self.previews = previews
        self.sdxl = sdxl

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled()

    def on_step_end(self, pipe: object, step: int, timestep: object, tensors: dict) -> dict:
        self.check_cancel()
        self.done += 1
        if self.on_progress is not None:
            preview = latent_preview(tensors["latents"], sdxl=self.sdxl) if self.previews else None
            self.on_progress(Progress(step=self.done, total=self.total, preview=preview))
        return tensors
