"""The Redis queue with GPU workers, on a real ``redis-server``: workers run in this process on the fake
engine (``tests.bot.queue.fakes``), or a test plays a worker by hand to send what a dead one would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.config import BotConfig
from bot.queue import streams
from bot.queue.base import JobSubmission
from bot.queue.events import (
    CancelledEvent,
    DoneEvent,
    FailedEvent,
    ProgressEvent,
    StartedEvent,
)
from bot.queue.remote import LOST, TOO_BIG, RemoteJobQueue
from bot.queue.streams import GROUP, Delivery, Keys, WorkerInfo
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import JobStatus
from bot.worker import UNREADABLE, Worker, version
from tests.bot.conftest import Harness
from tests.bot.queue.fakes import FakeEngine, FakePrepared, events_until, next_event, request

KEYS = Keys("inpaintbot")


async def job_keys(redis: Redis) -> list[bytes]:
    return sorted(await redis.keys(f"{KEYS.prefix}:job:*"))


async def test_jobs_run_on_two_workers_in_fair_order_and_leave_nothing_in_redis(
    harness: Harness, redis: Redis, store: Store
) -> None:
    start_queue, start_worker = harness
    first, second = FakeEngine(step_seconds=0.01), FakeEngine(step_seconds=0.01)
    await start_worker("gpu-1", first)
    await start_worker("gpu-2", second)
    queue, events = await start_queue()
    first.gate.clear()  # two jobs hold both workers while the members' jobs queue up
    second.gate.clear()
    for blocker in (8, 9):
        held = await queue.submit(JobSubmission(blocker, request(f"hold{blocker}")))
        await next_event(events, StartedEvent, held.job_id)
    submitted = [
        await queue.submit(JobSubmission(user, request(f"u{user}-{n}")))
        for user in (1, 2, 3)
        for n in range(3)
    ]
    first.gate.set()
    second.gate.set()
    seen = await events_until(events, lambda seen: sum(isinstance(e, DoneEvent) for e in seen) == 11)

    started = [e.user_id for e in seen if isinstance(e, StartedEvent)]
    assert started == [1, 2, 3, 1, 2, 3, 1, 2, 3]
    assert first.calls and second.calls, "both workers ran jobs"
    ran = sorted(prompt for call in first.calls + second.calls for prompt in call)
    assert ran == sorted(["hold8", "hold9", *(f"u{u}-{n}" for u in (1, 2, 3) for n in range(3))])
    for queued in submitted:
        row = await jobs.get_job(store, queued.job_id)
        assert row is not None and row.status is JobStatus.DONE and row.attempts == 1
    snapshot = await queue.snapshot()
    assert {worker.name for worker in snapshot.workers} == {"gpu-1", "gpu-2"}
    assert not snapshot.running and not snapshot.waiting
    assert await job_keys(redis) == []
    assert await redis.hlen(KEYS.inflight) == 0
    assert await redis.xlen(KEYS.jobs("gpu-1")) == await redis.xlen(KEYS.jobs("gpu-2")) == 0


async def test_a_job_goes_to_a_free_worker_that_has_its_model(
    harness: Harness,
) -> None:
    start_queue, start_worker = harness
    other, right = FakeEngine(), FakeEngine()
    await start_worker("a-other", other, model="other-model")  # first by name: picked on a tie
    await start_worker("b-right", right, model="right-model")
    queue, events = await start_queue()
    for n in range(2):
        done = await queue.submit(JobSubmission(1, request(f"job{n}", model="right-model")))
        await next_event(events, DoneEvent, done.job_id)
    assert right.calls == [["job0"], ["job1"]] and other.calls == []
    # With the right worker busy, a free worker with another model takes the job rather than leave it.
    right.gate.clear()
    held = await queue.submit(JobSubmission(1, request("held", model="right-model")))
    await next_event(events, StartedEvent, held.job_id)
    spilled = await queue.submit(JobSubmission(2, request("spilled", model="right-model")))
    await next_event(events, DoneEvent, spilled.job_id)
    assert other.calls == [["spilled"]]
    right.gate.set()
    await next_event(events, DoneEvent, held.job_id)


async def test_cancel_stops_a_job_running_on_a_worker(
    harness: Harness, store: Store, redis: Redis
) -> None:
    start_queue, start_worker = harness
    engine = FakeEngine()
    await start_worker("gpu-1", engine)
    queue, events = await start_queue()
    engine.gate.clear()
    running = await queue.submit(JobSubmission(1, request("doomed")))
    await next_event(events, StartedEvent, running.job_id)
    async with asyncio.timeout(10):
        while not engine.calls:
            await asyncio.sleep(0.01)
    assert await queue.cancel(running.job_id)
    await next_event(events, CancelledEvent, running.job_id)
    row = await jobs.get_job(store, running.job_id)
    assert row is not None and row.status is JobStatus.CANCELLED
    assert await job_keys(redis) == []
    after = await queue.submit(JobSubmission(1, request("after")))  # the worker's slot is free again
    engine.gate.set()
    await next_event(events, DoneEvent, after.job_id)


async def test_a_restarted_bot_adopts_the_jobs_running_on_workers(
    harness: Harness, store: Store
) -> None:
    start_queue, start_worker = harness
    engine = FakeEngine()
    await start_worker("gpu-1", engine)
    queue, events = await start_queue()
    engine.gate.clear()
    running = await queue.submit(JobSubmission(1, request("running")))
    waiting = await queue.submit(JobSubmission(2, request("waiting")))
    await next_event(events, StartedEvent, running.job_id)
    await queue.close()

    _, events = await start_queue()
    engine.gate.set()
    seen = await events_until(events, lambda seen: sum(isinstance(e, DoneEvent) for e in seen) == 2)
    assert {e.job_id for e in seen if isinstance(e, DoneEvent)} == {running.job_id, waiting.job_id}
    assert engine.calls == [["running"], ["waiting"]], "the running job was not run twice"
    row = await jobs.get_job(store, running.job_id)
    assert row is not None and row.attempts == 1


class HandWorker:
    """A worker played by the test: it announces itself, takes entries, and reports what it likes."""

    def __init__(self, redis: Redis, name: str = "hand") -> None:
        self.redis = redis
        self.name = name

    async def announce(self) -> None:
        info = WorkerInfo(self.name, 1, 0, ("fake-model",), "test", 0.0)
        await self.redis.set(KEYS.worker(self.name), info.encode())
        await self.redis.sadd(KEYS.workers, self.name)
        await self.redis.xgroup_create(KEYS.jobs(self.name), GROUP, id="0", mkstream=True)

    async def take(self) -> Delivery:
        async with asyncio.timeout(10):
            while True:
                reply: Any = await self.redis.xreadgroup(
                    GROUP, self.name, {KEYS.jobs(self.name): ">"}, count=1, block=100
                )
                if reply:
                    self.entry = reply[0][1][0][0]
                    return Delivery.decode(reply[0][1][0][1])

    async def renew(self) -> None:
        """What a live worker does: keep its claim on the last entry it took fresh."""
        while True:
            await self.redis.xclaim(KEYS.jobs(self.name), GROUP, self.name, 0, [self.entry], justid=True)
            await asyncio.sleep(0.05)

    async def report(self, fields: dict[bytes, bytes], job_id: int) -> None:
        await self.redis.xadd(KEYS.events(job_id), fields)  # type: ignore[arg-type]


def done(delivery: Delivery) -> dict[bytes, bytes]:
    [result] = FakeEngine().run([FakePrepared(delivery.settings)])
    return streams.done_message(delivery.attempt, result, [None])


async def test_a_late_result_of_an_attempt_taken_back_is_ignored(
    harness: Harness, redis: Redis, store: Store
) -> None:
    """The hand worker takes the job and goes silent: past the lease the bot takes it back
    (``XAUTOCLAIM``) and delivers it again with a new attempt id; the first attempt's result, sent late,
    changes nothing, and the second's is the one stored, once."""
    start_queue, _ = harness
    hand = HandWorker(redis)
    await hand.announce()
    queue, events = await start_queue()
    job = await queue.submit(JobSubmission(1, request("slow")))
    first = await hand.take()
    second = await hand.take()  # after the lease ran out without renewal
    assert (first.job_id, second.job_id) == (job.job_id, job.job_id)
    assert first.attempt != second.attempt
    assert await redis.exists(KEYS.cancel(job.job_id, first.attempt)), (
        "the first attempt is told to stop"
    )
    renewing = asyncio.create_task(hand.renew())
    try:
        await hand.report(done(first), job.job_id)
        await hand.report(streams.progress_message(second.attempt, 1, 4, None), job.job_id)
        await next_event(events, ProgressEvent, job.job_id)  # read after the late result
        row = await jobs.get_job(store, job.job_id)
        assert row is not None and row.status is not JobStatus.DONE, "the late result was not stored"

        await hand.report(done(second), job.job_id)
        finished = await next_event(events, DoneEvent, job.job_id)
    finally:
        renewing.cancel()
    row = await jobs.get_job(store, job.job_id)
    assert row is not None and row.status is JobStatus.DONE and row.attempts == 2
    assert len(finished.images) == 1 and finished.images[0].seed == second.settings.seed


