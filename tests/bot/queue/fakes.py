"""A fake engine with the real one's shape (prepare, then run a batch step by step), and event helpers.

It paints nothing, in microseconds, so queue behaviour (order, caps, cancel, failures, recovery) is
tested without torch. What it records lets tests check which jobs ran together, and how often.
"""

from __future__ import annotations

import asyncio
import gc
import io
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from PIL import Image

from bot.queue.base import JobQueue, JobSubmission
from bot.queue.events import EventStream, JobEvent, QueuedEvent, StartedEvent
from engine.errors import ImageError, JobCancelled
from engine.job import GeneratedImage, InpaintRequest, InpaintResult, MaskSource, Progress
from engine.settings import InpaintSettings

NOT_AN_IMAGE = b"not an image"


def tiny_picture(seed: int = 0) -> Image.Image:
    """8x8 pixels whose colour encodes the seed, so tests can tell outputs apart."""
    return Image.new("RGB", (8, 8), (seed % 256, seed // 256 % 256, 7))


def tiny_png(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    tiny_picture(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def request(prompt: str = "", **settings: object) -> InpaintRequest:
    """A request whose prompt names the job in the fake engine's records."""
    return InpaintRequest(
        tiny_png(), InpaintSettings.parse(**{"prompt": prompt, "steps": 4, **settings}), tiny_png(1)
    )


@dataclass(frozen=True)
class FakePrepared:
    settings: InpaintSettings
    model: str = "fake-model"
    mask_source: MaskSource = MaskSource.UPLOADED
    processing_size: tuple[int, int] = (64, 64)
    found_mask: bytes | None = None

    @property
    def total_steps(self) -> int:
        return self.settings.steps

    @property
    def batch_key(self) -> Hashable | None:
        if self.settings.auto_mask is not None:
            return None
        s = self.settings
        return (self.model, self.processing_size, s.steps, s.strength, s.guidance, s.sampler)


@dataclass
class FakeEngine:
    """``gate`` holds every run at its first step while cleared; ``errors`` fail runs by prompt."""

    gate: threading.Event = field(default_factory=threading.Event)
    errors: dict[str, Exception] = field(default_factory=dict)
    step_seconds: float = 0.0
    calls: list[list[str]] = field(default_factory=list)  # the prompts of each run, in order
    steps_after_cancel: int = 0
    prepared: list[weakref.ref[FakePrepared]] = field(default_factory=list)
    on_run: Callable[[list[str]], None] | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    def load(self, model: str | None = None) -> None:
        pass

    def prepare(self, request: InpaintRequest) -> FakePrepared:
        if request.image == NOT_AN_IMAGE:
            raise ImageError("That file is not a picture.")
        settings = request.settings.with_seed()
        prepared = FakePrepared(settings, model=settings.model or FakePrepared.model)
        self.prepared.append(weakref.ref(prepared))
        return prepared

    def alive(self) -> int:
        """Prepared jobs still in memory somewhere."""
        gc.collect()
        return sum(ref() is not None for ref in self.prepared)

    def run(
        self,
        jobs: Sequence[FakePrepared],
        *,
        on_progress: Sequence[Callable[[Progress], None] | None] | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
        preview_interval: float = 0.0,
    ) -> list[InpaintResult]:
        prompts = [job.settings.prompt for job in jobs]
        self.calls.append(prompts)
        if self.on_run is not None:
            self.on_run(prompts)
        total = jobs[0].total_steps
        stop = cancel or threading.Event()
        for step in range(1, total + 1):
            while not self.gate.wait(0.005) and not stop.is_set():
                pass  # held, like a long GPU step that still ends when the job is cancelled
            if stop.is_set():
                raise JobCancelled()
            time.sleep(self.step_seconds)
            for callback in on_progress or []:
                if callback is not None:
                    callback(Progress(step, total, Image.new("RGB", (2, 2)) if previews else None))
            if stop.is_set():
                self.steps_after_cancel += 1
        for prompt in prompts:
            if prompt in self.errors:
                raise self.errors[prompt]
        return [
            InpaintResult(
                images=[
                    GeneratedImage(tiny_picture(seed), seed, "fake") for seed in job.settings.seeds()
                ],
                settings=job.settings,
                mask_source=job.mask_source,
                model=job.model,
                seconds=0.01,
                timings={"denoise": 0.01},
            )
            for job in jobs
        ]


def flag_everything(image: Image.Image) -> bool:
    return True


@dataclass
class StubSafetyChecker:
    """A ``SafetyChecker`` that flags the pictures ``flagged`` picks; with ``error`` every check fails
    (loading works: a checker that cannot load stops the start). Records each check's number of
    pictures and the thread it ran in."""

    flagged: Callable[[Image.Image], bool] = flag_everything
    error: Exception | None = None
    checks: list[tuple[int, str]] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)  # the thread of each load

    def load(self) -> None:
        self.loads.append(threading.current_thread().name)

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        self.checks.append((len(images), threading.current_thread().name))
        if self.error is not None:
            raise self.error
        return [self.flagged(image) for image in images]


E = TypeVar("E", bound=JobEvent)


async def next_event(
    stream: EventStream,
    kind: type[E],
    job_id: int | None = None,
    where: Callable[[E], bool] = bool,
    timeout: float = 10,
) -> E:
    """The next event of ``kind`` (for ``job_id``, matching ``where``), skipping others; fails instead
    of hanging."""
    async with asyncio.timeout(timeout):
        async for event in stream:
            if isinstance(event, kind) and job_id in (None, event.job_id) and where(event):
                return event
    raise AssertionError("the event stream ended")


async def hold_worker(
    queue: JobQueue, events: EventStream, engine: FakeEngine, submission: JobSubmission
) -> QueuedEvent:
    """Close the engine's gate and start ``submission``: jobs submitted next wait behind it."""
    engine.gate.clear()
    running = await queue.submit(submission)
    await next_event(events, StartedEvent, running.job_id)
    return running


async def events_until(stream: EventStream, done: Callable[[list[JobEvent]], bool]) -> list[JobEvent]:
    seen: list[JobEvent] = []
    async with asyncio.timeout(10):
        async for event in stream:
            seen.append(event)
            if done(seen):
                return seen
    raise AssertionError("the event stream ended")
