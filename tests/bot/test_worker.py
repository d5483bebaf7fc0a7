"""``inpaintbot worker`` (``bot.worker``) on the fake engine, against a real ``redis-server``: what it
sends when a result is too large for Redis, and what it does while its GPU thread hangs. The bot is
either the Redis queue or played by the test, which writes a delivery and reads the job's events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.queue import streams
from bot.queue.base import JobSubmission
from bot.queue.events import STUCK, DoneEvent, FailedEvent, StartedEvent
from bot.queue.streams import GROUP, Delivery, Keys, WorkerInfo
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, JobStatus
from bot.worker import TOO_BIG
from tests.bot.conftest import Harness
from tests.bot.queue.fakes import FakeEngine, events_until, next_event, request

KEYS = Keys("inpaintbot")
SMALL = 0.0005  # MB: the tiny input pictures fit, a result's message does not


async def deliver(redis: Redis, worker: str, job_id: int, prompt: str) -> Delivery:
    """What the bot does to hand a job to ``worker``: its pictures in a hash, the entry in its stream."""
    job = request(prompt)
    delivery = Delivery(job_id, "attempt-1", job.settings.with_seed(), previews=False)
    inputs = {b"image": job.image, b"mask": job.mask or b""}
    await redis.hset(KEYS.input(job_id), mapping=inputs)  # type: ignore[arg-type]
    await redis.xadd(KEYS.jobs(worker), delivery.encode())  # type: ignore[arg-type]
    return delivery


async def reports_until_outcome(redis: Redis, job_id: int) -> list[dict[bytes, bytes]]:
    """Everything the worker wrote to the job's event stream, once its outcome is there."""
    async with asyncio.timeout(10):
        while True:
            reports: Any = await redis.xrange(KEYS.events(job_id))
            fields = [fields for _, fields in reports]
            if fields and fields[-1][b"kind"] != streams.PROGRESS:
                return fields
            await asyncio.sleep(0.02)


async def announced(redis: Redis, worker: str) -> WorkerInfo:
    data = await redis.get(KEYS.worker(worker))
    assert isinstance(data, bytes), f"{worker} is not announced"
    return WorkerInfo.decode(data)


async def test_a_result_over_the_redis_limit_is_not_sent_and_the_job_fails_with_a_reason(
    harness: Harness, redis: Redis
) -> None:
    _, start_worker = harness
    engine = FakeEngine()
    await start_worker("gpu-1", engine, redis_max_picture_mb=SMALL)
    delivery = await deliver(redis, "gpu-1", 7, "too big")
    reports = await reports_until_outcome(redis, 7)
    *progress, outcome = reports
    assert outcome == streams.failed_message(delivery.attempt, TOO_BIG.format(mb=SMALL))
    assert all(fields[b"kind"] == streams.PROGRESS for fields in progress)
    assert not any(key.startswith(b"png") for fields in reports for key in fields), "no picture sent"
    assert engine.calls == [["too big"]]
    async with asyncio.timeout(10):  # the entry is done with: nothing for the bot to take back
        while (await redis.xpending(KEYS.jobs("gpu-1"), GROUP))["pending"]:
            await asyncio.sleep(0.02)


async def test_a_result_over_the_redis_limit_fails_the_job_for_its_owner(
    harness: Harness, redis: Redis, store: Store
) -> None:
    start_queue, start_worker = harness
    await start_worker("gpu-1", FakeEngine(), redis_max_picture_mb=SMALL)
    queue, events = await start_queue()  # the bot's own limit (50 MB) lets the inputs go
    job = await queue.submit(JobSubmission(1, request("too big")))
    seen = await events_until(
        events, lambda seen: isinstance(seen[-1], FailedEvent) and seen[-1].job_id == job.job_id
    )
    failed = seen[-1]
    assert isinstance(failed, FailedEvent) and failed.message == TOO_BIG.format(mb=SMALL)
    assert not any(isinstance(event, DoneEvent) for event in seen)
    row = await jobs.get_job(store, job.job_id)
    assert row is not None and (row.status, row.error) == (JobStatus.FAILED, failed.message)
    assert [link for link in row.images if link.role is ImageRole.OUTPUT] == []
    assert await redis.keys(f"{KEYS.prefix}:job:*") == []


