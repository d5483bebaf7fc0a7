"""The job queue as the bot sees it: submit, cancel, and a stream of events per job.

This is the seam for scaling out: ``LocalJobQueue`` runs jobs on this machine's GPU; a later backend can
hand them to GPU workers elsewhere (e.g. through Redis Streams) behind the same interface, and the bot
does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image

from engine.job import InpaintRequest, MaskSource
from engine.settings import InpaintSettings


@dataclass(frozen=True)
class JobSubmission:
    """A job as the bot hands it over. Identities are plain Discord ids; the queue never calls Discord.

    ``max_pending`` is the guild's own per-user limit, applied on top of the global one.
    """

    user_id: int
    request: InpaintRequest
    guild_id: int | None = None
    channel_id: int | None = None
    parent_id: int | None = None
    max_pending: int | None = None
    previews: bool = False


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


@dataclass(frozen=True)
class QueueEntry:
    """A live job in a ``QueueSnapshot``. ``eta``: seconds until its result, ``None`` while unknown."""

    job_id: int
    user_id: int
    eta: float | None


@dataclass(frozen=True)
class QueueSnapshot:
    """The live jobs at one moment: those running, and those waiting in the order they will start."""

    running: tuple[QueueEntry, ...]
    waiting: tuple[QueueEntry, ...]


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


class JobQueue(Protocol):
    """What the bot needs from a queue.

    Subscribe before ``start``: jobs recovered after a restart report through the same events.
    """

    def subscribe(self) -> EventStream: ...

    def unsubscribe(self, stream: EventStream) -> None: ...

    async def start(self) -> None:
        """Resume the jobs that were queued or running when the process stopped, then take new ones."""

    async def submit(self, submission: JobSubmission) -> QueuedEvent:
        """Validate, store and enqueue; the job is durable when this returns.

        Raises ``EngineError`` for bad input and ``QueueFullError`` naming the cap that is reached.
        """
        ...

    async def cancel(self, job_id: int) -> bool:
        """Take a queued job out, or stop a running one within a step; False if it is not live."""
        ...

    async def snapshot(self) -> QueueSnapshot:
        """What is running and waiting now, for ``/queue``; changes nothing."""
        ...

    async def acknowledge(self, job_id: int) -> None:
        """The bot has shown the job's final result; it is not sent again after a restart."""

    async def close(self) -> None:
        """Stop taking jobs; finish the running job or put it back to run after the next start."""
