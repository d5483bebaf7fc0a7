"""The queue's snapshot for /queue: what runs, what waits in the order it will start, and ETAs."""

from bot.queue.base import JobSubmission, QueueSnapshot
from bot.queue.events import DoneEvent, StartedEvent
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, events_until, hold_worker, next_event, request


def ids(snapshot: QueueSnapshot) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(job id, user id) of the running and the waiting jobs."""
    return (
        [(entry.job_id, entry.user_id) for entry in snapshot.running],
        [(entry.job_id, entry.user_id) for entry in snapshot.waiting],
    )


async def test_an_idle_queue_has_an_empty_snapshot(make_queue: MakeQueue) -> None:
    queue, _ = await make_queue()
    assert await queue.snapshot() == QueueSnapshot(running=(), waiting=())


async def test_waiting_jobs_are_listed_in_the_order_they_start(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue()
    blocker = await hold_worker(queue, events, fake_engine, JobSubmission(9, request("blocker")))
    a1 = await queue.submit(JobSubmission(1, request("a1")))
    a2 = await queue.submit(JobSubmission(1, request("a2")))
    b1 = await queue.submit(JobSubmission(2, request("b1")))

    snapshot = await queue.snapshot()
    predicted = [(a1.job_id, 1), (b1.job_id, 2), (a2.job_id, 1)]  # fair turns, not arrival order
    assert ids(snapshot) == ([(blocker.job_id, 9)], predicted)
    assert await queue.snapshot() == snapshot, "taking a snapshot changes nothing"
    assert all(entry.eta is None for entry in snapshot.running + snapshot.waiting), (
        "no similar job has been timed yet"
    )

    await queue.cancel(b1.job_id)
    assert ids(await queue.snapshot())[1] == [(a1.job_id, 1), (a2.job_id, 1)]

    fake_engine.gate.set()
    seen = await events_until(events, lambda seen: sum(isinstance(e, DoneEvent) for e in seen) == 3)
    started = [event.job_id for event in seen if isinstance(event, StartedEvent)]
    assert started == [a1.job_id, a2.job_id]
    assert await queue.snapshot() == QueueSnapshot(running=(), waiting=())


async def test_etas_grow_with_the_position_once_a_similar_job_was_timed(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue()
    fake_engine.step_seconds = 0.01
    timed = await queue.submit(JobSubmission(1, request("timed")))
    await next_event(events, DoneEvent, timed.job_id)

    await hold_worker(queue, events, fake_engine, JobSubmission(9, request("blocker")))
    for user in (1, 2, 3):
        await queue.submit(JobSubmission(user, request(f"job of {user}")))
    snapshot = await queue.snapshot()
    (running,) = snapshot.running
    assert running.eta is not None and running.eta >= 0
    etas = [entry.eta for entry in snapshot.waiting if entry.eta is not None]
    assert len(etas) == 3 and etas == sorted(etas) and len(set(etas)) == 3, snapshot.waiting
    # 4 steps of about 0.01 s each per job: each place in the line adds about one job's run.
    assert 0.02 < etas[1] - etas[0] < 1.0


async def test_a_batch_lists_all_its_jobs_as_running(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=4)
    fake_engine.on_run = lambda prompts: fake_engine.gate.clear() if "a" in prompts else None
    await hold_worker(queue, events, fake_engine, JobSubmission(9, request("blocker")))
    a = await queue.submit(JobSubmission(1, request("a")))
    b = await queue.submit(JobSubmission(2, request("b")))
    c = await queue.submit(JobSubmission(3, request("c", steps=5)))  # another batch key
    fake_engine.gate.set()  # the blocker finishes; the next run closes the gate again
    await next_event(events, StartedEvent, b.job_id)

    snapshot = await queue.snapshot()
    assert ids(snapshot) == ([(a.job_id, 1), (b.job_id, 2)], [(c.job_id, 3)])
    assert snapshot.running[0].eta == snapshot.running[1].eta, "one engine call: one time left"
