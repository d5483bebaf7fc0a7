"""Retention: delete old picture files by age and by disk budget, least recently used first.

Rows stay (history, seeds and settings are kept forever); only the files go and ``purged_at`` records
when. Pictures a queued or running job needs, those of results not shown yet (they are posted again
after a restart), and those of kept jobs are never touched. The whole pass holds the files lock, so
no job can start referencing a picture while it is being removed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from bot.config import BotConfig
from bot.store.database import Store
from bot.store.models import LIVE_STATUSES, Image, Job, JobImage, undelivered, utcnow

log = logging.getLogger(__name__)

BYTES_PER_GB = 1024**3
# Rows per UPDATE: SQLite refuses statements with more bound variables than its build allows (999
# before 3.32), and one pass may purge many thousands of pictures.
CHUNK = 500


@dataclass(frozen=True)
class RetentionPolicy:
    max_age: timedelta | None = None
    max_bytes: int | None = None

    @classmethod
    def from_config(cls, config: BotConfig) -> RetentionPolicy:
        return cls(
            max_age=timedelta(days=config.retention_days) if config.retention_days else None,
            max_bytes=int(config.retention_max_gb * BYTES_PER_GB) if config.retention_max_gb else None,
        )


@dataclass(frozen=True)
class CleanupReport:
    purged: int
    freed_bytes: int
    stray_files: int


async def clean_up(
    store: Store, policy: RetentionPolicy, *, now: datetime | None = None
) -> CleanupReport:
    """One retention pass; the bot runs it at start-up and then periodically."""
    now = now or utcnow()
    async with store.files.lock:
        async with store.sessions.begin() as session:
            needed = (
                select(JobImage.image_id)
                .join(Job)
                .where(or_(Job.status.in_(LIVE_STATUSES), undelivered(), Job.kept.is_(True)))
            )
            stored = (
                (await session.execute(select(Image).where(Image.purged_at.is_(None)))).scalars().all()
            )
            protected = set(await session.scalars(needed))
            victims = _choose(
                [image for image in stored if image.id not in protected],
                total=sum(image.size for image in stored),
                policy=policy,
                now=now,
            )
            for start in range(0, len(victims), CHUNK):
                chunk = [image.id for image in victims[start : start + CHUNK]]
                await session.execute(update(Image).where(Image.id.in_(chunk)).values(purged_at=now))
        known = {image.sha256 for image in stored} - {image.sha256 for image in victims}
        strays = await asyncio.to_thread(
            _delete_files, store, [image.sha256 for image in victims], known
        )
    report = CleanupReport(len(victims), sum(image.size for image in victims), strays)
    if report.purged or report.stray_files:
        log.info("retention: %s", report)
    return report


def _choose(
    candidates: list[Image], *, total: int, policy: RetentionPolicy, now: datetime
) -> list[Image]:
    """Everything older than the age limit, then the least recently used until the budget holds."""
    victims = []
    for image in sorted(candidates, key=lambda image: (image.last_used_at, image.id)):
        too_old = policy.max_age is not None and image.last_used_at < now - policy.max_age
        over_budget = policy.max_bytes is not None and total > policy.max_bytes
        if not (too_old or over_budget):
            break
        victims.append(image)
        total -= image.size
    return victims


def _delete_files(store: Store, victims: list[str], known: set[str]) -> int:
    """Delete the purged files, then any file no row names (a crash between file and commit)."""
    for sha256 in victims:
        store.files.delete(sha256)
    strays = list(store.files.stray_files(known))
    for path in strays:
        path.unlink(missing_ok=True)
    return len(strays)