async def test_a_job_whose_workers_keep_dying_fails_and_its_owner_is_told(
    harness: Harness, redis: Redis, store: Store
) -> None:
    start_queue, _ = harness
    hand = HandWorker(redis)
    await hand.announce()
    queue, events = await start_queue(job_max_attempts=2)
    job = await queue.submit(JobSubmission(1, request("poison")))
    await hand.take()
    await hand.take()
    failed = await next_event(events, FailedEvent, job.job_id)
    assert failed.message == LOST.format(attempts=2)
    row = await jobs.get_job(store, job.job_id)
    assert row is not None and row.status is JobStatus.FAILED


async def test_a_worker_gone_from_redis_has_its_job_run_by_another(
    harness: Harness, redis: Redis
) -> None:
    """The hand worker's announcement expires (a crash stops its heartbeat): its job moves on."""
    start_queue, start_worker = harness
    hand = HandWorker(redis)
    await hand.announce()
    queue, events = await start_queue()
    job = await queue.submit(JobSubmission(1, request("moved")))
    await hand.take()
    engine = FakeEngine()
    await start_worker("gpu-2", engine)
    await redis.delete(KEYS.worker(hand.name))
    await next_event(events, DoneEvent, job.job_id)
    assert engine.calls == [["moved"]]


async def test_pictures_over_the_redis_limit_fail_the_job_with_a_message(
    harness: Harness, redis: Redis, store: Store
) -> None:
    start_queue, start_worker = harness
    engine = FakeEngine()
    await start_worker("gpu-1", engine)
    queue, events = await start_queue(redis_max_picture_mb=0.0001)  # 100 bytes
    job = await queue.submit(JobSubmission(1, request("big")))
    failed = await next_event(events, FailedEvent, job.job_id)
    assert failed.message == TOO_BIG.format(mb=0.0001)
    assert engine.calls == [] and await job_keys(redis) == []
    row = await jobs.get_job(store, job.job_id)
    assert row is not None and row.status is JobStatus.FAILED


