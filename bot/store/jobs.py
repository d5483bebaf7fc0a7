"""Jobs in the database: what the queue writes at each step of a job and what the bot reads back.

Every status change is one conditional UPDATE (``WHERE status IN ...``), so a job is finished, failed
or cancelled at most once however the steps interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.errors import BotError
from bot.store.database import Store, dialect_insert
from bot.store.files import ImageFiles
from bot.store.models import (
    LIVE_STATUSES,
    Image,
    ImageRole,
    Job,
    JobImage,
    JobMessage,
    JobStatus,
    User,
    undelivered,
    utcnow,
)
from engine.job import InpaintResult, MaskSource
from engine.settings import InpaintSettings


async def ensure_user(session: AsyncSession, user_id: int) -> None:
    await session.execute(dialect_insert(session, User).values(id=user_id).on_conflict_do_nothing())


async def add_image(session: AsyncSession, files: ImageFiles, data: bytes) -> Image:
    """Write the file and its row (or touch the existing ones). The caller holds ``files.lock``."""
    stored = await asyncio.to_thread(files.put, data)
    now = utcnow()
    insert = dialect_insert(session, Image).values(
        sha256=stored.sha256,
        size=stored.size,
        width=stored.width,
        height=stored.height,
        format=stored.format,
        created_at=now,
        last_used_at=now,
    )
    # A picture purged by retention and uploaded again comes back: the file was just rewritten.
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[Image.sha256], set_={"last_used_at": now, "purged_at": None}
        )
    )
    query = select(Image).where(Image.sha256 == stored.sha256).execution_options(populate_existing=True)
    return (await session.scalars(query)).one()


def image_path(store: Store, image: Image) -> Path:
    return store.files.path(image.sha256)


async def job_picture(store: Store, job: Job, role: ImageRole) -> bytes:
    """The job's first picture of ``role``; ``BotError`` when it has none or it was cleaned up."""
    links = job.images_with(role)
    if not links:
        raise BotError(f"Job {job.id} has no {role.value} picture.")
    if links[0].image.purged_at is None:
        with contextlib.suppress(FileNotFoundError):
            return await asyncio.to_thread(image_path(store, links[0].image).read_bytes)
    raise BotError(f"The pictures of job {job.id} were cleaned up; run /inpaint again.")


S = TypeVar("S", bound=Select[Any])


def _with_images(query: S) -> S:
    return query.options(selectinload(Job.images).joinedload(JobImage.image))


async def create_job(
    store: Store,
    *,
    user_id: int,
    settings: InpaintSettings,
    image: bytes,
    mask: bytes | None = None,
    found_mask: bytes | None = None,
    guild_id: int | None = None,
    channel_id: int | None = None,
    parent_id: int | None = None,
    model: str | None = None,
    mask_source: MaskSource | None = None,
) -> Job:
    """Write a queued job with its input pictures (``found_mask``: the mask its words found),
    committed before the caller acknowledges it."""
    if settings.seed < 0:
        raise ValueError("store the concrete seed (settings.with_seed()) so a re-run is identical")
    async with store.files.lock, store.sessions.begin() as session:
        await ensure_user(session, user_id)
        job = Job(
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            parent_id=parent_id,
            settings=settings.model_dump(mode="json"),
            model=model,
            mask_source=mask_source,
        )
        inputs = [(ImageRole.INPUT, image), (ImageRole.MASK, mask), (ImageRole.FOUND_MASK, found_mask)]
        for role, data in ((role, data) for role, data in inputs if data is not None):
            picture = await add_image(session, store.files, data)
            job.images.append(JobImage(role=role, position=0, image=picture))
        session.add(job)
    return job


async def _transition(
    store: Store, job_id: int, sources: tuple[JobStatus, ...], **values: object
) -> bool:
    async with store.sessions.begin() as session:
        result = await session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_(sources)).values(**values)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


async def start_job(store: Store, job_id: int) -> bool:
    return await _transition(
        store,
        job_id,
        (JobStatus.QUEUED,),
        status=JobStatus.RUNNING,
        started_at=utcnow(),
        attempts=Job.attempts + 1,
    )


async def requeue_job(store: Store, job_id: int) -> bool:
    """Back to the queue after an interrupted run (shutdown); the next start runs it again."""
    return await _transition(
        store, job_id, (JobStatus.RUNNING,), status=JobStatus.QUEUED, started_at=None
    )


async def fail_job(store: Store, job_id: int, message: str) -> bool:
    return await _transition(
        store, job_id, LIVE_STATUSES, status=JobStatus.FAILED, error=message, finished_at=utcnow()
    )


async def cancel_job(store: Store, job_id: int) -> bool:
    return await _transition(
        store, job_id, LIVE_STATUSES, status=JobStatus.CANCELLED, finished_at=utcnow()
    )


