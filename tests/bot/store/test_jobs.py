"""A job's life in the database, from the queue's writes to the bot's reads."""

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, Job, JobStatus
from engine.job import GeneratedImage, InpaintResult, MaskSource
from engine.settings import InpaintSettings
from tests.pictures import photo, png_bytes, rect_mask

SETTINGS = InpaintSettings(prompt="a cat", seed=7, count=2)


def result(settings: InpaintSettings = SETTINGS) -> InpaintResult:
    images = [GeneratedImage(photo(16, 16, seed=s), s, "parameters") for s in settings.seeds()]
    return InpaintResult(
        images, settings, MaskSource.UPLOADED, "tiny", seconds=1.5, timings={"denoise": 1.2}
    )


async def new_job(store: Store, user_id: int = 1, **values: object) -> Job:
    return await jobs.create_job(
        store,
        user_id=user_id,
        settings=SETTINGS,
        image=png_bytes(photo(32, 32)),
        mask=png_bytes(rect_mask(32, 32, (8, 8, 16, 16))),
        **values,  # type: ignore[arg-type]
    )


async def test_a_job_is_stored_with_its_inputs_and_concrete_settings(store: Store) -> None:
    created = await new_job(store, guild_id=10, channel_id=20, model="tiny")
    job = await jobs.get_job(store, created.id)
    assert job is not None
    assert (job.user_id, job.guild_id, job.channel_id, job.status) == (1, 10, 20, JobStatus.QUEUED)
    assert job.inpaint_settings() == SETTINGS
    (picture,) = job.images_with(ImageRole.INPUT)
    assert (picture.image.width, picture.image.height) == (32, 32)
    assert store.files.read(picture.image.sha256) == png_bytes(photo(32, 32))
    assert len(job.images_with(ImageRole.MASK)) == 1


async def test_random_seeds_must_be_made_concrete_first(store: Store) -> None:
    with pytest.raises(ValueError, match="concrete seed"):
        await jobs.create_job(store, user_id=1, settings=InpaintSettings(), image=png_bytes(photo(8, 8)))


async def test_lifecycle_to_done_stores_outputs_with_seeds(store: Store) -> None:
    job = await new_job(store)
    assert await jobs.start_job(store, job.id)
    done = await jobs.finish_job(store, job.id, result())
    assert done is not None and done.status is JobStatus.DONE
    outputs = done.images_with(ImageRole.OUTPUT)
    assert [link.seed for link in outputs] == [7, 8]
    assert all(jobs.image_path(store, link.image).is_file() for link in outputs)
    assert (done.run_seconds, done.timings, done.attempts) == (1.5, {"denoise": 1.2}, 1)
    assert done.started_at is not None and done.finished_at is not None


async def test_a_job_finishes_at_most_once(store: Store) -> None:
    job = await new_job(store)
    assert await jobs.finish_job(store, job.id, result()) is None  # never started
    await jobs.start_job(store, job.id)
    assert await jobs.cancel_job(store, job.id)
    assert await jobs.finish_job(store, job.id, result()) is None
    assert not await jobs.fail_job(store, job.id, "too late")
    stored = await jobs.get_job(store, job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED and stored.error is None


async def test_live_jobs_resume_interrupted_first_then_in_order(store: Store) -> None:
    first, second, third = [await new_job(store, user_id=user) for user in (1, 2, 3)]
    await jobs.start_job(store, third.id)
    done = await new_job(store)
    await jobs.start_job(store, done.id)
    await jobs.finish_job(store, done.id, result())
    assert [job.id for job in await jobs.live_jobs(store)] == [third.id, first.id, second.id]
    assert await jobs.requeue_job(store, third.id)
    assert [job.id for job in await jobs.live_jobs(store)] == [first.id, second.id, third.id]


async def test_undelivered_results_until_marked(store: Store) -> None:
    ok, bad = await new_job(store), await new_job(store)
    for job in (ok, bad):
        await jobs.start_job(store, job.id)
    await jobs.finish_job(store, ok.id, result())
    await jobs.fail_job(store, bad.id, "no")
    assert [job.id for job in await jobs.undelivered_jobs(store)] == [ok.id, bad.id]
    await jobs.mark_delivered(store, ok.id)
    assert [job.id for job in await jobs.undelivered_jobs(store)] == [bad.id]


async def test_history_rerolls_and_message(store: Store) -> None:
    parent = await new_job(store)
    child = await new_job(store, parent_id=parent.id)
    await new_job(store, user_id=2)
    await jobs.set_job_message(store, child.id, message_id=99, channel_id=5)
    history = await jobs.user_jobs(store, 1)
    assert [job.id for job in history] == [child.id, parent.id]
    assert (history[0].parent_id, history[0].message_id, history[0].channel_id) == (parent.id, 99, 5)
    assert [job.id for job in await jobs.user_jobs(store, 1, before_id=child.id)] == [parent.id]
    shown = await jobs.job_shown_by(store, 99)
    assert shown is not None and shown.id == child.id
    assert await jobs.job_shown_by(store, 12345) is None


async def test_identical_uploads_share_one_picture(store: Store) -> None:
    first, second = await new_job(store), await new_job(store, user_id=2)
    assert first.images[0].image_id == second.images[0].image_id


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError):
        await new_job(store, parent_id=12345)
    async with store.sessions() as session:
        assert list(await session.scalars(select(Job))) == []


async def test_every_message_that_showed_a_job_leads_back_to_it(store: Store) -> None:
    job = await new_job(store, channel_id=5)
    await jobs.set_job_message(store, job.id, message_id=100)  # its status, later its result
    await jobs.set_job_message(store, job.id, message_id=100)  # the same message again
    await jobs.set_job_message(store, job.id, message_id=200, channel_id=6)  # re-posted by /show
    for message_id in (100, 200):
        shown = await jobs.job_shown_by(store, message_id)
        assert shown is not None and shown.id == job.id
    assert await jobs.job_shown_by(store, 300) is None
    row = await jobs.get_job(store, job.id)
    assert row is not None and (row.message_id, row.channel_id, row.hidden) == (200, 6, False)
    await jobs.hide_job(store, job.id)
    row = await jobs.get_job(store, job.id)
    assert row is not None and row.hidden
