"""Compatible waiting jobs share one engine call, in fair order, up to the batch size in images."""

from bot.queue.base import DoneEvent, JobSubmission, StartedEvent
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, next_event, request


async def test_compatible_jobs_run_together_up_to_the_batch_size(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=4)
    fake_engine.gate.clear()
    blocker = await queue.submit(JobSubmission(0, request("blocker")))
    await next_event(events, StartedEvent, blocker.job_id)
    for user, prompt, settings in [
        (1, "a1", {}),
        (1, "a2", {}),
        (2, "b1", {"steps": 5}),  # other steps: cannot share a call
        (3, "c1", {"count": 2}),  # two images
        (3, "c2", {}),
    ]:
        last = await queue.submit(JobSubmission(user, request(prompt, **settings)))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, last.job_id)
    # Fair order is a1 b1 c1 a2 c2; a1's call takes c1 and a2 (4 images), c2 would make 5.
    assert fake_engine.calls == [["blocker"], ["a1", "c1", "a2"], ["b1"], ["c2"]]


async def test_jobs_without_a_batch_key_run_alone(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=4)
    fake_engine.gate.clear()
    blocker = await queue.submit(JobSubmission(0, request("blocker")))
    await next_event(events, StartedEvent, blocker.job_id)
    await queue.submit(JobSubmission(1, request("face 1", auto_mask="face")))
    last = await queue.submit(JobSubmission(2, request("face 2", auto_mask="face")))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, last.job_id)
    assert fake_engine.calls == [["blocker"], ["face 1"], ["face 2"]]


async def test_batch_size_one_never_batches(make_queue: MakeQueue, fake_engine: FakeEngine) -> None:
    queue, events = await make_queue(batch_size=1)
    fake_engine.gate.clear()
    blocker = await queue.submit(JobSubmission(0, request("blocker")))
    await next_event(events, StartedEvent, blocker.job_id)
    await queue.submit(JobSubmission(1, request("x")))
    last = await queue.submit(JobSubmission(2, request("y")))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, last.job_id)
    assert fake_engine.calls == [["blocker"], ["x"], ["y"]]