async def test_a_worker_whose_gpu_hangs_fails_the_job_takes_nothing_more_and_comes_back(
    harness: Harness, redis: Redis, store: Store
) -> None:
    """The run of ``hangs`` ignores the cancel at the time limit (a hang in a driver): past the limit
    and the grace the worker fails it with ``STUCK``, announces no slot, takes no job and runs none
    while the thread hangs (the job it took for its second slot meanwhile goes back to the bot), and
    takes jobs again once the thread returns. (``early`` must reach the worker within the time limit.)"""
    start_queue, start_worker = harness
    release = threading.Event()

    def hang(prompts: list[str]) -> None:
        if prompts == ["hangs"]:
            release.wait()

    engine = FakeEngine(on_run=hang)
    queue, events = await start_queue()
    await start_worker("gpu-1", engine, worker_slots=2, job_timeout=1.0, watchdog_grace=0.2)
    try:
        hung = await queue.submit(JobSubmission(1, request("hangs")))
        async with asyncio.timeout(10):
            while not engine.calls:
                await asyncio.sleep(0.01)
        early = await queue.submit(JobSubmission(2, request("early")))  # to the second slot
        await next_event(events, StartedEvent, early.job_id)
        failed = await next_event(events, FailedEvent)
        assert (failed.job_id, failed.message) == (hung.job_id, STUCK)
        assert (await announced(redis, "gpu-1")).slots == 0
        later = await queue.submit(JobSubmission(3, request("later")))
        waiting = {early.job_id, later.job_id}
        async with asyncio.timeout(10):  # ``early`` is taken back from the worker, ``later`` waits
            while {entry.job_id for entry in (await queue.snapshot()).waiting} != waiting:
                await asyncio.sleep(0.02)
        snapshot = await queue.snapshot()
        assert snapshot.running == ()
        assert [(worker.name, worker.slots) for worker in snapshot.workers] == [("gpu-1", 0)]
        # What /queue says of it:
        assert str(snapshot.workers[0]) == "gpu-1 (its GPU is not responding; no jobs go there)"
        assert engine.calls == [["hangs"]]
    finally:
        release.set()
    await next_event(events, DoneEvent, early.job_id)
    await next_event(events, DoneEvent, later.job_id)
    assert engine.calls == [["hangs"], ["early"], ["later"]]
    assert (await announced(redis, "gpu-1")).slots == 2
    attempts = {}
    for job in (hung, early, later):
        row = await jobs.get_job(store, job.job_id)
        assert row is not None
        attempts[job.job_id] = (row.status, row.attempts)
    assert attempts == {
        hung.job_id: (JobStatus.FAILED, 1),
        early.job_id: (JobStatus.DONE, 2),  # its first delivery went to the hung worker
        later.job_id: (JobStatus.DONE, 1),  # never sent to the hung worker
    }


async def test_an_outcome_the_worker_cannot_send_leaves_the_job_to_be_taken_back(
    harness: Harness, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refuses the worker's result once (a dropped connection): the entry is left pending and
    unrenewed, so the bot takes the job back after the lease and it runs again, instead of waiting
    for an outcome that never comes."""
    start_queue, start_worker = harness
    engine = FakeEngine()
    worker = await start_worker("gpu-1", engine)
    publish = worker._publish
    refused: list[int] = []

    async def drop_the_first_outcome(delivery: Delivery, message: dict[bytes, bytes]) -> None:
        if message[b"kind"] != streams.PROGRESS and not refused:
            refused.append(delivery.job_id)
            raise RedisConnectionError("connection lost")
        await publish(delivery, message)

    monkeypatch.setattr(worker, "_publish", drop_the_first_outcome)
    queue, events = await start_queue()
    job = await queue.submit(JobSubmission(1, request("twice")))
    await next_event(events, DoneEvent, job.job_id)
    assert refused == [job.job_id]
    assert engine.calls == [["twice"], ["twice"]]
    row = await jobs.get_job(store, job.job_id)
    assert row is not None and (row.status, row.attempts) == (JobStatus.DONE, 2)
