"""Retention removes old pictures by age and disk budget, never those a live, undelivered or kept job
needs."""

import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.util import await_only

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import Image, ImageRole, Job, utcnow
from bot.store.retention import CHUNK, RetentionPolicy, clean_up
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


def like_an_old_sqlite(store: Store, variables: int = 999) -> None:
    """Limit bound variables per statement as SQLite builds before 3.32 do (newer ones allow 32766)."""

    def limit(dbapi_connection: Any, record: object) -> None:
        connection = dbapi_connection.driver_connection  # aiosqlite's, whose thread owns sqlite3's
        limit = connection._conn.setlimit
        await_only(connection._execute(limit, sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables))

    event.listen(store.sql_engine.sync_engine, "connect", limit)


@pytest.mark.sqlite_only  # SQLite's limit on a statement's variables
async def test_a_pass_purges_more_pictures_than_one_statement_can_name(store: Store) -> None:
    like_an_old_sqlite(store)
    await store.sql_engine.dispose()  # connections opened from now on have the limit
    count = 2 * CHUNK + 1
    assert count > 999
    old = utcnow() - timedelta(days=10)
    rows = [
        {
            "sha256": f"{i:064x}",
            "size": 10,
            "width": 1,
            "height": 1,
            "format": "PNG",
            "last_used_at": old,
        }
        for i in range(count)
    ]
    async with store.sessions.begin() as session:
        await session.execute(insert(Image), rows)
    report = await clean_up(store, RetentionPolicy(max_age=timedelta(days=1)))
    assert report.purged == count
    assert all(image.purged_at is not None for image in (await images(store)).values())