async def finish_job(
    store: Store, job_id: int, result: InpaintResult, *, nsfw: Sequence[bool | None] | None = None
) -> Job | None:
    """Store the output pictures and mark the job done; ``None`` if it was no longer running.
    ``nsfw``: the safety checker's verdict on each picture (unchecked when not given)."""
    verdicts = list(nsfw) if nsfw is not None else [None] * len(result.images)
    # The engine encodes PNGs lazily; a big photo takes a while, so here, off the loop and the GPU.
    pngs = await asyncio.to_thread(lambda: [output.png for output in result.images])
    async with store.files.lock, store.sessions.begin() as session:
        job = await session.scalar(
            _with_images(select(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING))
        )
        if job is None:
            return None
        outputs = zip(result.images, pngs, verdicts, strict=True)
        for position, (output, png, flagged) in enumerate(outputs):
            picture = await add_image(session, store.files, png)
            job.images.append(
                JobImage(
                    role=ImageRole.OUTPUT,
                    position=position,
                    image=picture,
                    seed=output.seed,
                    nsfw=flagged,
                )
            )
        job.status = JobStatus.DONE
        job.finished_at = utcnow()
        job.model = result.model
        job.mask_source = result.mask_source
        job.run_seconds = result.seconds
        job.timings = result.timings
    return job


async def get_job(store: Store, job_id: int) -> Job | None:
    async with store.sessions() as session:
        return await session.scalar(_with_images(select(Job).where(Job.id == job_id)))


async def live_jobs(store: Store) -> list[Job]:
    """Queued and running jobs in the order to resume them: the interrupted ones first, then by age."""
    async with store.sessions() as session:
        query = select(Job).where(Job.status.in_(LIVE_STATUSES))
        query = query.order_by((Job.status == JobStatus.RUNNING).desc(), Job.id)
        return list(await session.scalars(_with_images(query)))


async def undelivered_jobs(store: Store) -> list[Job]:
    """Finished jobs whose result the bot never confirmed showing (it stopped in between)."""
    async with store.sessions() as session:
        query = select(Job).where(undelivered())
        return list(await session.scalars(_with_images(query.order_by(Job.finished_at, Job.id))))


async def mark_delivered(store: Store, job_id: int) -> None:
    async with store.sessions.begin() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(delivered_at=utcnow()))


async def set_job_message(
    store: Store, job_id: int, *, message_id: int, channel_id: int | None = None
) -> None:
    """Remember the Discord message that shows the job now, so buttons and late results find it;
    every message that ever showed it stays recorded for 🔁 reactions (``job_shown_by``)."""
    values: dict[str, object] = {"message_id": message_id}
    if channel_id is not None:
        values["channel_id"] = channel_id
    async with store.sessions.begin() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(**values))
        await session.execute(
            dialect_insert(session, JobMessage)
            .values(message_id=message_id, job_id=job_id)
            .on_conflict_do_nothing()
        )


async def hide_job(store: Store, job_id: int) -> None:
    """Its result was deleted from Discord (🗑): ``/show`` does not post it again for others."""
    async with store.sessions.begin() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(hidden=True))


async def set_kept(store: Store, job_id: int, kept: bool = True) -> None:
    """A kept job's pictures are never removed by retention."""
    async with store.sessions.begin() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(kept=kept))


async def user_jobs(
    store: Store, user_id: int, *, limit: int = 25, before_id: int | None = None
) -> list[Job]:
    """A user's history, newest first; page with ``before_id``."""
    query = select(Job).where(Job.user_id == user_id)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    async with store.sessions() as session:
        return list(await session.scalars(_with_images(query.order_by(Job.id.desc()).limit(limit))))


async def history_page(store: Store, user_id: int, *, offset: int, limit: int) -> tuple[list[Job], int]:
    """``limit`` of a user's jobs from ``offset``, newest first, and how many they have in all."""
    mine = Job.user_id == user_id
    async with store.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(Job).where(mine))
        query = select(Job).where(mine).order_by(Job.id.desc()).offset(offset).limit(limit)
        return list(await session.scalars(query)), total or 0


async def live_user_jobs(store: Store, user_id: int) -> list[Job]:
    """A user's queued and running jobs, newest first."""
    query = select(Job).where(Job.user_id == user_id, Job.status.in_(LIVE_STATUSES))
    async with store.sessions() as session:
        return list(await session.scalars(query.order_by(Job.id.desc())))


async def job_shown_by(store: Store, message_id: int) -> Job | None:
    """The job this Discord message shows, or showed (recorded by ``set_job_message``)."""
    async with store.sessions() as session:
        job_id = await session.scalar(
            select(JobMessage.job_id).where(JobMessage.message_id == message_id)
        )
    return None if job_id is None else await get_job(store, job_id)
