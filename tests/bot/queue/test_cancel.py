"""Cancel: a queued job leaves the queue, a running one stops within a step."""

import asyncio

from bot.queue.base import JobSubmission
from bot.queue.events import CancelledEvent, DoneEvent, QueuedEvent, StartedEvent
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import JobStatus
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, hold_worker, next_event, request


async def status(store: Store, job_id: int) -> JobStatus:
    job = await jobs.get_job(store, job_id)
    assert job is not None
    return job.status


async def test_cancel_a_queued_job(make_queue: MakeQueue, fake_engine: FakeEngine, store: Store) -> None:
    queue, events = await make_queue()
    await hold_worker(queue, events, fake_engine, JobSubmission(1, request("running")))
    doomed = await queue.submit(JobSubmission(2, request("doomed")))
    behind = await queue.submit(JobSubmission(3, request("behind")))
    assert (doomed.position, behind.position) == (1, 2)

    assert await queue.cancel(doomed.job_id)
    await next_event(events, CancelledEvent, doomed.job_id)
    moved = await next_event(events, QueuedEvent, behind.job_id)
    assert moved.position == 1
    assert await status(store, doomed.job_id) is JobStatus.CANCELLED

    fake_engine.gate.set()
    await next_event(events, DoneEvent, behind.job_id)
    assert ["doomed"] not in fake_engine.calls
    assert not await queue.cancel(doomed.job_id)


async def test_cancel_a_running_job(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    queue, events = await make_queue()
    fake_engine.gate.clear()
    running = await queue.submit(JobSubmission(1, request("running", steps=50)))
    after = await queue.submit(JobSubmission(2, request("after")))
    await next_event(events, StartedEvent, running.job_id)

    assert await queue.cancel(running.job_id)
    fake_engine.gate.set()
    await next_event(events, CancelledEvent, running.job_id)
    assert fake_engine.steps_after_cancel <= 1
    assert await status(store, running.job_id) is JobStatus.CANCELLED
    await next_event(events, DoneEvent, after.job_id)  # the worker goes on
    assert not await queue.cancel(running.job_id)


async def test_cancelling_one_job_of_a_batch_reruns_the_others(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    queue, events = await make_queue(batch_size=2)
    loop = asyncio.get_running_loop()
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker")))
    mine = await queue.submit(JobSubmission(1, request("mine")))
    mate = await queue.submit(JobSubmission(2, request("mate")))

    def cancel_mine_once_running(prompts: list[str]) -> None:  # in the GPU thread, before step 1
        if prompts == ["mine", "mate"]:
            asyncio.run_coroutine_threadsafe(queue.cancel(mine.job_id), loop).result()

    fake_engine.on_run = cancel_mine_once_running
    fake_engine.gate.set()
    await next_event(events, DoneEvent, mate.job_id)
    assert fake_engine.calls[1:] == [["mine", "mate"], ["mate"]]
    assert await status(store, mine.job_id) is JobStatus.CANCELLED
    done = await jobs.get_job(store, mate.job_id)
    assert done is not None and (done.status, done.attempts) == (JobStatus.DONE, 2)
