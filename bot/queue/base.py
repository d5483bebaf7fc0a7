"""The job queue as the bot sees it: submit, cancel, and a stream of events per job.

This is the seam for scaling out: ``LocalJobQueue`` runs jobs on this machine's GPU, ``RemoteJobQueue``
hands them to GPU workers elsewhere through Redis Streams, both behind this interface (and both built on
``bot.queue.backend``), and the bot does not change. The events it reports are in ``bot.queue.events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.queue.events import EventStream, QueuedEvent
from engine.job import InpaintRequest
from engine.mask_preview import MaskPreview


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
class QueueEntry:
    """A live job in a ``QueueSnapshot``. ``eta``: seconds until its result, ``None`` while unknown."""

    job_id: int
    user_id: int
    eta: float | None


@dataclass(frozen=True)
class WorkerStatus:
    """A connected GPU worker in a ``QueueSnapshot``: its slots, how many are taken, its models."""

    name: str
    slots: int  # 0 while its GPU hangs (``bot.worker``): it takes no job until the GPU is back
    busy: int
    models: tuple[str, ...]

    def __str__(self) -> str:
        """How ``/queue`` shows it to members."""
        if not self.slots:
            return f"{self.name} (its GPU is not responding; no jobs go there)"
        return f"{self.name} ({self.busy}/{self.slots} busy)"


@dataclass(frozen=True)
class QueueSnapshot:
    """The live jobs at one moment: those running, and those waiting in the order they will start;
    with GPU workers elsewhere (``bot.queue.remote``), the workers connected."""

    running: tuple[QueueEntry, ...]
    waiting: tuple[QueueEntry, ...]
    workers: tuple[WorkerStatus, ...] = ()


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

    async def mask_preview(self, request: InpaintRequest) -> MaskPreview:
        """The mask ``request`` would repaint, over its picture: CPU work that waits for no GPU job.

        Raises ``EngineError`` for bad input, as ``submit`` would.
        """
        ...

    async def select_object(self, image: bytes, point: tuple[float, float]) -> bytes:
        """The mask (PNG) of the thing at ``point`` in ``image``, for the painter's Select tool:
        like ``mask_preview``, CPU work beside the GPU. Raises ``EngineError`` when there is none."""
        ...

    async def check_room(self, user_id: int, guild_id: int | None, max_pending: int | None) -> None:
        """Raise ``QueueFullError`` when ``submit`` would refuse such a job now for a cap: asked
        before the pictures are downloaded, so a full queue costs no download (``submit`` checks
        again)."""

    async def cancel(self, job_id: int) -> bool:
        """Take a queued job out, or stop a running one within a step; False if it is not live."""
        ...

    async def snapshot(self) -> QueueSnapshot:
        """What is running and waiting now, for ``/queue``; changes nothing."""
        ...

    def stuck(self) -> str | None:
        """Why the queue cannot run jobs (its GPU hangs on a job), or ``None``: the health check."""
        ...

    async def acknowledge(self, job_id: int) -> None:
        """The bot has shown the job's final result; it is not sent again after a restart."""

    async def close(self) -> None:
        """Stop taking jobs; finish the running job or put it back to run after the next start."""
