"""The queue with GPU workers elsewhere, through Redis Streams (``INPAINTBOT_REDIS_URL``).

Admission, caps, fair order, durability and events are the shared backend's (``bot.queue.backend``):
this backend decides only where a job runs. The database stays the source of truth and ``FairQueue`` the only order: the bot
hands the next fair job to a worker only when one announces a free slot, preferably one with the job's
model loaded, so fairness holds across any number of workers. Each delivery has an attempt id; the
outcome of any other attempt is ignored, so a worker presumed dead cannot post twice. A job whose
worker stopped renewing its claim (``XAUTOCLAIM`` past the lease), or is gone (its announcement expired
and the lease is over) runs again elsewhere, at most ``job_max_attempts`` deliveries in all. Key names and messages are in
``bot.queue.streams``; the worker is ``bot.worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.config import BotConfig
from bot.queue import streams
from bot.queue.backend import InpaintEngine, QueueBackend
from bot.queue.base import QueueEntry, QueueSnapshot, WorkerStatus
from bot.queue.batching import P, QueuedJob, input_hashes
from bot.queue.events import CancelledEvent, FailedEvent, ProgressEvent, StartedEvent
from bot.queue.streams import GROUP, RECLAIMER, Delivery, Fields, Flight, Keys, WorkerInfo
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, Job, JobStatus

log = logging.getLogger(__name__)

LOST = (
    "The GPU workers stopped {attempts} times while running this job, so it is not run again. "
    "Try other settings or another picture."
)
TOO_BIG = "The pictures of this job are larger than this bot may send to its GPU workers ({mb:g} MB)."


class LocalWorker(Protocol):
    """The worker on the bot's own GPU (``bot.worker.Worker``), started and closed with the queue."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class _Running(Generic[P]):
    """A job out on a worker: the delivery and what ``/queue`` shows of its progress."""

    job: QueuedJob[P]
    flight: Flight
    started: float
    step: int = 0
    last_event: str = "0-0"


