"""The in-process queue: one GPU worker thread fed fairly from the event loop.

All queue state lives on the event loop. The engine computes in one dedicated thread, so the loop stays
responsive while the GPU works; its CPU stage (``prepare``) runs in a second thread, at submission to
refuse bad input at once, and again for the batch that runs next while the current one computes.
Database writes go through one ordered writer and never hold up the GPU: the next job starts while the
previous result is still being stored, and a burst of submissions is written after the results.

Longer than most modules, on purpose: admission, prefetch, the worker loop and settling a batch all
read and change the same waiting and running state; the parts that do not (batching, caps, the writer,
safety screening, events) live beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any, Generic, Protocol

from bot.config import BotConfig
from bot.errors import QueueClosedError
from bot.queue import running, screening
from bot.queue.base import JobSubmission, QueueEntry, QueueSnapshot
from bot.queue.batching import Batch, P, QueuedJob, Stop, estimate, halves, input_hashes, plan
from bot.queue.caps import check_caps
from bot.queue.eta import EtaEstimator
from bot.queue.events import (
    POISONED,
    STUCK,
    UNEXPECTED_FAILURE,
    CancelledEvent,
    EventStream,
    FailedEvent,
    JobEvent,
    ProgressEvent,
    QueuedEvent,
    StartedEvent,
    failure_message,
    final_event,
)
from bot.queue.fairness import FairQueue
from bot.queue.gpu import GpuStuck, GpuThread
from bot.queue.running import Checked
from bot.queue.writer import StoreWriter
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, Job, JobStatus
from engine.errors import JobCancelled, OutOfMemoryError
from engine.job import InpaintRequest, InpaintResult, Progress, ProgressCallback
from engine.mask_preview import MaskPreview
from engine.safety import SafetyChecker
from engine.settings import InpaintSettings

log = logging.getLogger(__name__)


class InpaintEngine(Protocol[P]):
    """The engine's two stages; ``engine.engine.Engine`` is the implementation."""

    def load(self, model: str | None = None) -> object: ...

    def prepare(self, request: InpaintRequest) -> P: ...

    def mask_preview(self, request: InpaintRequest) -> MaskPreview: ...

    def select_object(self, image: bytes, point: tuple[float, float]) -> bytes: ...

    def run(
        self,
        jobs: Sequence[P],
        *,
        on_progress: Sequence[ProgressCallback | None] | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
        preview_interval: float = 0.0,
    ) -> list[InpaintResult]: ...


