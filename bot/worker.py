"""``inpaintbot worker``: a GPU worker that takes the bot's jobs through Redis Streams.

It only dials out (to ``INPAINTBOT_REDIS_URL``), so it runs behind NAT: it announces itself (slots,
loaded models, version) every heartbeat, reads the jobs the bot gave it from its own stream, runs each
through the same engine call as the local queue (``running.run_and_screen`` in a watched
``GpuThread``), reports progress and the outcome on the job's event stream, and renews its claim on the
entry while it runs. A cancel key set by the bot stops the job within a step. While its GPU thread
hangs it announces no slot and takes no job (``_hang``). The bot also runs one of these in its own
process when ``INPAINTBOT_LOCAL_WORKER`` is on. Nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot.config import BotConfig
from bot.queue import running, screening, streams
from bot.queue.backend import InpaintEngine
from bot.queue.events import INPUT_GONE, STUCK, failure_message
from bot.queue.gpu import GpuStuck, GpuThread
from bot.queue.streams import GROUP, Delivery, Fields, Keys, WorkerInfo
from engine.errors import JobCancelled
from engine.job import InpaintRequest, Progress
from engine.safety import SafetyChecker

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25  # seconds between progress reports of a job (and looks at its cancel key)
UNREADABLE = (
    "The GPU worker {name} runs another version of inpaintbot ({version}) and cannot read this job. "
    "Try again later."
)
TOO_BIG = "The result is larger than this bot may send between its machines ({mb:g} MB)."


def version() -> str:
    try:
        return importlib.metadata.version("inpaintbot")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Worker:
    """Takes jobs from ``jobs:NAME`` until closed; ``slots`` at a time, one on the GPU at a time."""

    def __init__(
        self,
        engine: InpaintEngine[Any],
        config: BotConfig,
        redis: Redis,
        *,
        safety: SafetyChecker | None = None,
    ) -> None:
        self._engine = engine
        self._safety = safety
        self._redis = redis
        self._keys = Keys(config.redis_prefix)
        self.name = config.worker_id
        self._stream = self._keys.jobs(self.name)
        self._config = config
        self._slots = asyncio.Semaphore(config.worker_slots)
        self._busy = 0
        self._models = [config.model]  # loaded, most recently used last
        self._gpu = GpuThread(grace=config.watchdog_grace)
        self._gpu_turn = asyncio.Lock()  # the next job is prepared while one runs, then waits here
        self._gpu_back = asyncio.Event()  # cleared while the GPU thread hangs (see ``_hang``)
        self._gpu_back.set()
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="worker-prepare")
        self._jobs: dict[asyncio.Task[None], threading.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._reported: dict[str, float] = {}  # attempt -> when its progress was last reported

    async def start(self) -> None:
        """Load the default model (and the safety checker), then announce the worker and take jobs."""
        await self._gpu.call(self._engine.load)
        await self._gpu.call(screening.load_checker, self._safety)
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists from an earlier run
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        await self._announce()
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="worker-heartbeat"),
            asyncio.create_task(self._take(), name="worker-take"),
        ]
        log.info("worker %s takes jobs (%d slots)", self.name, self._config.worker_slots)

    async def wait(self) -> None:
        """Until the worker stops (a failure of its loops is raised here)."""
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        """Stop taking jobs and leave: running jobs stop unreported, and the bot, seeing the worker
        gone, runs them elsewhere."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task, cancel in self._jobs.items():
            cancel.set()
            task.cancel()
        await asyncio.gather(*self._tasks, *self._jobs, return_exceptions=True)
        with contextlib.suppress(RedisError):
            await self._redis.delete(self._keys.worker(self.name))
            await self._redis.srem(self._keys.workers, self.name)
        self._gpu.shutdown()
        self._cpu.shutdown()

    # -- announcing ---------------------------------------------------------------------------------

    async def _announce(self) -> None:
        """Who the worker is and what it can take: no slot at all while its GPU thread hangs."""
        info = WorkerInfo(
            name=self.name,
            slots=self._config.worker_slots if self._gpu_back.is_set() else 0,
            busy=self._busy,
            models=tuple(self._models),
            version=version(),
            seen=time.time(),
        )
        ttl = max(int(self._config.worker_heartbeat * 3000), 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._keys.worker(self.name), info.encode(), px=ttl)
            pipe.sadd(self._keys.workers, self.name)
            await pipe.execute()

    async def _heartbeat(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._config.worker_heartbeat)
            try:
                await self._announce()
            except RedisError as exc:  # Redis restarting, the network down: try again next beat
                log.warning("worker %s cannot reach Redis: %s", self.name, exc)

    def _used(self, model: str) -> None:
        if model in self._models:
            self._models.remove(model)
        self._models.append(model)
        del self._models[: -self._config.max_loaded_models]

    # -- taking jobs --------------------------------------------------------------------------------

    async def _take(self) -> None:
        block = streams.block_ms(self._config.worker_heartbeat)
        while not self._closing:  # also if redis-py turned the cancel into a connection error
            await self._gpu_back.wait()
            await self._slots.acquire()
            try:
                reply: Any = await self._redis.xreadgroup(
                    GROUP, self.name, {self._stream: ">"}, count=1, block=block
                )
            except RedisError as exc:
                self._slots.release()
                log.warning("worker %s cannot read its jobs: %s", self.name, exc)
                await asyncio.sleep(self._config.worker_heartbeat)
                continue
            except BaseException:
                self._slots.release()
                raise
            entries = [entry for _, stream_entries in reply or [] for entry in stream_entries]
            if not entries:
                self._slots.release()
                continue
            entry_id, fields = entries[0]
            cancel = threading.Event()
            task = asyncio.create_task(self._job(entry_id.decode(), fields, cancel))
            self._jobs[task] = cancel

    async def _job(self, entry: str, fields: Fields, cancel: threading.Event) -> None:
        self._busy += 1
        try:
            try:
                delivery = Delivery.decode(fields)
            except Exception:  # another version's settings: tell the bot, which would wait otherwise
                log.exception("worker %s got an entry it cannot read: %s", self.name, entry)
                await self._refuse(entry, fields)
                return
            publishing = asyncio.Lock()  # FIFO: progress and the outcome reach the stream in order
            renewing = asyncio.create_task(self._renew(entry, delivery, cancel))
            try:
                outcome = await self._run(entry, delivery, cancel, publishing)
            finally:
                cancel.set()  # ends the renewals even if redis-py swallowed the task's cancel
                renewing.cancel()
                self._reported.pop(delivery.attempt, None)
            if isinstance(outcome, GpuStuck):
                await self._hang(entry, delivery, outcome, publishing)
            else:
                await self._report(entry, delivery, outcome, publishing)
        finally:
            self._busy -= 1
            self._slots.release()
            self._jobs.pop(asyncio.current_task(), None)  # type: ignore[arg-type]

    async def _report(
        self, entry: str, delivery: Delivery, outcome: Fields, publishing: asyncio.Lock
    ) -> None:
        """Send the job's outcome, then let go of its entry; an outcome that cannot be sent leaves the
        entry pending, unrenewed, so the bot takes it back after the lease instead of waiting forever."""
        try:
            async with publishing:
                await self._publish(delivery, outcome)
        except RedisError as exc:
            log.warning("worker %s cannot report job %s: %s", self.name, delivery.job_id, exc)
            return
        with contextlib.suppress(RedisError):
            await self._redis.xack(self._stream, GROUP, entry)

    async def _hang(
        self, entry: str, delivery: Delivery, stuck: GpuStuck, publishing: asyncio.Lock
    ) -> None:
        """The GPU thread hangs (``_run`` stopped the worker's GPU turns already): announce no free
        slot before the job fails, so the bot, which reads the announcements when a job comes back,
        sends nothing more here; take no job until the thread returns, then announce the slots again.
        The bot takes back the jobs held here meanwhile (a worker with no slot runs nothing)."""
        with contextlib.suppress(RedisError):
            await self._announce()
        await self._report(entry, delivery, streams.failed_message(delivery.attempt, STUCK), publishing)
        await self._gpu.wait_until_back(stuck, closing=lambda: self._closing)
        self._gpu_back.set()
        with contextlib.suppress(RedisError):
            await self._announce()

    async def _refuse(self, entry: str, fields: Fields) -> None:
        with contextlib.suppress(KeyError, ValueError, RedisError):
            job_id, attempt = int(fields[b"job"]), fields[b"attempt"].decode()
            message = UNREADABLE.format(name=self.name, version=version())
            key = self._keys.events(job_id)
            await self._redis.xadd(key, streams.failed_message(attempt, message))  # type: ignore[arg-type]
            await self._redis.expire(key, int(self._config.redis_picture_ttl))
        with contextlib.suppress(RedisError):
            await self._redis.xack(self._stream, GROUP, entry)

    async def _renew(self, entry: str, delivery: Delivery, cancel: threading.Event) -> None:
        """Keep the claim fresh (the bot takes back entries idle past the lease) and look for a
        cancel; an entry the bot took back already is no longer ours to run."""
        interval = min(self._config.worker_lease / 3, self._config.worker_heartbeat)
        while not cancel.is_set():
            await self._renew_once(entry, delivery, cancel)
            await asyncio.sleep(interval)

    async def _renew_once(self, entry: str, delivery: Delivery, cancel: threading.Event) -> None:
        cancel_key = self._keys.cancel(delivery.job_id, delivery.attempt)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xclaim(self._stream, GROUP, self.name, 0, [entry], justid=True)
                pipe.exists(cancel_key)
                claimed, cancelled = await pipe.execute()
        except RedisError as exc:
            log.warning("worker %s cannot renew job %s: %s", self.name, delivery.job_id, exc)
        else:
            if not claimed or cancelled:
                cancel.set()

    async def _run(
        self, entry: str, delivery: Delivery, cancel: threading.Event, publishing: asyncio.Lock
    ) -> Fields | GpuStuck:
        """The job's outcome message, or the GPU thread hanging on it (see ``_hang``)."""
        attempt = delivery.attempt
        inputs: dict[bytes, bytes] = await self._redis.hgetall(self._keys.input(delivery.job_id))  # type: ignore[assignment]
        if b"image" not in inputs:
            return streams.failed_message(attempt, INPUT_GONE)
        request = InpaintRequest(
            inputs[b"image"],
            delivery.settings,
            inputs.get(b"mask"),
            found_mask=inputs.get(b"found_mask"),
        )
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self._cpu, self._engine.prepare, request)
        except Exception as exc:
            return streams.failed_message(attempt, failure_message(exc))

        def progressed(progress: Progress) -> None:  # in the GPU thread
            loop.call_soon_threadsafe(self._progressed, delivery, cancel, publishing, progress)

        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            cancel.set()

        async with self._gpu_turn:
            if not self._gpu_back.is_set():  # the bot has likely taken the job back meanwhile
                await self._gpu_back.wait()
                await self._renew_once(entry, delivery, cancel)
            if cancel.is_set():
                return streams.cancelled_message(attempt)
            self._used(prepared.model)
            try:
                [(result, nsfw)] = await running.run_and_screen(
                    self._gpu,
                    self._engine,
                    self._safety,
                    [prepared],
                    on_progress=[progressed],
                    cancel=cancel,
                    previews=delivery.previews,
                    limit=self._config.job_timeout,
                    stop=stop,
                )
            except JobCancelled:
                if timed_out.is_set():
                    limit = self._config.job_timeout
                    return streams.failed_message(
                        attempt,
                        f"The job took longer than the limit of {limit:g} seconds and was stopped.",
                    )
                return streams.cancelled_message(attempt)
            except GpuStuck as stuck:
                self._gpu_back.clear()  # before the next job's turn
                return stuck
            except Exception as exc:
                return streams.failed_message(attempt, failure_message(exc))
        message = await asyncio.to_thread(streams.done_message, attempt, result, nsfw)
        limit = self._config.redis_max_picture_mb
        if streams.message_size(message) > limit * 1e6:
            return streams.failed_message(attempt, TOO_BIG.format(mb=limit))
        return message

    def _progressed(
        self, delivery: Delivery, cancel: threading.Event, publishing: asyncio.Lock, progress: Progress
    ) -> None:
        """Report a step, at most every ``PROGRESS_INTERVAL``: the bot coalesces its Discord edits
        anyway, and a report per step of a fast model floods this loop, whose turns wait for the
        GIL behind the GPU thread, until heartbeats and lease renewals come too late."""
        now = time.monotonic()
        if (
            progress.step < progress.total
            and now - self._reported.get(delivery.attempt, 0) < PROGRESS_INTERVAL
        ):
            return
        self._reported[delivery.attempt] = now
        preview = progress.preview if delivery.previews else None
        message = streams.progress_message(delivery.attempt, progress.step, progress.total, preview)
        task = asyncio.create_task(self._step(delivery, cancel, publishing, message))
        task.add_done_callback(_logged)

    async def _step(
        self, delivery: Delivery, cancel: threading.Event, publishing: asyncio.Lock, message: Fields
    ) -> None:
        """Report a step, and stop the job at the next one if the bot asked for a cancel."""
        async with publishing:
            await self._publish(delivery, message)
        if await self._redis.exists(self._keys.cancel(delivery.job_id, delivery.attempt)):
            cancel.set()

    async def _publish(self, delivery: Delivery, message: Fields) -> None:
        key = self._keys.events(delivery.job_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, message, maxlen=streams.EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, int(self._config.redis_picture_ttl))
            await pipe.execute()


def _logged(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("a progress report was lost: %s", exc)


async def run_worker(config: BotConfig) -> None:
    """``inpaintbot worker``: until interrupted."""
    from engine.engine import Engine
    from engine.safety import safety_checker

    assert config.redis_url is not None
    url = config.redis_url.get_secret_value()
    engine = Engine(config)
    safety = safety_checker(config, engine.models.device, engine.models.dtype)
    redis = Redis.from_url(url)
    worker = Worker(engine, config, redis, safety=safety)
    log.info("worker %s connects to %s", worker.name, streams.masked_url(url))
    try:
        await worker.start()
        await worker.wait()
    finally:
        await worker.close()
        await redis.aclose()
