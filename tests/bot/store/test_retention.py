"""Retention removes old pictures by age and disk budget, never those a live, undelivered or kept job
needs."""

from datetime import timedelta

from sqlalchemy import select

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import Image, ImageRole, Job, utcnow
from bot.store.retention import RetentionPolicy, clean_up
from tests.bot.store.test_jobs import new_job, result
from tests.pictures import photo, png_bytes

LATER = utcnow() + timedelta(days=10)


async def finished_job(store: Store, user_id: int = 1, *, shown: bool = True) -> Job:
    """A done job; ``shown``: its result was posted (acknowledged by the bot)."""
    job = await new_job(store, user_id=user_id)
    await jobs.start_job(store, job.id)
    done = await jobs.finish_job(store, job.id, result())
    assert done is not None
    if shown:
        await jobs.mark_delivered(store, job.id)
    return done


async def images(store: Store) -> dict[str, Image]:
    async with store.sessions() as session:
        return {image.sha256: image for image in await session.scalars(select(Image))}


def files_on_disk(store: Store) -> set[str]:
    return {path.name for path in store.files.root.rglob("*") if path.is_file()}


async def test_age_limit_purges_files_and_keeps_rows(store: Store) -> None:
    job = await finished_job(store)
    report = await clean_up(store, RetentionPolicy(max_age=timedelta(days=30)), now=LATER)
    assert report.purged == 0
    report = await clean_up(store, RetentionPolicy(max_age=timedelta(days=1)), now=LATER)
    assert report.purged == 4  # input, mask, two outputs
    assert files_on_disk(store) == set()
    assert all(image.purged_at is not None for image in (await images(store)).values())
    stored = await jobs.get_job(store, job.id)
    assert stored is not None and len(stored.images) == 4  # history stays


async def test_live_and_kept_jobs_keep_their_pictures(store: Store) -> None:
    await new_job(store)  # queued: its input and mask are needed
    kept = await finished_job(store, user_id=2)
    await jobs.set_kept(store, kept.id)
    report = await clean_up(store, RetentionPolicy(max_age=timedelta(days=1), max_bytes=0), now=LATER)
    assert report.purged == 0
    assert len(files_on_disk(store)) == 4  # the shared input and mask, two outputs


async def test_a_result_not_shown_yet_keeps_its_pictures(store: Store) -> None:
    """It is posted again after a restart (a Discord outage, say): its pictures must still be there."""
    job = await finished_job(store, shown=False)
    report = await clean_up(store, RetentionPolicy(max_age=timedelta(days=1), max_bytes=0), now=LATER)
    assert report.purged == 0
    assert len(files_on_disk(store)) == 4
    (undelivered,) = await jobs.undelivered_jobs(store)
    assert all(jobs.image_path(store, link.image).is_file() for link in undelivered.images)

    await jobs.mark_delivered(store, job.id)
    report = await clean_up(store, RetentionPolicy(max_age=timedelta(days=1)), now=LATER)
    assert report.purged == 4


async def test_budget_removes_least_recently_used_first(store: Store) -> None:
    await finished_job(store)
    before = await images(store)
    newest = max(before.values(), key=lambda image: (image.last_used_at, image.id))
    budget = newest.size
    report = await clean_up(store, RetentionPolicy(max_bytes=budget))
    assert report.purged == 3 and report.freed_bytes == sum(i.size for i in before.values()) - budget
    assert files_on_disk(store) == {newest.sha256}


async def test_an_upload_brings_a_purged_picture_back(store: Store) -> None:
    await finished_job(store)
    await clean_up(store, RetentionPolicy(max_age=timedelta(days=1)), now=LATER)
    again = await new_job(store)
    (input_link,) = again.images_with(ImageRole.INPUT)
    assert input_link.image.purged_at is None
    assert jobs.image_path(store, input_link.image).is_file()


async def test_stray_files_are_removed(store: Store) -> None:
    stray = store.files.put(png_bytes(photo(8, 8, seed=3)))  # written, its row never committed
    report = await clean_up(store, RetentionPolicy())
    assert report.stray_files == 1
    assert not store.files.path(stray.sha256).exists()
