"""The safety checker's verdicts: taken in the GPU thread after the engine, stored per picture."""

import logging

import pytest
from PIL import Image

from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import (
    FakeEngine,
    StubSafetyChecker,
    hold_worker,
    next_event,
    request,
    tiny_picture,
)


def painted_with(seed: int) -> StubSafetyChecker:
    """Flags the fake engine's picture for ``seed`` (its colour encodes the seed), and no other."""
    known = tiny_picture(seed).getpixel((0, 0))
    return StubSafetyChecker(lambda image: image.getpixel((0, 0)) == known)


async def verdicts(store: Store, job_id: int) -> list[bool | None]:
    job = await jobs.get_job(store, job_id)
    assert job is not None
    return [link.nsfw for link in job.images_with(ImageRole.OUTPUT)]


async def test_each_picture_gets_its_verdict_in_the_gpu_thread(
    make_queue: MakeQueue, store: Store
) -> None:
    checker = painted_with(11)
    queue, events = await make_queue(safety=checker)
    queued = await queue.submit(JobSubmission(1, request("two", count=2, seed=10)))
    done = await next_event(events, DoneEvent, queued.job_id)
    assert done.seeds == [10, 11]
    assert await verdicts(store, queued.job_id) == [False, True]
    assert len(checker.checks) == 1
    pictures, thread = checker.checks[0]
    assert pictures == 2 and thread.startswith("inpaint-gpu")


async def test_without_a_checker_pictures_are_unchecked(make_queue: MakeQueue, store: Store) -> None:
    queue, events = await make_queue()
    queued = await queue.submit(JobSubmission(1, request("plain")))
    await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [None]


async def test_a_failing_checker_flags_the_pictures_and_the_job_still_succeeds(
    make_queue: MakeQueue, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    checker = StubSafetyChecker(error=RuntimeError("checker broke"))
    queue, events = await make_queue(safety=checker)
    queued = await queue.submit(JobSubmission(1, request("unlucky", count=2)))
    with caplog.at_level(logging.ERROR, logger="bot.queue.local"):
        await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [True, True]
    assert "the safety checker failed; 2 pictures count as flagged" in caplog.text


async def test_a_checker_that_miscounts_flags_the_pictures(make_queue: MakeQueue, store: Store) -> None:
    class Miscounting(StubSafetyChecker):
        def flags(self, images: object) -> list[bool]:
            return [False]

    queue, events = await make_queue(safety=Miscounting())
    queued = await queue.submit(JobSubmission(1, request("two", count=2)))
    await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [True, True]


async def test_a_batch_is_checked_at_once_and_the_verdicts_go_to_their_jobs(
    make_queue: MakeQueue, fake_engine: FakeEngine, store: Store
) -> None:
    checker = painted_with(30)
    queue, events = await make_queue(safety=checker, batch_size=4)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker", seed=1)))
    first = await queue.submit(JobSubmission(1, request("a", count=2, seed=20)))
    second = await queue.submit(JobSubmission(2, request("b", seed=30)))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, second.job_id)
    assert fake_engine.calls[-1] == ["a", "b"]
    assert checker.checks[-1][0] == 3  # one check for the batch's three pictures
    assert await verdicts(store, first.job_id) == [False, False]
    assert await verdicts(store, second.job_id) == [True]


def test_the_stub_tells_pictures_apart() -> None:
    """The known-picture stub the tests rely on flags only that picture."""
    checker = painted_with(3)
    assert checker.flags([tiny_picture(3), tiny_picture(4), Image.new("RGB", (8, 8))]) == [
        True,
        False,
        False,
    ]


async def test_the_checker_loads_with_the_model_and_a_failed_load_does_not_stop_the_bot(
    make_queue: MakeQueue, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    checker = painted_with(3)
    await make_queue(safety=checker)
    assert len(checker.loads) == 1 and checker.loads[0].startswith("inpaint-gpu")
    assert checker.checks == []  # loading judged nothing

    broken = StubSafetyChecker(error=RuntimeError("no weights"))
    queue, events = await make_queue(safety=broken)
    assert "the safety checker could not load" in caplog.text
    queued = await queue.submit(JobSubmission(1, request("after a failed load")))
    await next_event(events, DoneEvent, queued.job_id)
    assert await verdicts(store, queued.job_id) == [True]
