"""A worker that sends what the bot cannot take (a bug, another version, or anyone who can write to
Redis): its job fails with the reason, or the message is ignored, and the bot reads on."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.queue import streams
from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent, FailedEvent, ProgressEvent
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import JobStatus
from tests.bot.conftest import Harness
from tests.bot.queue.fakes import next_event, request
from tests.bot.queue.test_remote import HandWorker, done


async def test_a_result_the_bot_cannot_take_fails_its_job_and_the_bot_reads_on(
    harness: Harness,
    redis: Redis,
    store: Store,
) -> None:
    start_queue, _ = harness
    hand = HandWorker(redis)
    await hand.announce()
    queue, events = await start_queue()

    first = await queue.submit(JobSubmission(1, request("garbled")))
    delivery = await hand.take()
    await hand.report(
        streams.progress_message(delivery.attempt, 1, 4, None) | {b"step": b"one"}, first.job_id
    )
    await hand.report(done(delivery) | {b"png0": b"%!PS-Adobe-3.0 EPSF-3.0\n"}, first.job_id)
    failed = await next_event(events, FailedEvent, first.job_id)
    assert failed.message == "The GPU worker sent a picture that is not a PNG, so the job failed."
    row = await jobs.get_job(store, first.job_id)
    assert row is not None and row.status is JobStatus.FAILED

    second = await queue.submit(JobSubmission(2, request("fine")))
    delivery = await hand.take()
    await hand.report(streams.progress_message(delivery.attempt, 2, 4, None), second.job_id)
    progress = await next_event(events, ProgressEvent, second.job_id)
    assert (progress.step, progress.total) == (2, 4)
    await hand.report(done(delivery), second.job_id)
    await next_event(events, DoneEvent, second.job_id)


async def test_a_worker_failure_reason_reaches_the_member_as_short_text(
    harness: Harness,
    redis: Redis,
) -> None:
    start_queue, _ = harness
    hand = HandWorker(redis)
    await hand.announce()
    queue, events = await start_queue()
    job = await queue.submit(JobSubmission(1, request("flood")))
    delivery = await hand.take()
    message = b"\xff" + b"x" * 100_000
    await hand.report(streams.failed_message(delivery.attempt, "") | {b"message": message}, job.job_id)
    failed = await next_event(events, FailedEvent, job.job_id)
    assert failed.message.startswith("\ufffdxxx") and len(failed.message) == streams.MAX_FAILURE_CHARS
