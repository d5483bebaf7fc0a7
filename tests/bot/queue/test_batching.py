"""Compatible waiting jobs share one engine call, in fair order, up to the batch size in images."""

from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, hold_worker, next_event, request


async def test_compatible_jobs_run_together_up_to_the_batch_size(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=4)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker")))
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
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker")))
    await queue.submit(JobSubmission(1, request("face 1", auto_mask="face")))
    last = await queue.submit(JobSubmission(2, request("face 2", auto_mask="face")))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, last.job_id)
    assert fake_engine.calls == [["blocker"], ["face 1"], ["face 2"]]


async def test_batch_size_one_never_batches(make_queue: MakeQueue, fake_engine: FakeEngine) -> None:
    queue, events = await make_queue(batch_size=1)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("blocker")))
    await queue.submit(JobSubmission(1, request("x")))
    last = await queue.submit(JobSubmission(2, request("y")))
    fake_engine.gate.set()
    await next_event(events, DoneEvent, last.job_id)
    assert fake_engine.calls == [["blocker"], ["x"], ["y"]]


async def test_only_the_next_batch_is_kept_prepared(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=2, queue_max_per_user=20)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request("running")))
    submitted = [await queue.submit(JobSubmission(1, request(str(i)))) for i in range(10)]
    assert fake_engine.alive() <= 1 + 2  # the running job and the next batch, not all ten
    fake_engine.gate.set()
    await next_event(events, DoneEvent, submitted[-1].job_id)
    assert sorted(prompt for call in fake_engine.calls[1:] for prompt in call) == sorted(
        map(str, range(10))
    )
