"""The events a job sends, in order, and what they carry."""

from PIL import Image

from bot.queue.base import JobSubmission
from bot.queue.eta import EtaEstimator
from bot.queue.events import DoneEvent, ProgressEvent, QueuedEvent, StartedEvent
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import JobStatus
from tests.bot.queue.conftest import MakeQueue
from tests.bot.queue.fakes import FakeEngine, events_until, hold_worker, next_event, request


async def test_a_job_reports_queued_started_progress_done(make_queue: MakeQueue, store: Store) -> None:
    queue, events = await make_queue()
    queued = await queue.submit(
        JobSubmission(7, request("cat", seed=100, count=2), guild_id=1, channel_id=2)
    )
    seen = await events_until(events, lambda seen: isinstance(seen[-1], DoneEvent))
    assert seen[0] == queued == QueuedEvent(queued.job_id, 7, position=1, eta=None)
    assert isinstance(seen[1], StartedEvent)
    assert [(e.step, e.total) for e in seen[2:-1] if isinstance(e, ProgressEvent)] == [
        (i, 4) for i in range(1, 5)
    ]
    done = seen[-1]
    assert isinstance(done, DoneEvent) and done.job_id == queued.job_id
    assert done.seeds == [100, 101]
    assert [Image.open(image.path).getpixel((0, 0)) for image in done.images] == [
        (100, 0, 7),
        (101, 0, 7),
    ]
    assert (done.settings.prompt, done.model, done.timings) == ("cat", "fake-model", {"denoise": 0.01})

    stored = await jobs.get_job(store, queued.job_id)
    assert stored is not None
    assert (stored.status, stored.guild_id, stored.channel_id) == (JobStatus.DONE, 1, 2)


async def test_previews_go_only_to_jobs_that_asked(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue(batch_size=2)
    await hold_worker(queue, events, fake_engine, JobSubmission(0, request()))
    wants = await queue.submit(JobSubmission(1, request(), previews=True))
    plain = await queue.submit(JobSubmission(2, request()))
    fake_engine.gate.set()
    assert (await next_event(events, ProgressEvent, wants.job_id)).preview is not None
    assert (await next_event(events, ProgressEvent, plain.job_id)).preview is None


async def test_positions_and_etas_follow_the_queue(
    make_queue: MakeQueue, fake_engine: FakeEngine
) -> None:
    queue, events = await make_queue()
    first = await queue.submit(JobSubmission(1, request()))
    await next_event(events, DoneEvent, first.job_id)  # now the queue knows how long such a job takes

    await hold_worker(queue, events, fake_engine, JobSubmission(1, request()))
    second = await queue.submit(JobSubmission(2, request()))
    third = await queue.submit(JobSubmission(3, request()))
    assert (second.position, third.position) == (1, 2)
    assert second.eta is not None and third.eta is not None and third.eta > second.eta

    fake_engine.gate.set()
    await next_event(events, QueuedEvent, third.job_id, where=lambda event: event.position == 1)


def test_eta_is_a_running_average_per_model_and_size() -> None:
    eta = EtaEstimator()
    assert eta.estimate("m", (512, 512), steps=20, images=1) is None
    eta.observe("m", (512, 512), steps=10, images=1, seconds=10.0)
    assert eta.estimate("m", (512, 512), steps=20, images=2) == 40.0
    eta.observe("m", (512, 512), steps=10, images=1, seconds=20.0)
    assert eta.estimate("m", (512, 512), steps=1, images=1) == 1.3  # moves 30% towards the new rate
    assert eta.estimate("m", (1024, 512), steps=1, images=1) == 2.6  # other sizes scale by pixels
    assert eta.estimate("other", (512, 512), steps=1, images=1) is None