async def test_the_bots_own_gpu_is_one_more_worker_started_and_closed_with_the_queue(
    store: Store, remote_config: BotConfig, redis: Redis, redis_url: str
) -> None:
    config = remote_config.model_copy(update={"local_worker": True, "worker_name": "bot-gpu"})
    engine, client = FakeEngine(), Redis.from_url(redis_url)
    queue: RemoteJobQueue[Any] = RemoteJobQueue(
        engine, store, config, client, local=Worker(engine, config, client)
    )
    events = queue.subscribe()
    await queue.start()
    try:
        assert [worker.name for worker in (await queue.snapshot()).workers] == ["bot-gpu"]
        job = await queue.submit(JobSubmission(1, request("at home")))
        await next_event(events, DoneEvent, job.job_id)
        assert engine.calls == [["at home"]]
    finally:
        await queue.close()
        await client.aclose()
    assert not await redis.exists(KEYS.worker("bot-gpu"))
    assert await redis.smembers(KEYS.workers) == set()


async def test_a_worker_that_cannot_read_a_job_says_so_instead_of_leaving_it_hanging(
    harness: Harness, redis: Redis
) -> None:
    """A worker of another version gets settings it does not know: the job fails with a reason."""
    _, start_worker = harness
    engine = FakeEngine()
    await start_worker("old", engine)
    entry = {b"job": b"99", b"attempt": b"a1", b"settings": b'{"from_the_future": 1}'}
    await redis.xadd(KEYS.jobs("old"), entry)  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        while not (reports := await redis.xrange(KEYS.events(99))):
            await asyncio.sleep(0.02)
    [(_, fields)] = reports
    assert fields[b"kind"] == streams.FAILED and fields[b"attempt"] == b"a1"
    assert fields[b"message"].decode() == UNREADABLE.format(name="old", version=version())
    assert engine.calls == []


async def test_waiting_jobs_are_estimated_across_the_workers_slots(
    harness: Harness,
) -> None:
    """Two free slots for two waiting jobs: both start at once, so both are due about as soon."""
    start_queue, start_worker = harness
    first, second = FakeEngine(), FakeEngine()
    await start_worker("gpu-1", first)
    await start_worker("gpu-2", second)
    queue, events = await start_queue()
    timed = await queue.submit(JobSubmission(1, request("timed")))  # the estimate comes from it
    await next_event(events, DoneEvent, timed.job_id)
    first.gate.clear()
    second.gate.clear()
    for user in (2, 3):
        held = await queue.submit(JobSubmission(user, request(f"held{user}")))
        await next_event(events, StartedEvent, held.job_id)
    for user in (4, 5, 6):
        await queue.submit(JobSubmission(user, request(f"waits{user}")))
    waiting = (await queue.snapshot()).waiting
    etas = [entry.eta for entry in waiting]
    assert None not in etas
    one_job = etas[0]
    assert one_job is not None and one_job > 0
    # The first two go to the two slots side by side, the third after one of them.
    assert etas[1] == pytest.approx(etas[0], abs=0.2 * one_job)
    assert etas[2] == pytest.approx(etas[0] + one_job, abs=0.5 * one_job)
    first.gate.set()
    second.gate.set()