class RemoteJobQueue(QueueBackend[P]):
    """``JobQueue`` whose jobs run on GPU workers (``inpaintbot worker``, and ``local`` in this process)."""

    def __init__(
        self,
        engine: InpaintEngine[P],
        store: Store,
        config: BotConfig,
        redis: Redis,
        *,
        local: LocalWorker | None = None,
    ) -> None:
        super().__init__(engine, store, config)
        self._redis = redis
        self._local = local
        self._keys = Keys(config.redis_prefix)
        self._config = config
        self._flights: dict[int, _Running[P]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._deliveries: Counter[int] = Counter()  # per job, as the database counts its starts
        self._flights_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._recorded: dict[int, Flight] = {}  # at start: the deliveries a previous process left

    # -- the backend's hooks -----------------------------------------------------------------------

    async def _open(self) -> None:
        """The engine is not loaded here: only its CPU stage runs in the bot."""
        await self._refresh_workers()
        inflight: dict[bytes, bytes] = await self._redis.hgetall(self._keys.inflight)  # type: ignore[assignment]
        self._recorded = streams.decode_flights(inflight)

    async def _revive(self, row: Job) -> None:
        """A job still out on a worker is adopted; the others are queued again."""
        self._deliveries[row.id] = row.attempts
        flight = self._recorded.pop(row.id, None)
        if row.status is JobStatus.RUNNING and flight is not None:
            await self._adopt(row, flight)
        else:
            await self._resume(row)

    async def _opened(self) -> None:
        for flight in self._recorded.values():  # finished while the bot was away: nothing to wait for
            await self._forget(flight)
        self._recorded = {}
        if self._local is not None:
            await self._local.start()
            await self._refresh_workers()
        self._tasks = [
            asyncio.create_task(self._work(), name="queue-dispatch"),
            asyncio.create_task(self._listen(), name="queue-listen"),
            asyncio.create_task(self._watch(), name="queue-watch"),
        ]

    async def _cancel_running(self, job_id: int) -> bool:
        running = self._flights.get(job_id)
        if running is None:
            return False
        running.job.cancelled = True
        flight = running.flight
        ttl = int(self._config.redis_picture_ttl)
        await self._redis.set(self._keys.cancel(job_id, flight.attempt), b"1", ex=ttl)
        return True

    async def snapshot(self) -> QueueSnapshot:
        etas = self._etas()
        running = sorted(self._flights.values(), key=lambda running: running.started)
        return QueueSnapshot(
            running=tuple(QueueEntry(r.job.id, r.job.user_id, self._remaining(r)) for r in running),
            waiting=tuple(QueueEntry(job.id, job.user_id, etas[job.id]) for job in self._waiting),
            workers=tuple(
                WorkerStatus(info.name, info.slots, self._busy(info.name), info.models)
                for info in sorted(self._workers.values(), key=lambda info: info.name)
            ),
        )

    def stuck(self) -> str | None:
        return None  # a worker's GPU that hangs stops that worker only

    async def _stop(self) -> None:
        """Stop dispatching; jobs out on workers keep running and the next start adopts them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._local is not None:
            await self._local.close()

    def _running_jobs(self) -> list[QueuedJob[P]]:
        return [running.job for running in self._flights.values()]

    # -- dispatch -----------------------------------------------------------------------------------

    async def _work(self) -> None:
        while not self._closed:
            worker = self._free_worker() if self._waiting else None
            if worker is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self._waiting.pop()
            target = self._best_worker(job.model) or worker
            self._changed()
            try:
                await self._dispatch(job, target)
            except RedisError as exc:
                log.warning("cannot hand job %s to a worker: %s; it waits", job.id, exc)
                self._waiting.push_front(job.user_id, job)
                self._changed()
                await asyncio.sleep(self._config.worker_heartbeat)

    def _busy(self, worker: str) -> int:
        return sum(running.flight.worker == worker for running in self._flights.values())

    def _free(self) -> list[WorkerInfo]:
        return [info for info in self._workers.values() if info.slots > self._busy(info.name)]

    def _free_worker(self) -> WorkerInfo | None:
        free = self._free()
        return min(free, key=lambda info: (self._busy(info.name) - info.slots, info.name), default=None)

    def _best_worker(self, model: str) -> WorkerInfo | None:
        """A free worker with ``model`` loaded (most recently used first), if there is one."""
        loaded = [info for info in self._free() if model in info.models]
        return min(loaded, key=lambda info: (-info.models.index(model), info.name), default=None)

    async def _dispatch(self, job: QueuedJob[P], worker: WorkerInfo) -> None:
        inputs = await asyncio.to_thread(self._read_inputs, job)
        limit = self._config.redis_max_picture_mb
        if sum(map(len, inputs.values())) > limit * 1e6:
            failed = FailedEvent(job.id, job.user_id, TOO_BIG.format(mb=limit))
            self._report(job, partial(jobs.fail_job, self._store, job.id, failed.message), failed)
            return
        attempt = secrets.token_hex(8)
        delivery = Delivery(job.id, attempt, job.settings, job.previews)
        ttl = int(self._config.redis_picture_ttl)
        stream = self._keys.jobs(worker.name)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.input(job.id))
            pipe.hset(self._keys.input(job.id), mapping=inputs)  # type: ignore[arg-type]
            pipe.expire(self._keys.input(job.id), ttl)
            pipe.xadd(stream, delivery.encode())  # type: ignore[arg-type]
            *_, entry = await pipe.execute()
        flight = Flight(job.id, worker.name, entry.decode(), attempt, time.time())
        await self._redis.hset(self._keys.inflight, str(job.id), flight.encode())
        self._deliveries[job.id] += 1
        self._flights[job.id] = _Running(job, flight, time.monotonic())
        self._flights_changed.set()
        await self._redis.xadd(self._keys.wake, {b"job": str(job.id).encode()}, maxlen=1)
        self._writer.write(partial(jobs.start_job, self._store, job.id))
        self._emit(StartedEvent(job.id, job.user_id, self._estimate([job])))
        log.info("job %s goes to worker %s (attempt %s)", job.id, worker.name, attempt)

    def _read_inputs(self, job: QueuedJob[P]) -> dict[str, bytes]:
        names = {ImageRole.INPUT: "image", ImageRole.MASK: "mask", ImageRole.FOUND_MASK: "found_mask"}
        return {
            names[role]: self._store.files.read(sha256)
            for role, sha256 in job.inputs.items()
            if role in names
        }

    async def _adopt(self, row: Job, flight: Flight) -> None:
        """A job the previous bot process handed out: wait for its worker's outcome again."""
        try:
            prepared = await self._prepare_stored(row.inpaint_settings(), input_hashes(row))
        except Exception:
            await self._forget(flight)
            await self._resume(row)
            return
        job = QueuedJob.admit(row, prepared)
        self._flights[row.id] = _Running(job, flight, time.monotonic())

    # -- what workers report ------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Read every running job's event stream with one blocking ``XREAD``."""
        block = streams.block_ms(self._config.worker_heartbeat)
        while not self._closed:  # also if redis-py turned the cancel into a connection error
            if not self._flights:
                self._flights_changed.clear()
                await self._flights_changed.wait()
                continue
            self._flights_changed.clear()
            positions = {self._keys.events(job_id): r.last_event for job_id, r in self._flights.items()}
            positions[self._keys.wake] = "$"  # a new job out: read its stream too, now
            try:
                reply: Any = await self._redis.xread(positions, block=block)  # type: ignore[arg-type]
            except RedisError as exc:
                log.warning("cannot read the workers' reports: %s", exc)
                await asyncio.sleep(self._config.worker_heartbeat)
                continue
            for key, messages in reply or []:
                if key.decode() == self._keys.wake:
                    continue
                job_id = int(key.decode().split(":")[-2])
                for message_id, fields in messages:
                    running = self._flights.get(job_id)
                    if running is None:
                        break
                    running.last_event = message_id.decode()
                    await self._received(running, fields)

    async def _received(self, running: _Running[P], fields: Fields) -> None:
        """One message of the current attempt; any other attempt's are ignored."""
        job, flight = running.job, running.flight
        if fields.get(b"attempt") != flight.attempt.encode():
            log.info("job %s: ignoring a report of an earlier attempt", job.id)
            return
        kind = fields.get(b"kind")
        if kind == streams.PROGRESS:
            try:
                step, total, preview = streams.decode_progress(fields, previews=job.previews)
            except streams.BadReport as exc:
                log.warning("job %s: ignoring a progress report it cannot read (%s)", job.id, exc)
                return
            running.step = step
            self._emit(ProgressEvent(job.id, job.user_id, step, total, preview))
            return
        await self._land(running)
        if kind == streams.DONE:
            try:
                result, nsfw = streams.decode_result(
                    fields,
                    images=job.images,
                    max_pixels=self._config.max_pixels,
                    max_bytes=self._config.redis_max_picture_mb * 1e6,
                )
            except streams.BadReport as exc:
                log.warning("job %s: worker %s sent a bad result: %s", job.id, flight.worker, exc)
                self._fail(job, str(exc))
                return
            self._observe(running, result.seconds)
            self._report(job, partial(jobs.finish_job, self._store, job.id, result, nsfw=nsfw))
        elif kind == streams.CANCELLED:
            cancelled = CancelledEvent(job.id, job.user_id)
            self._report(job, partial(jobs.cancel_job, self._store, job.id), cancelled)
        else:
            self._fail(job, streams.decode_failure(fields))

    def _fail(self, job: QueuedJob[P], message: str) -> None:
        failed = FailedEvent(job.id, job.user_id, message)
        self._report(job, partial(jobs.fail_job, self._store, job.id, message), failed)

    def _observe(self, running: _Running[P], seconds: float) -> None:
        job = running.job
        self._eta.observe(
            job.model, job.processing_size, steps=job.total_steps, images=job.images, seconds=seconds
        )

    def _etas(self) -> dict[int, float | None]:
        """Seconds until each waiting job's result: each starts on the worker slot that frees first
        (a slot with a job of unknown length, or no worker at all, makes the rest unknown)."""
        free = sum(info.slots for info in self._workers.values()) - len(self._flights)
        clocks = [self._remaining(running) for running in self._flights.values()]
        clocks += [0.0] * max(free, 0)
        etas: dict[int, float | None] = {}
        for job in self._waiting:
            known = [clock for clock in clocks if clock is not None]
            if not clocks or len(known) < len(clocks):
                etas[job.id] = None
                continue
            slot = known.index(min(known))
            estimate = self._estimate([job])
            clocks[slot] = None if estimate is None else known[slot] + estimate
            etas[job.id] = clocks[slot]
        return etas

    def _remaining(self, running: _Running[P]) -> float | None:
        elapsed = time.monotonic() - running.started
        if running.step:
            return elapsed / running.step * max(running.job.total_steps - running.step, 0)
        estimate = self._estimate([running.job])
        return None if estimate is None else max(estimate - elapsed, 0.0)

    async def _land(self, running: _Running[P]) -> None:
        """The job is back from its worker: a free slot, and its keys go. The announcements are read
        first, while the slot still counts as taken: a worker whose GPU hangs announced no slot
        before its job failed (``bot.worker.Worker._hang``), and must get no other job."""
        try:
            await self._refresh_workers()
        except RedisError as exc:  # the next heartbeat reads them
            log.warning("cannot check on the workers: %s", exc)
        self._flights.pop(running.job.id, None)
        self._wake.set()
        await self._forget(running.flight)

    async def _forget(self, flight: Flight) -> None:
        """Delete everything Redis holds for this delivery of the job."""
        stream = self._keys.jobs(flight.worker)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xack(stream, GROUP, flight.entry)
                pipe.xdel(stream, flight.entry)
                pipe.delete(
                    self._keys.input(flight.job_id),
                    self._keys.events(flight.job_id),
                    self._keys.cancel(flight.job_id, flight.attempt),
                )
                pipe.hdel(self._keys.inflight, str(flight.job_id))
                await pipe.execute()
        except RedisError as exc:  # the keys expire by themselves
            log.warning("cannot clean up job %s in Redis: %s", flight.job_id, exc)

    # -- workers coming and going -------------------------------------------------------------------

    async def _watch(self) -> None:
        """Every heartbeat: who is there, and which jobs their workers left."""
        while not self._closed:
            await asyncio.sleep(self._config.worker_heartbeat)
            try:
                await self._refresh_workers()
                await self._reclaim()
            except RedisError as exc:
                log.warning("cannot check on the workers: %s", exc)
            except Exception:  # e.g. an announcement it cannot read: the queue must go on
                log.exception("checking on the workers failed")

    async def _refresh_workers(self) -> None:
        workers = {info.name: info for info in await streams.connected_workers(self._redis, self._keys)}
        if workers.keys() - self._workers.keys():
            log.info("workers: %s", ", ".join(sorted(workers)))
        self._workers = workers
        self._wake.set()

    async def _reclaim(self) -> None:
        """Take back the jobs of workers that are gone or whose GPU hangs (announced with no slot),
        and those whose claim was not renewed."""
        lease = int(self._config.worker_lease * 1000)
        for running in list(self._flights.values()):
            # A missed announcement alone is no proof (a loaded machine can be late): past the lease
            # too, since even an entry the worker never read is then overdue.
            overdue = time.time() - running.flight.dispatched > self._config.worker_lease
            info = self._workers.get(running.flight.worker)
            if info is None and overdue:
                await self._take_back(running, "its worker is gone")
            elif info is not None and info.slots == 0 and overdue:
                await self._take_back(running, "its worker's GPU hangs")
        for worker in {running.flight.worker for running in self._flights.values()}:
            claimed: list[bytes] = await self._redis.xautoclaim(
                self._keys.jobs(worker), GROUP, RECLAIMER, lease, "0-0", justid=True
            )
            entries = {entry.decode() for entry in claimed}
            for running in list(self._flights.values()):
                if running.flight.worker == worker and running.flight.entry in entries:
                    await self._take_back(running, "its worker stopped renewing it")

    async def _take_back(self, running: _Running[P], why: str) -> None:
        """Run the job elsewhere, or fail it after ``job_max_attempts`` deliveries; the attempt that
        was out is told to stop, and whatever it still reports is ignored."""
        job, flight = running.job, running.flight
        if self._flights.get(job.id) is not running:
            return
        log.warning("job %s is taken back from worker %s: %s", job.id, flight.worker, why)
        ttl = int(self._config.redis_picture_ttl)
        with contextlib.suppress(RedisError):
            await self._redis.set(self._keys.cancel(job.id, flight.attempt), b"1", ex=ttl)
        self._flights.pop(job.id)
        await self._forget_delivery(flight)
        if job.cancelled:
            self._report(
                job, partial(jobs.cancel_job, self._store, job.id), CancelledEvent(job.id, job.user_id)
            )
        elif self._deliveries[job.id] >= self._max_attempts:
            message = LOST.format(attempts=self._deliveries[job.id])
            failed = FailedEvent(job.id, job.user_id, message)
            self._report(job, partial(jobs.fail_job, self._store, job.id, message), failed)
        else:
            self._put_back([job])
        self._wake.set()

    async def _forget_delivery(self, flight: Flight) -> None:
        """The entry and the in-flight record go; the job's pictures and events stay for its next
        attempt (the events stream is read on from where it was)."""
        stream = self._keys.jobs(flight.worker)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, GROUP, flight.entry)
            pipe.xdel(stream, flight.entry)
            pipe.hdel(self._keys.inflight, str(flight.job_id))
            await pipe.execute()
