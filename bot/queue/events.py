"""What happens to a job, as the queue reports it, and the final event a stored job row stands for.

Every ``JobQueue`` backend reports through these; the bot reads them and never the backend itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, Job, JobStatus
from engine.errors import EngineError
from engine.job import MaskSource
from engine.settings import InpaintSettings

log = logging.getLogger(__name__)

UNEXPECTED_FAILURE = "Something went wrong on the bot's side while running this job. Try again later."
INPUT_GONE = "The pictures of this job are no longer stored, so it cannot run again."
STUCK = "The job got stuck on the bot's side and was stopped. Try again later."
POISONED = (
    "The bot went down {attempts} times while running this job, so it is not run again. "
    "Try other settings or another picture."
)


@dataclass(frozen=True)
class OutputImage:
    """A stored result picture; upload it from ``path``."""

    path: Path
    sha256: str
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class JobEvent:
    """Something happened to a job. Per job the order is: queued (again whenever its position
    changes), started, progress per step, then exactly one of done, failed or cancelled. A job
    interrupted by a restart starts again and may repeat that sequence from queued."""

    job_id: int
    user_id: int


@dataclass(frozen=True)
class QueuedEvent(JobEvent):
    """Sent on submission and whenever the position changes. ``eta``: seconds until the result, or
    ``None`` until the queue has timed a similar job (same model and size)."""

    position: int  # 1 = next to start
    eta: float | None


@dataclass(frozen=True)
class StartedEvent(JobEvent):
    eta: float | None  # seconds the run should take


@dataclass(frozen=True)
class ProgressEvent(JobEvent):
    step: int
    total: int
    preview: Image.Image | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DoneEvent(JobEvent):
    """The result is stored (files and rows) before this is sent."""

    images: tuple[OutputImage, ...]
    settings: InpaintSettings
    model: str
    mask_source: MaskSource | None
    seconds: float
    timings: dict[str, float]

    @property
    def seeds(self) -> list[int]:
        return [image.seed for image in self.images]


@dataclass(frozen=True)
class FailedEvent(JobEvent):
    message: str  # written for the user


@dataclass(frozen=True)
class CancelledEvent(JobEvent):
    pass


class EventStream:
    """One subscriber's events, in the order they happened; iterate with ``async for``.

    Unbounded, so the queue never waits for a slow subscriber: keep reading (coalesce progress events
    if Discord's rate limits call for it) or unsubscribe.
    """

    def __init__(self) -> None:
        self._events: asyncio.Queue[JobEvent | None] = asyncio.Queue()

    def put(self, event: JobEvent | None) -> None:
        """``None`` ends the stream."""
        self._events.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self

    async def __anext__(self) -> JobEvent:
        event = await self._events.get()
        if event is None:
            raise StopAsyncIteration
        return event


def failure_message(exc: BaseException) -> str:
    """What the user reads: the engine's own message, or a generic one (the details go to the log)."""
    if isinstance(exc, EngineError):
        return exc.message
    if isinstance(exc, (OSError, KeyError)):
        log.warning("job input pictures missing", exc_info=exc)
        return INPUT_GONE
    log.error("job failed", exc_info=exc)
    return UNEXPECTED_FAILURE


def final_event(store: Store, row: Job) -> JobEvent:
    """The event for a finished job row, fresh, found undelivered after a restart, or shown again."""
    if row.status is not JobStatus.DONE:
        return FailedEvent(row.id, row.user_id, row.error or UNEXPECTED_FAILURE)
    outputs = tuple(
        OutputImage(
            path=jobs.image_path(store, link.image),
            sha256=link.image.sha256,
            seed=link.seed or 0,
            width=link.image.width,
            height=link.image.height,
        )
        for link in row.images_with(ImageRole.OUTPUT)
    )
    return DoneEvent(
        row.id,
        row.user_id,
        images=outputs,
        settings=row.inpaint_settings(),
        model=row.model or "",
        mask_source=row.mask_source,
        seconds=row.run_seconds or 0.0,
        timings=row.timings or {},
    )
