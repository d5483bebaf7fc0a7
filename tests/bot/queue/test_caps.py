"""Caps on pending jobs: per user (global and per guild) and for everyone, each named in its error."""

import asyncio

import pytest

from bot.errors import QueueFullError
from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent
from engine.errors import ImageError
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import NOT_AN_IMAGE, FakeEngine, hold_worker, next_event, request


async def test_per_user_cap_counts_the_running_job(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(queue_max_per_user=3)
    first = await hold_worker(queue, events, fake_engine, JobSubmission(1, request("1")))
    for prompt in ("2", "3"):
        await queue.submit(JobSubmission(1, request(prompt)))
    with pytest.raises(QueueFullError, match=r"one person may have at a time \(3\)") as error:
        await queue.submit(JobSubmission(1, request("4")))
    assert (error.value.cap, error.value.limit) == ("per-user", 3)
    await queue.submit(JobSubmission(2, request("other user")))  # others are not affected

    fake_engine.gate.set()
    await next_event(events, DoneEvent, first.job_id)
    await queue.submit(JobSubmission(1, request("4")))  # a slot came free


async def test_a_guild_may_lower_the_per_user_cap(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, _ = await make_queue(queue_max_per_user=3)
    fake_engine.gate.clear()
    await queue.submit(JobSubmission(1, request(), max_pending=1))
    with pytest.raises(QueueFullError, match=r"\(1\)"):
        await queue.submit(JobSubmission(1, request(), max_pending=1))
    await queue.submit(JobSubmission(1, request()))  # elsewhere the global cap applies


async def test_global_cap(make_queue: MakeQueue, fake_engine: FakeEngine) -> None:
    queue, _ = await make_queue(queue_max_total=5)
    fake_engine.gate.clear()
    for user in range(5):
        await queue.submit(JobSubmission(user, request()))
    with pytest.raises(QueueFullError, match=r"The queue is full.*\(5\)") as error:
        await queue.submit(JobSubmission(99, request()))
    assert (error.value.cap, error.value.limit) == ("total", 5)


async def test_concurrent_submissions_cannot_overshoot(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, _ = await make_queue(queue_max_per_user=3)
    fake_engine.gate.clear()
    outcomes = await asyncio.gather(
        *(queue.submit(JobSubmission(1, request(str(i)))) for i in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(outcome, Exception) for outcome in outcomes) == 3
    assert all(
        isinstance(outcome, QueueFullError) for outcome in outcomes if isinstance(outcome, Exception)
    )


async def test_bad_input_is_refused_before_it_is_stored(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, _ = await make_queue(queue_max_per_user=1)
    fake_engine.gate.clear()
    bad = request()
    with pytest.raises(ImageError):
        await queue.submit(JobSubmission(1, type(bad)(NOT_AN_IMAGE, bad.settings)))
    event = await queue.submit(JobSubmission(1, request()))  # the refused one took no slot
    assert event.job_id == 1  # and no row


async def test_per_guild_cap_counts_every_member_of_the_server_and_not_other_servers(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(queue_max_per_guild=2)
    busy, quiet = 10, 20
    first = await hold_worker(queue, events, fake_engine, JobSubmission(1, request("1"), guild_id=busy))
    await queue.submit(JobSubmission(2, request("2"), guild_id=busy))
    with pytest.raises(QueueFullError, match=r"one server may have at a time \(2\)") as error:
        await queue.submit(JobSubmission(3, request("3"), guild_id=busy))
    assert (error.value.cap, error.value.limit) == ("per-guild", 2)
    with pytest.raises(QueueFullError):  # asked before the downloads: the same answer
        await queue.check_room(3, busy, None)
    await queue.check_room(3, quiet, None)
    await queue.submit(JobSubmission(3, request("elsewhere"), guild_id=quiet))
    await queue.submit(JobSubmission(4, request("a direct message")))  # no server, no server cap

    fake_engine.gate.set()
    await next_event(events, DoneEvent, first.job_id)
    await queue.submit(JobSubmission(3, request("3"), guild_id=busy))  # a slot came free
