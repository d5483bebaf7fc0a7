"""Progress of a running batch: steps counted across passes, previews, and cancellation.

The pipeline calls ``on_step_end`` after every step; raising ``JobCancelled`` there is how a job stops
between two steps rather than after the whole pass. Each job of a batch hears of every step, and its
preview is made from its own first row: batch mates are other members, whose unchecked work in
progress it must never see.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from engine.errors import JobCancelled
from engine.job import Progress, ProgressCallback
from engine.preview import latent_preview


class StepTracker:
    """Counts steps across passes, reports each job's progress, and stops the pipeline when cancelled.

    ``listeners`` pairs each job's callback (or ``None``) with the index of its first row in the batch.
    """

    def __init__(
        self,
        total: int,
        listeners: Sequence[tuple[ProgressCallback | None, int]],
        cancel: threading.Event | None,
        previews: bool,
        sdxl: bool,
    ) -> None:
        self.total = total
        self.done = 0
        self.listeners = [(callback, row) for callback, row in listeners if callback is not None]
        self.cancel = cancel
        self.previews = previews
        self.sdxl = sdxl

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled()

    def on_step_end(self, pipe: object, step: int, timestep: object, tensors: dict) -> dict:
        self.check_cancel()
        self.done += 1
        for callback, row in self.listeners:
            preview = latent_preview(tensors["latents"][row], sdxl=self.sdxl) if self.previews else None
            callback(Progress(step=self.done, total=self.total, preview=preview))
        return tensors
