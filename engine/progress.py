"""Progress of a running batch: steps counted across passes, previews, and cancellation.

The pipeline calls ``on_step_end`` after every step; raising ``JobCancelled`` there is how a job stops
between two steps rather than after the whole pass. Each job of a batch hears of every step, and its
preview is made from its own first row: batch mates are other members, whose unchecked work in
progress it must never see.

A preview costs a copy of the latents from the GPU, which waits for the step's work to finish. The bot
edits a status message at most every few seconds and shows only the newest update, so the queue asks
for a new preview at most every ``interval`` seconds; the steps in between carry the last one made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from PIL import Image

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
        *,
        interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.listeners = [(callback, row) for callback, row in listeners if callback is not None]
        self.cancel = cancel
        self.previews = previews
        self.sdxl = sdxl
        self.interval = interval
        self.clock = clock
        self._made_at: float | None = None  # when the last previews were made
        self._shown: list[Image.Image | None] = [None] * len(self.listeners)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled()

    def on_step_end(self, pipe: object, step: int, timestep: object, tensors: dict) -> dict:
        self.check_cancel()
        self.done += 1
        now = self.clock()
        if self.previews and (self._made_at is None or now - self._made_at >= self.interval):
            self._made_at = now
            self._shown = [
                latent_preview(tensors["latents"][row], sdxl=self.sdxl) for _, row in self.listeners
            ]
        for (callback, _), preview in zip(self.listeners, self._shown, strict=True):
            callback(Progress(step=self.done, total=self.total, preview=preview))
        return tensors
