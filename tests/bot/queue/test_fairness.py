"""Round-robin between users: nobody's first job waits behind somebody else's backlog."""

import asyncio

from bot.queue.base import JobSubmission
from bot.queue.events import StartedEvent
from bot.queue.fairness import FairQueue
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, events_until, hold_worker, next_event, request


def test_pop_order_is_round_robin_and_iteration_predicts_it() -> None:
    queue: FairQueue[str] = FairQueue()
    for user, item in [(1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (3, "c1"), (3, "c2")]:
        queue.push(user, item)
    predicted = list(queue)
    popped = [queue.pop() for _ in range(len(queue))]
    assert popped == predicted == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert not queue


def test_a_user_who_just_had_a_turn_goes_to_the_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push(1, "a1")
    queue.push(2, "b1")
    queue.push(2, "b2")
    assert queue.pop() == "a1"
    queue.push(1, "a2")  # A comes back while B still waits
    assert list(queue) == ["b1", "a2", "b2"]


def test_a_newcomer_goes_before_the_user_whose_job_just_started() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push(1, "a1")
    queue.push(1, "a2")
    assert queue.pop() == "a1"
    queue.push(2, "b1")
    assert list(queue) == ["b1", "a2"]


def test_remove_and_push_front() -> None:
    queue: FairQueue[str] = FairQueue()
    for user, item in [(1, "a1"), (2, "b1"), (2, "b2")]:
        queue.push(user, item)
    assert queue.remove("b1") and not queue.remove("b1")
    queue.push_front(3, "c0")
    assert list(queue) == ["c0", "a1", "b2"]
    assert (queue.count(2), len(queue)) == (1, 3)


async def test_many_users_are_served_round_by_round(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(queue_max_per_user=3, queue_max_total=100)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker")))

    round_of: dict[int, int] = {}  # job id -> which of its user's jobs it is (0, 1, 2)

    async def user_submits_three(user: int) -> None:
        for round_ in range(3):
            event = await queue.submit(JobSubmission(user, request(f"{user}-{round_}")))
            round_of[event.job_id] = round_

    await asyncio.gather(*(user_submits_three(user) for user in range(1, 21)))
    fake_engine.gate.set()
    seen = await events_until(events, lambda seen: sum(isinstance(e, StartedEvent) for e in seen) == 60)
    rounds = [round_of[event.job_id] for event in seen if isinstance(event, StartedEvent)]
    assert rounds == [0] * 20 + [1] * 20 + [2] * 20, (
        "a user's next job started before another's earlier one"
    )


async def test_ten_jobs_do_not_delay_another_users_first(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(queue_max_per_user=10)
    fake_engine.gate.clear()
    flood = [await queue.submit(JobSubmission(1, request(f"flood-{i}"))) for i in range(10)]
    await next_event(events, StartedEvent, flood[0].job_id)
    late = await queue.submit(JobSubmission(2, request("late")))
    assert late.position == 1
    fake_engine.gate.set()
    started = await next_event(events, StartedEvent)
    assert started.job_id == late.job_id
