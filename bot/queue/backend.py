"""What every queue backend shares, and the few hooks where they differ: where jobs run.

``QueueBackend`` owns admission (caps, the engine's CPU stage, storing the job), the fair order of the
waiting jobs, ordered database writes, and the events. A backend subclasses it and decides where and
how jobs run: ``bot.queue.local`` on this machine's GPU, ``bot.queue.remote`` on GPU workers through
Redis. The seam is the list in ``QueueBackend``'s docstring; a backend uses nothing else of it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Generic, Protocol

from bot.config import BotConfig
from bot.errors import QueueClosedError
from bot.queue.base import JobSubmission, QueueSnapshot
from bot.queue.batching import P, QueuedJob, estimate, input_hashes
from bot.queue.caps import check_caps
from bot.queue.eta import EtaEstimator
from bot.queue.events import (
    POISONED,
    UNEXPECTED_FAILURE,
    CancelledEvent,
    EventStream,
    FailedEvent,
    JobEvent,
    QueuedEvent,
    failure_message,
    final_event,
)
from bot.queue.fairness import FairQueue
from bot.queue.writer import StoreWriter
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, Job, JobStatus
from engine.job import InpaintRequest, InpaintResult, ProgressCallback
from engine.mask_preview import MaskPreview
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


class QueueBackend(abc.ABC, Generic[P]):
    """``JobQueue`` up to where jobs run: admission, fair order, durability, events.

    Hooks a backend implements: ``_open`` (before the live jobs are queued again at start),
    ``_revive`` (one live job found at start; by default queued again), ``_opened`` (start running
    jobs), ``_running_jobs`` (for the caps), ``_cancel_running``, ``_etas`` (each waiting job's time to
    its result), ``_prefetch`` (after any change to the waiting jobs; by default nothing), ``_stop``
    (at close, before the writes are drained), ``_release`` (last at close; by default nothing), and
    ``snapshot`` and ``stuck``.

    What a backend may use: ``_store``, ``_waiting`` (the fair order), ``_wake`` (set on any change a
    backend waits for), ``_closed``, ``_writer``, ``_eta``, ``_max_attempts``, and ``_changed``,
    ``_report``, ``_put_back``, ``_emit``, ``_resume``, ``_prepare_stored``, ``_estimate``.
    """

    def __init__(self, engine: InpaintEngine[P], store: Store, config: BotConfig) -> None:
        self._engine = engine
        self._store = store
        self._max_per_user = config.queue_max_per_user
        self._max_total = config.queue_max_total
        self._max_per_guild = config.queue_max_per_guild
        self._max_attempts = config.job_max_attempts
        # Within a round, jobs for the model of the last batch (still loaded) go first: no reload each job.
        self._waiting: FairQueue[QueuedJob[P]] = FairQueue(group=lambda job: job.model)
        self._reserved: Counter[int] = Counter()  # submissions being validated and written
        self._reserved_guilds: Counter[int | None] = Counter()  # the same, by server
        self._wake = asyncio.Event()
        self._writer = StoreWriter()
        self._eta = EtaEstimator()
        self._streams: list[EventStream] = []
        self._reports: set[asyncio.Task[None]] = set()
        self._writer_task: asyncio.Task[None] | None = None
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="inpaint-prepare")
        self._started = False
        self._closed = False

    # -- hooks --------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None:
        """At start, before anything is queued again (a model that cannot load fails here)."""

    async def _revive(self, row: Job) -> None:
        """A job found live in the database at start."""
        await self._resume(row)

    @abc.abstractmethod
    async def _opened(self) -> None:
        """At start, once the live jobs are back: start running jobs."""

    @abc.abstractmethod
    def _running_jobs(self) -> list[QueuedJob[P]]: ...

    @abc.abstractmethod
    async def _cancel_running(self, job_id: int) -> bool:
        """Stop the running job ``job_id``; whether there was one."""

    @abc.abstractmethod
    def _etas(self) -> dict[int, float | None]:
        """Seconds until each waiting job's result (``None``: unknown)."""

    def _prefetch(self) -> None:
        """After any change to the waiting jobs."""

    @abc.abstractmethod
    async def _stop(self) -> None:
        """At close: stop or leave the running jobs; their writes and reports are awaited after."""

    def _release(self) -> None:
        """Last at close."""

    @abc.abstractmethod
    async def snapshot(self) -> QueueSnapshot: ...

    @abc.abstractmethod
    def stuck(self) -> str | None: ...

    # -- the JobQueue interface ---------------------------------------------------------------------

    def subscribe(self) -> EventStream:
        stream = EventStream()
        self._streams.append(stream)
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        self._streams.remove(stream)
        stream.put(None)

    async def start(self) -> None:
        """Open the backend, resend undelivered results, queue again what was live when the process
        stopped, then run jobs."""
        if self._started:
            raise RuntimeError("the queue is already started")
        await self._open()
        self._started = True
        self._writer_task = asyncio.create_task(self._writer.run(), name="queue-writer")
        for row in await jobs.undelivered_jobs(self._store):
            self._emit(final_event(self._store, row))
        for row in await jobs.live_jobs(self._store):
            await self._revive(row)
        self._changed()
        await self._opened()

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
        if waiting is None:
            return await self._cancel_running(job_id)
        self._waiting.remove(waiting)
        await self._writer.write(partial(jobs.cancel_job, self._store, waiting.id))
        self._emit(CancelledEvent(waiting.id, waiting.user_id))
        self._changed()
        return True

    async def acknowledge(self, job_id: int) -> None:
        await jobs.mark_delivered(self._store, job_id)

    async def close(self) -> None:
        """Stop the backend (``_stop``); waiting jobs stay queued in the database, every write and
        report is finished, and subscribers' streams end."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        await self._stop()
        for job in self._waiting:
            if job.prepared is not None:
                job.prepared.cancel()
        if self._reports:
            await asyncio.wait(self._reports)
        if self._writer_task is not None:
            await self._writer.drain()
            self._writer_task.cancel()
        self._cpu.shutdown()
        self._release()
        for stream in self._streams:
            stream.put(None)

    # -- admission ----------------------------------------------------------------------------------

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
        """After any change to the waiting jobs: wake the backend, ``_prefetch``, and tell every job
        whose position changed."""
        self._wake.set()
        self._prefetch()
        return self._announce_positions()

    # -- outcomes -----------------------------------------------------------------------------------

    def _put_back(self, interrupted: list[QueuedJob[P]]) -> None:
        """Jobs that stopped running without an outcome wait again, first in their users' turns."""
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
