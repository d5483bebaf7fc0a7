"""Round-robin between users: nobody's first job waits behind somebody else's backlog."""

import asyncio
import itertools

from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent, StartedEvent
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


def model_switches(models: list[str]) -> int:
    return sum(a != b for a, b in itertools.pairwise(models))


def test_within_a_round_jobs_for_the_model_served_last_go_first() -> None:
    """Four users, four jobs each, alternating between two models: round-robin would change the
    model at every job; by rounds, each user is still served once per round and the model changes
    once a round."""
    queue: FairQueue[str] = FairQueue(group=lambda item: item[1])
    for job in range(4):
        for user in range(1, 5):
            queue.push(user, f"{user}{'AB'[(user + job) % 2]}{job}")
    predicted = list(queue)
    popped = [queue.pop() for _ in range(len(queue))]
    assert popped == predicted
    rounds = [popped[start : start + 4] for start in range(0, 16, 4)]
    assert [sorted(item[0] for item in round_) for round_ in rounds] == [["1", "2", "3", "4"]] * 4
    assert model_switches([item[1] for item in popped]) == 4
    assert rounds[0] == ["1B0", "3B0", "2A0", "4A0"]  # the least recently served decides the model
    assert rounds[1][:2] == ["1A1", "3A1"]  # the next round goes on with the model loaded


def test_a_newcomer_with_another_model_is_served_within_the_round() -> None:
    queue: FairQueue[str] = FairQueue(group=lambda item: item[1])
    for user, item in [(1, "1A0"), (2, "2A0"), (3, "3A0"), (1, "1A1"), (2, "2A1"), (3, "3A1")]:
        queue.push(user, item)
    assert queue.pop() == "1A0"
    queue.push(4, "4B0")
    assert list(queue) == ["2A0", "3A0", "4B0", "1A1", "2A1", "3A1"]


async def test_jobs_run_grouped_by_model_and_every_user_once_a_round(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=1, queue_max_per_user=3)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker", model="a")))
    model_of = {}
    for job in range(3):
        for user in range(1, 5):
            model = "ab"[(user + job) % 2]
            model_of[f"{user}-{job}"] = model
            await queue.submit(JobSubmission(user, request(f"{user}-{job}", model=model)))
    fake_engine.gate.set()
    await events_until(events, lambda seen: sum(isinstance(e, DoneEvent) for e in seen) == 13)
    runs = [prompts[0] for prompts in fake_engine.calls[1:]]
    rounds = [runs[start : start + 4] for start in range(0, 12, 4)]
    assert [sorted(run.split("-")[0] for run in round_) for round_ in rounds] == [
        ["1", "2", "3", "4"]
    ] * 3
    models = ["a"] + [model_of[run] for run in runs]  # the blocker's model is loaded first
    assert model_switches(models) <= 3  # round-robin: 11
    for round_ in rounds:
        assert [run.split("-")[1] for run in round_] == [str(rounds.index(round_))] * 4


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
