"""Waiting jobs as the queue holds them, and which of them run together as one engine call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

from bot.queue.eta import EtaEstimator
from bot.store.models import ImageRole, Job
from engine.job import MaskSource
from engine.settings import InpaintSettings


class PreparedInput(Protocol):
    """What the queue reads from the engine's prepared job (``engine.engine.PreparedJob``)."""

    @property
    def settings(self) -> InpaintSettings: ...
    @property
    def model(self) -> str: ...
    @property
    def batch_key(self) -> Hashable | None: ...
    @property
    def total_steps(self) -> int: ...
    @property
    def processing_size(self) -> tuple[int, int]: ...
    @property
    def mask_source(self) -> MaskSource: ...
    @property
    def found_mask(self) -> bytes | None: ...


P = TypeVar("P", bound=PreparedInput)


class Stop(Enum):
    """Why a running batch was told to stop, when it was not its owner's cancel."""

    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


@dataclass(eq=False)
class QueuedJob(Generic[P]):
    """A waiting or running job: what ordering and batching need, and its inputs in the store.

    Only the jobs planned to run next hold their prepared engine input (a prepared 12-megapixel photo
    takes about 50 MB); the others are prepared again from the stored pictures when their turn nears.
    """

    id: int
    user_id: int
    settings: InpaintSettings  # with the concrete seed, so preparing again gives the same job
    inputs: dict[ImageRole, str]  # the stored input pictures by role (input_hashes)
    model: str
    processing_size: tuple[int, int]
    total_steps: int
    key: Hashable | None
    previews: bool = False
    guild_id: int | None = None  # counted against the server's cap
    prepared: asyncio.Future[P] | None = None
    half: int | None = None  # runs only with the jobs of this half of a batch that ran out of memory
    cancelled: bool = False
    announced_position: int | None = None

    @classmethod
    def admit(cls, row: Job, prepared: P, previews: bool = False) -> QueuedJob[P]:
        return cls(
            id=row.id,
            user_id=row.user_id,
            guild_id=row.guild_id,
            settings=prepared.settings,
            inputs=input_hashes(row),
            model=prepared.model,
            processing_size=prepared.processing_size,
            total_steps=prepared.total_steps,
            key=prepared.batch_key,
            previews=previews,
        )

    @property
    def images(self) -> int:
        return self.settings.count

    @property
    def batch_key(self) -> Hashable | None:
        return self.key if self.key is None or self.half is None else (self.key, self.half)


@dataclass(eq=False)
class Batch(Generic[P]):
    """Jobs running as one engine call."""

    jobs: list[QueuedJob[P]]
    estimate: float | None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    step: int = 0
    stop_reason: Stop | None = None

    def stop(self, reason: Stop) -> None:
        self.stop_reason = self.stop_reason or reason
        self.cancel.set()

    def remaining(self) -> float | None:
        elapsed = time.monotonic() - self.started
        if self.step:
            return elapsed / self.step * max(self.jobs[0].total_steps - self.step, 0)
        return None if self.estimate is None else max(self.estimate - elapsed, 0.0)


def plan(waiting: Iterable[QueuedJob[P]], batch_size: int) -> list[QueuedJob[P]]:
    """The jobs that run next: the first in fair order plus, in fair order, waiting jobs that can share
    its engine call, up to ``batch_size`` in images."""
    order = iter(waiting)
    first = next(order, None)
    if first is None:
        return []
    members, images = [first], first.images
    for job in order if first.batch_key is not None else ():
        if job.batch_key == first.batch_key and images + job.images <= batch_size:
            members.append(job)
            images += job.images
    return members


def halves(jobs: Sequence[QueuedJob[P]]) -> tuple[list[QueuedJob[P]], list[QueuedJob[P]]]:
    """Two or more jobs split in order into two parts of about half the images each, both non-empty:
    what runs again after the batch ran out of memory."""
    total, taken = sum(job.images for job in jobs), 0
    for index, job in enumerate(jobs[:-1], 1):
        taken += job.images
        if 2 * taken >= total:
            return list(jobs[:index]), list(jobs[index:])
    return list(jobs[:-1]), list(jobs[-1:])


def estimate(eta: EtaEstimator, members: Sequence[QueuedJob[P]]) -> float | None:
    """Seconds the engine call for ``members`` should take, once a similar one was timed."""
    first = members[0]
    return eta.estimate(
        first.model,
        first.processing_size,
        steps=first.total_steps,
        images=sum(job.images for job in members),
    )


def input_hashes(row: Job) -> dict[ImageRole, str]:
    return {link.role: link.image.sha256 for link in row.images if link.role is not ImageRole.OUTPUT}
