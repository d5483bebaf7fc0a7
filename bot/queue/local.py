"""The in-process queue: one GPU worker thread fed fairly from the event loop.

Admission, the fair order, writes and events are the shared backend's (``bot.queue.backend``); this
backend runs the jobs here. The engine computes in one dedicated thread, so the loop stays responsive
while the GPU works; its CPU stage (``prepare``) runs in a second thread, at submission to refuse bad
input at once, and again for the batch that runs next while the current one computes. Database writes
never hold up the GPU: the next job starts while the previous result is still being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from functools import partial
from typing import Any

from bot.config import BotConfig
from bot.queue import running, screening
from bot.queue.backend import InpaintEngine, QueueBackend
from bot.queue.base import QueueEntry, QueueSnapshot
from bot.queue.batching import Batch, P, QueuedJob, Stop, halves, plan
from bot.queue.events import (
    STUCK,
    CancelledEvent,
    FailedEvent,
    ProgressEvent,
    StartedEvent,
    failure_message,
)
from bot.queue.gpu import GpuStuck, GpuThread
from bot.queue.running import Checked
from bot.store import jobs
from bot.store.database import Store
from engine.errors import JobCancelled, OutOfMemoryError
from engine.job import InpaintResult, Progress, ProgressCallback
from engine.safety import SafetyChecker

log = logging.getLogger(__name__)


class LocalJobQueue(QueueBackend[P]):
    """``JobQueue`` on this machine's GPU: fair order, caps, batching, durability."""

    def __init__(
        self,
        engine: InpaintEngine[P],
        store: Store,
        config: BotConfig,
        *,
        safety: SafetyChecker | None = None,
    ) -> None:
        super().__init__(engine, store, config)
        self._safety = safety  # None: outputs are stored unchecked
        self._batch_size = config.effective_batch_size()
        self._job_timeout = config.job_timeout
        self._shutdown_timeout = config.shutdown_timeout
        self._running: Batch[P] | None = None
        self._halves = itertools.count()  # names each half of a batch that ran out of memory
        self._worker: asyncio.Task[None] | None = None
        self._gpu = GpuThread(grace=config.watchdog_grace)

    # -- the backend's hooks ------------------------------------------------------------------------

    async def _open(self) -> None:
        """Load the default model: one that cannot load fails here, before any job is accepted."""
        # In the GPU thread, as every computation (bot.queue.gpu).
        await self._gpu.call(self._engine.load)
        await self._gpu.call(screening.load_checker, self._safety)

    async def _opened(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="queue-worker")

    async def _cancel_running(self, job_id: int) -> bool:
        batch = self._running
        running = next((job for job in batch.jobs if job.id == job_id), None) if batch else None
        if batch is None or running is None:
            return False
        running.cancelled = True
        batch.cancel.set()
        return True

    async def snapshot(self) -> QueueSnapshot:
        """Running jobs share their batch's time left; waiting ones are in fair order (see ``_etas``)."""
        batch = self._running
        running = batch.jobs if batch else []
        remaining = batch.remaining() if batch else None
        etas = self._etas()
        return QueueSnapshot(
            running=tuple(QueueEntry(job.id, job.user_id, remaining) for job in running),
            waiting=tuple(QueueEntry(job.id, job.user_id, etas[job.id]) for job in self._waiting),
        )

    def stuck(self) -> str | None:
        return self._gpu.stuck

    async def _stop(self) -> None:
        """Finish the running job within ``shutdown_timeout`` or stop it; it runs again after a start."""
        if self._worker is not None:
            _, pending = await asyncio.wait({self._worker}, timeout=self._shutdown_timeout)
            if pending and self._running is not None:
                self._running.stop(Stop.SHUTDOWN)
            if pending and self._gpu.stuck is not None:
                self._worker.cancel()  # it waits for a thread that may never come back
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def _release(self) -> None:
        self._gpu.shutdown()

    def _running_jobs(self) -> list[QueuedJob[P]]:
        return self._running.jobs if self._running else []

    def _prefetch(self) -> None:
        """Prepare the batch that runs next while the GPU works; forget the prepared input of the rest."""
        planned = self._plan()
        for job in self._waiting:
            if job in planned:
                self._prepared(job)
            else:
                job.prepared = None

    def _prepared(self, job: QueuedJob[P]) -> asyncio.Future[P]:
        if job.prepared is None:
            job.prepared = asyncio.ensure_future(self._prepare_stored(job.settings, job.inputs))
            job.prepared.add_done_callback(_retrieve_exception)
        return job.prepared

    # -- the worker ---------------------------------------------------------------------------------

    async def _work(self) -> None:
        while (batch := await self._next_batch()) is not None:
            self._running = batch
            prepared = await self._ready(batch)
            if not batch.jobs:
                self._running = None
                continue
            for job in batch.jobs:
                self._writer.write(partial(jobs.start_job, self._store, job.id))
                self._emit(StartedEvent(job.id, job.user_id, batch.estimate))
            try:
                outcome: list[Checked] | BaseException = await self._run(batch, prepared)
            except Exception as exc:
                outcome = exc
            self._running = None
            self._settle(batch, outcome)
            if isinstance(outcome, GpuStuck):
                await self._gpu.wait_until_back(outcome, closing=lambda: self._closed)
            # A failed run's traceback holds its frames (the engine's, with the batch's inputs): let
            # them go before the next run, which may be this batch's halves, needing that memory.
            del outcome, prepared

    def _plan(self) -> list[QueuedJob[P]]:
        return plan(self._waiting, self._batch_size)

    async def _next_batch(self) -> Batch[P] | None:
        while not self._closed:
            if members := self._plan():
                self._waiting.pop()  # the first member: this also takes the user's turn
                for job in members[1:]:
                    self._waiting.remove(job)
                for job in members:
                    self._prepared(job)
                self._changed()
                return Batch(members, self._estimate(members))
            self._wake.clear()
            await self._wake.wait()
        return None

    async def _ready(self, batch: Batch[P]) -> list[P]:
        """The batch's prepared inputs (usually prepared already); a job whose input cannot be prepared
        again fails and leaves the batch."""
        futures = [self._prepared(job) for job in batch.jobs]
        if not all(future.done() for future in futures):  # else no await: the GPU must not wait a turn
            await asyncio.wait(futures)
        prepared = []
        for job, future in zip(list(batch.jobs), futures, strict=True):
            if (error := future.exception()) is None:
                prepared.append(future.result())
                continue
            batch.jobs.remove(job)
            failed = FailedEvent(job.id, job.user_id, failure_message(error))
            self._report(job, partial(jobs.fail_job, self._store, job.id, failed.message), failed)
        return prepared

    async def _run(self, batch: Batch[P], prepared: list[P]) -> list[Checked]:
        """Run and screen the batch (``running.run_and_screen``), stopped at the time limit."""
        loop = asyncio.get_running_loop()

        def on_progress(job: QueuedJob[P]) -> ProgressCallback:
            def progressed(progress: Progress) -> None:  # runs in the GPU thread
                loop.call_soon_threadsafe(self._progressed, batch, job, progress)

            return progressed

        return await running.run_and_screen(
            self._gpu,
            self._engine,
            self._safety,
            prepared,
            on_progress=[on_progress(job) for job in batch.jobs],
            cancel=batch.cancel,
            previews=any(job.previews for job in batch.jobs),
            limit=self._job_timeout * len(batch.jobs),
            stop=partial(batch.stop, Stop.TIMEOUT),
        )

    def _progressed(self, batch: Batch[P], job: QueuedJob[P], progress: Progress) -> None:
        """One job's step, with a preview of its own picture (the engine makes it from its rows)."""
        batch.step = progress.step
        preview = progress.preview if job.previews else None
        self._emit(ProgressEvent(job.id, job.user_id, progress.step, progress.total, preview))

    def _settle(self, batch: Batch[P], outcome: list[Checked] | BaseException) -> None:
        """Decide every job's fate now (put-backs must precede the next pick); store and report later."""
        if isinstance(outcome, list):
            first = batch.jobs[0]
            self._eta.observe(
                first.model,
                first.processing_size,
                steps=first.total_steps,
                images=sum(job.images for job in batch.jobs),
                seconds=time.monotonic() - batch.started,
            )
            for job, (result, nsfw) in zip(batch.jobs, outcome, strict=True):
                # Encoded beside the next run while the write waits its turn (``png`` is computed once).
                encoding = asyncio.get_running_loop().run_in_executor(None, _encode_pngs, result)
                encoding.add_done_callback(_retrieve_exception)
                self._report(job, partial(jobs.finish_job, self._store, job.id, result, nsfw=nsfw))
            return
        if isinstance(outcome, OutOfMemoryError) and len(batch.jobs) > 1:
            # Halves until they fit: a half of one job that still runs out of memory fails below.
            parts = halves(batch.jobs)
            log.warning(
                "a batch of %d jobs ran out of memory; running it again in halves of %d and %d jobs",
                len(batch.jobs),
                *map(len, parts),
            )
            for part in parts:
                half = next(self._halves)
                for job in part:
                    job.half = half
            self._put_back(batch.jobs)
            return
        if isinstance(outcome, JobCancelled) and batch.stop_reason is not Stop.TIMEOUT:
            for job in batch.jobs:
                if job.cancelled:
                    cancelled = CancelledEvent(job.id, job.user_id)
                    self._report(job, partial(jobs.cancel_job, self._store, job.id), cancelled)
            # Batch mates of a cancelled job run again; on shutdown they run after the next start.
            self._put_back([job for job in batch.jobs if not job.cancelled])
            return
        if isinstance(outcome, GpuStuck):
            message = STUCK
        elif batch.stop_reason is Stop.TIMEOUT:
            limit = self._job_timeout * len(batch.jobs)
            message = f"The job took longer than the limit of {limit:g} seconds and was stopped."
        else:
            message = failure_message(outcome)
        for job in batch.jobs:
            failed = FailedEvent(job.id, job.user_id, message)
            self._report(job, partial(jobs.fail_job, self._store, job.id, message), failed)

    def _etas(self) -> dict[int, float | None]:
        """Seconds until each waiting job's result, ignoring batching (so a little pessimistic)."""
        clock: float | None = 0.0
        if self._running is not None:
            clock = self._running.remaining()
        etas = {}
        for job in self._waiting:
            estimate = self._estimate([job])
            clock = None if clock is None or estimate is None else clock + estimate
            etas[job.id] = clock
        return etas


def _encode_pngs(result: InpaintResult) -> None:
    for image in result.images:
        _ = image.png


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    """A prefetch nobody awaits any more must not log 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()