class LocalJobQueue(Generic[P]):
    """``JobQueue`` on this machine's GPU: fair order, caps, batching, durability."""

    def __init__(
        self,
        engine: InpaintEngine[P],
        store: Store,
        config: BotConfig,
        *,
        safety: SafetyChecker | None = None,
    ) -> None:
        self._engine = engine
        self._safety = safety  # None: outputs are stored unchecked
        self._store = store
        self._max_per_user = config.queue_max_per_user
        self._max_total = config.queue_max_total
        self._max_per_guild = config.queue_max_per_guild
        self._batch_size = config.effective_batch_size()
        self._job_timeout = config.job_timeout
        self._max_attempts = config.job_max_attempts
        self._shutdown_timeout = config.shutdown_timeout
        # Within a round, jobs for the model of the last batch (still loaded) go first: no reload each job.
        self._waiting: FairQueue[QueuedJob[P]] = FairQueue(group=lambda job: job.model)
        self._running: Batch[P] | None = None
        self._reserved: Counter[int] = Counter()  # submissions being validated and written
        self._reserved_guilds: Counter[int | None] = Counter()  # the same, by server
        self._wake = asyncio.Event()
        self._halves = itertools.count()  # names each half of a batch that ran out of memory
        self._writer = StoreWriter()
        self._eta = EtaEstimator()
        self._streams: list[EventStream] = []
        self._reports: set[asyncio.Task[None]] = set()
        self._writer_task: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._gpu = GpuThread(grace=config.watchdog_grace)
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="inpaint-prepare")
        self._started = False
        self._closed = False

    # -- the JobQueue interface ---------------------------------------------------------------------

    def subscribe(self) -> EventStream:
        stream = EventStream()
        self._streams.append(stream)
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        self._streams.remove(stream)
        stream.put(None)

    async def start(self) -> None:
        """Load the default model, resume what was live when the process stopped, resend undelivered
        results, then work. A model that cannot load fails here, before any job is accepted."""
        if self._started:
            raise RuntimeError("the queue is already started")
        await self._gpu.call(
            self._engine.load
        )  # in the GPU thread, as every computation (bot.queue.gpu)
        await self._gpu.call(screening.load_checker, self._safety)
        self._started = True
        self._writer_task = asyncio.create_task(self._writer.run(), name="queue-writer")
        for row in await jobs.undelivered_jobs(self._store):
            self._emit(final_event(self._store, row))
        for row in await jobs.live_jobs(self._store):
            await self._resume(row)
        self._changed()
        self._worker = asyncio.create_task(self._work(), name="queue-worker")

    async def submit(self, submission: JobSubmission) -> QueuedEvent:
        if not self._started:
            raise RuntimeError("start() the queue before submitting jobs")
        if self._closed:
            raise QueueClosedError()
        user_id, guild_id = submission.user_id, submission.guild_id
        self._check_caps(user_id, guild_id, submission.max_pending)
        self._reserved[user_id] += 1
        self._reserved_guilds[guild_id] += 1
        try:
            request = replace(submission.request, settings=submission.request.settings.with_seed())
            prepared = await self._prepare(request)
            if self._closed:  # the writer stops once drained: no write may be asked for after that
                raise QueueClosedError()
            create = partial(
                jobs.create_job,
                self._store,
                user_id=user_id,
                settings=prepared.settings,
                image=request.image,
                mask=request.mask,
                found_mask=prepared.found_mask,
                guild_id=submission.guild_id,
                channel_id=submission.channel_id,
                parent_id=submission.parent_id,
                model=prepared.model,
                mask_source=prepared.mask_source,
            )
            row = await self._writer.write(create, new_job=True)
        finally:
            self._reserved[user_id] -= 1
            self._reserved_guilds[guild_id] -= 1
        job = QueuedJob.admit(row, prepared, previews=submission.previews)
        job.prepared = asyncio.get_running_loop().create_future()
        job.prepared.set_result(prepared)  # kept only if the job runs next (see _prefetch)
        self._waiting.push(user_id, job)
        return self._changed()[job.id]

    async def mask_preview(self, request: InpaintRequest) -> MaskPreview:
        """In the prepare thread, beside the GPU: at most one job's preparation ahead of it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, self._engine.mask_preview, request)

    async def select_object(self, image: bytes, point: tuple[float, float]) -> bytes:
        """In the prepare thread, like ``mask_preview``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, self._engine.select_object, image, point)

    async def check_room(self, user_id: int, guild_id: int | None, max_pending: int | None) -> None:
        self._check_caps(user_id, guild_id, max_pending)

    async def cancel(self, job_id: int) -> bool:
        waiting = next((job for job in self._waiting if job.id == job_id), None)
        if waiting is not None:
            self._waiting.remove(waiting)
            await self._writer.write(partial(jobs.cancel_job, self._store, waiting.id))
            self._emit(CancelledEvent(waiting.id, waiting.user_id))
            self._changed()
            return True
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

    async def acknowledge(self, job_id: int) -> None:
        await jobs.mark_delivered(self._store, job_id)

    async def close(self) -> None:
        """Finish the running job within ``shutdown_timeout`` or stop it; it runs again after a start.

        Waiting jobs stay queued in the database. Subscribers' streams end.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._worker is not None:
            _, pending = await asyncio.wait({self._worker}, timeout=self._shutdown_timeout)
            if pending and self._running is not None:
                self._running.stop(Stop.SHUTDOWN)
            if pending and self._gpu.stuck is not None:
                self._worker.cancel()  # it waits for a thread that may never come back
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for job in self._waiting:
            if job.prepared is not None:
                job.prepared.cancel()
        if self._reports:
            await asyncio.wait(self._reports)
        if self._writer_task is not None:
            await self._writer.drain()
            self._writer_task.cancel()
        self._gpu.shutdown()
        self._cpu.shutdown()
        for stream in self._streams:
            stream.put(None)

    # -- admission ----------------------------------------------------------------------------------

    def _running_jobs(self) -> list[QueuedJob[P]]:
        return self._running.jobs if self._running else []

    def _check_caps(self, user_id: int, guild_id: int | None, guild_limit: int | None) -> None:
        running = self._running_jobs()
        mine = self._waiting.count(user_id) + self._reserved[user_id]
        mine += sum(job.user_id == user_id for job in running)
        everyone = len(self._waiting) + self._reserved.total() + len(running)
        limit = min(self._max_per_user, guild_limit or self._max_per_user)
        # Direct messages have no server, and no server's cap.
        per_guild = self._max_per_guild if guild_id is not None else None
        ours = self._reserved_guilds[guild_id] if guild_id is not None else 0
        ours += sum(job.guild_id == guild_id for job in (*self._waiting, *running))
        check_caps(
            mine=mine,
            per_user=limit,
            everyone=everyone,
            total=self._max_total,
            ours=ours,
            per_guild=per_guild,
        )

    async def _prepare(self, request: InpaintRequest) -> P:
        """The engine's CPU stage, in its own thread so neither the loop nor the GPU waits for it."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu, self._engine.prepare, request)

    async def _prepare_stored(self, settings: InpaintSettings, inputs: dict[ImageRole, str]) -> P:
        """Prepare a job again from its pictures in the store (given by hash), the mask its words
        found included, so it is not searched for again."""

        def read(role: ImageRole) -> bytes | None:
            return self._store.files.read(inputs[role]) if role in inputs else None

        image, mask, found = await asyncio.to_thread(
            lambda: [read(role) for role in (ImageRole.INPUT, ImageRole.MASK, ImageRole.FOUND_MASK)]
        )
        assert image is not None
        return await self._prepare(InpaintRequest(image, settings, mask, found_mask=found))

    async def _resume(self, row: Job) -> None:
        """Queue a job found live in the database again; one that was running goes back to queued,
        unless the process died running it ``job_max_attempts`` times: such a job would take the bot
        down at every start, forever. Preparing it checks that it can still run (the jobs that run
        next are prepared again)."""
        if row.status is JobStatus.RUNNING and row.attempts >= self._max_attempts:
            log.error("job %s was running at %d stops of the bot; it fails", row.id, row.attempts)
            await self._fail_stored(row, POISONED.format(attempts=row.attempts))
            return
        if row.status is JobStatus.RUNNING:
            await jobs.requeue_job(self._store, row.id)
        try:
            prepared = await self._prepare_stored(row.inpaint_settings(), input_hashes(row))
        except Exception as exc:
            await self._fail_stored(row, failure_message(exc))
        else:
            self._waiting.push(row.user_id, QueuedJob.admit(row, prepared))

    async def _fail_stored(self, row: Job, message: str) -> None:
        await jobs.fail_job(self._store, row.id, message)
        self._emit(FailedEvent(row.id, row.user_id, message))

    def _changed(self) -> dict[int, QueuedEvent]:
        """After any change to the waiting jobs: wake the worker, get the next batch's inputs ready,
        and tell every job whose position changed."""
        self._wake.set()
        self._prefetch()
        return self._announce_positions()

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

    def _put_back(self, interrupted: list[QueuedJob[P]]) -> None:
        for job in reversed(interrupted):
            self._writer.write(partial(jobs.requeue_job, self._store, job.id))
            if not self._closed:
                self._waiting.push_front(job.user_id, job)
        self._changed()

    def _report(
        self, job: QueuedJob[P], write: Callable[[], Awaitable[object]], event: JobEvent | None = None
    ) -> None:
        """Store the job's outcome in order with its other writes, then send its final event
        (``None``: the done event, built from the stored row).

        The job's delivery gets a final event even when the database refuses: a failed write is tried
        once more, and a result that cannot be stored (nor the job's start before it) fails the job.
        A row the database keeps refusing stays live, and the next start runs it again or fails it
        (``job_max_attempts``)."""
        written = self._writer.write(write)

        async def report() -> None:
            try:
                stored = await written
            except Exception:  # the writer logged it
                stored = None
            if event is not None:
                if stored is None:
                    self._writer.write(write)
                self._emit(event)
            elif isinstance(stored, Job):
                self._emit(final_event(self._store, stored))
            else:
                log.error("the result of job %s could not be stored; it fails", job.id)
                self._writer.write(partial(jobs.fail_job, self._store, job.id, UNEXPECTED_FAILURE))
                self._emit(FailedEvent(job.id, job.user_id, UNEXPECTED_FAILURE))

        task = asyncio.create_task(report())
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    # -- events -------------------------------------------------------------------------------------

    def _emit(self, event: JobEvent) -> None:
        for stream in self._streams:
            stream.put(event)

    def _estimate(self, members: Sequence[QueuedJob[P]]) -> float | None:
        return estimate(self._eta, members)

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

    def _announce_positions(self) -> dict[int, QueuedEvent]:
        """A new ``QueuedEvent`` for every waiting job whose position changed; returns them by job."""
        etas = self._etas()
        sent = {}
        for position, job in enumerate(self._waiting, 1):
            if job.announced_position != position:
                job.announced_position = position
                sent[job.id] = QueuedEvent(job.id, job.user_id, position, etas[job.id])
                self._emit(sent[job.id])
        return sent


def _encode_pngs(result: InpaintResult) -> None:
    for image in result.images:
        _ = image.png


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    """A prefetch nobody awaits any more must not log 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()
