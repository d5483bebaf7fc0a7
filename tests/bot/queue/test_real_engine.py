"""The queue on the real engine with the tiny pipeline: the loop stays responsive, batching is exact."""

import asyncio
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from bot.config import BotConfig
from bot.queue.base import JobSubmission
from bot.queue.events import DoneEvent, EventStream, ProgressEvent, StartedEvent
from bot.queue.local import LocalJobQueue
from bot.store.database import Store
from engine import masking, safety
from engine.engine import Engine, PreparedJob
from engine.job import InpaintRequest, InpaintResult, Progress
from engine.settings import InpaintSettings
from tests.bot.queue.fakes import StubSafetyChecker, next_event
from tests.pictures import photo, png_bytes, rect_mask

# Generous: the tiny model takes well under a second, but a shared CI machine can be much slower.
REAL_TIMEOUT = 300


def tiny_request(seed: int, **settings: Any) -> InpaintRequest:
    values = {"steps": 8, "resolution": 64, "strength": 1.0, "seed": seed, **settings}
    return InpaintRequest(
        image=png_bytes(photo(96, 64, seed=seed)),
        mask=png_bytes(rect_mask(96, 64, (24, 16, 72, 48))),
        settings=InpaintSettings.parse(**values),
    )


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


async def test_the_event_loop_stays_responsive_while_a_job_runs(
    engine: Engine, store: Store, bot_config: BotConfig
) -> None:
    queue = LocalJobQueue(engine, store, bot_config)
    events = queue.subscribe()
    await queue.start()
    job = await queue.submit(JobSubmission(1, tiny_request(1, steps=60)))
    await next_event(events, StartedEvent, job.job_id, timeout=REAL_TIMEOUT)

    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def probe() -> None:  # how late does a 5 ms sleep wake up?
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    probing = asyncio.create_task(probe())
    await next_event(events, DoneEvent, job.job_id, timeout=REAL_TIMEOUT)
    probing.cancel()
    await queue.close()

    assert len(lags) >= 10, "the job ended too quickly to measure anything"
    p99 = float(np.percentile(lags, 99))
    # The pipeline runs in the worker thread, so the loop only competes for CPU time. A stall would be
    # the whole job (seconds). 100 ms leaves room for a loaded 2-core CI machine.
    assert p99 < 0.1, f"event loop lag p99 {p99 * 1000:.0f} ms while a job runs"


class HoldFirstCall:
    """The real engine, but its first call waits until released, so the next jobs queue up."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.release = threading.Event()
        self.batch_sizes: list[int] = []

    def load(self, model: str | None = None) -> object:
        return self.engine.load(model)

    def prepare(self, request: InpaintRequest) -> PreparedJob:
        return self.engine.prepare(request)

    def run(self, jobs: Sequence[PreparedJob], **options: Any) -> list[InpaintResult]:
        self.batch_sizes.append(len(jobs))
        if len(self.batch_sizes) == 1:
            self.release.wait(timeout=REAL_TIMEOUT)
        return self.engine.run(jobs, **options)


async def held_queue(
    engine: Engine, store: Store, config: BotConfig, *, batch_size: int
) -> tuple[HoldFirstCall, LocalJobQueue[PreparedJob], EventStream]:
    """A started queue whose first job holds the GPU, so the jobs submitted next wait and batch."""
    held = HoldFirstCall(engine)
    queue = LocalJobQueue(held, store, config.model_copy(update={"batch_size": batch_size}))
    events = queue.subscribe()
    await queue.start()
    blocker = await queue.submit(JobSubmission(0, tiny_request(0, steps=2)))
    await next_event(events, StartedEvent, blocker.job_id, timeout=REAL_TIMEOUT)
    return held, queue, events


async def test_batched_results_equal_unbatched_ones(
    engine: Engine, store: Store, bot_config: BotConfig
) -> None:
    held, queue, events = await held_queue(engine, store, bot_config, batch_size=4)
    requests = [
        tiny_request(11, prompt="a red hat"),
        tiny_request(22, prompt="a blue sky", count=2),  # one generator per image: seeds 22 and 23
        tiny_request(33),
    ]
    submitted = [await queue.submit(JobSubmission(user, r)) for user, r in enumerate(requests, 1)]
    held.release.set()
    done = [await next_event(events, DoneEvent, job.job_id, timeout=REAL_TIMEOUT) for job in submitted]
    await queue.close()
    assert held.batch_sizes == [1, 3]

    for request, event in zip(requests, done, strict=True):
        alone = engine.inpaint(request)
        assert event.seeds == [image.seed for image in alone.images]
        for stored, expected in zip(event.images, alone.images, strict=True):
            difference = np.abs(pixels(stored.path.read_bytes()) - pixels(expected.png))
            assert difference.max() <= 1, "batched output differs from the unbatched one"


async def test_each_batched_job_previews_its_own_picture(
    engine: Engine, store: Store, bot_config: BotConfig
) -> None:
    """Two members' jobs in one batch: each sees previews of its own rows, as when run alone."""
    held, queue, events = await held_queue(engine, store, bot_config, batch_size=2)
    dark = tiny_request(11, strength=0.6)
    light = replace(tiny_request(22, strength=0.6), image=png_bytes(Image.new("RGB", (96, 64), "white")))
    submitted = [
        await queue.submit(JobSubmission(user, r, previews=True))
        for user, r in enumerate([dark, light], 1)
    ]
    held.release.set()
    finals = [
        # A preview is made at most every PREVIEW_INTERVAL: the first step always has a new one.
        await next_event(events, ProgressEvent, job.job_id, lambda e: e.step == 1, REAL_TIMEOUT)
        for job in submitted
    ]
    await queue.close()
    assert held.batch_sizes == [1, 2]

    for request, batched in zip([dark, light], finals, strict=True):
        alone: list[Progress] = []
        engine.inpaint(request, on_progress=alone.append, previews=True)
        assert batched.preview is not None and alone[0].preview is not None
        difference = np.abs(preview_pixels(batched.preview) - preview_pixels(alone[0].preview))
        assert difference.max() <= 2, "a batched job's preview is not made from its own picture"


def preview_pixels(preview: Image.Image) -> np.ndarray:
    return np.asarray(preview.convert("RGB")).astype(np.int16)


async def test_prompts_of_different_lengths_give_the_pictures_they_give_alone(
    engine: Engine, store: Store, bot_config: BotConfig
) -> None:
    held, queue, events = await held_queue(engine, store, bot_config, batch_size=4)
    requests = [
        tiny_request(11, prompt="a red hat"),
        tiny_request(22, prompt="a red hat BREAK a blue scarf BREAK a green coat"),
        tiny_request(33, prompt="(blue:1.3) scarf"),
    ]
    submitted = [await queue.submit(JobSubmission(user, r)) for user, r in enumerate(requests, 1)]
    held.release.set()
    ids = {job.job_id for job in submitted}
    finished: dict[int, DoneEvent] = {}
    while len(finished) < len(ids):  # the long prompt's job ends last
        event = await next_event(
            events, DoneEvent, where=lambda e: e.job_id in ids, timeout=REAL_TIMEOUT
        )
        finished[event.job_id] = event
    done = [finished[job.job_id] for job in submitted]
    await queue.close()
    assert held.batch_sizes == [1, 2, 1]  # the two one-chunk prompts together, the long one alone

    for request, event in zip(requests, done, strict=True):
        alone = engine.inpaint(request)
        difference = np.abs(pixels(event.images[0].path.read_bytes()) - pixels(alone.images[0].png))
        assert difference.max() <= 1, "a job's picture changed with its batch mates' prompts"


@pytest.mark.parametrize("work", ["encode", "decode"])
async def test_a_batch_of_four_out_of_memory_in_the_vae_runs_again_in_halves(
    engine: Engine, store: Store, bot_config: BotConfig, monkeypatch: pytest.MonkeyPatch, work: str
) -> None:
    """The VAE's encode and decode are inside what the engine catches: a batch of 4 whose VAE call
    runs out of memory runs again as 2 + 2, and every job ends with the picture it gives alone."""
    method = getattr(AutoencoderKL, work)

    def out_of_memory_above_two(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return method(self, x, *args, **kwargs)

    held, queue, events = await held_queue(engine, store, bot_config, batch_size=4)
    requests = [tiny_request(seed, strength=0.8) for seed in (11, 22, 33, 44)]
    submitted = [await queue.submit(JobSubmission(user, r)) for user, r in enumerate(requests, 1)]
    monkeypatch.setattr(AutoencoderKL, work, out_of_memory_above_two)
    held.release.set()
    done = [await next_event(events, DoneEvent, job.job_id, timeout=REAL_TIMEOUT) for job in submitted]
    await queue.close()
    monkeypatch.undo()
    assert held.batch_sizes == [1, 4, 2, 2]
    for request, event in zip(requests, done, strict=True):
        alone = engine.inpaint(request)
        difference = np.abs(pixels(event.images[0].path.read_bytes()) - pixels(alone.images[0].png))
        assert difference.max() <= 1


async def test_composites_and_the_checkers_views_are_made_off_the_gpu_thread(
    engine: Engine, store: Store, bot_config: BotConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU thread only denoises and runs the checker's model; pasting a crop into the full-size
    picture and shrinking it for the checker run beside it."""
    threads: dict[str, list[str]] = {"composite": [], "view": []}

    def recorded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            threads[name].append(threading.current_thread().name)
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(masking, "composite", recorded("composite", masking.composite))
    monkeypatch.setattr(safety, "_padded_square", recorded("view", safety._padded_square))
    checker = StubSafetyChecker(flagged=lambda image: False)
    queue = LocalJobQueue(engine, store, bot_config, safety=checker)
    events = queue.subscribe()
    await queue.start()
    job = await queue.submit(JobSubmission(1, tiny_request(5, count=2)))
    await next_event(events, DoneEvent, job.job_id, timeout=REAL_TIMEOUT)
    await queue.close()
    assert len(threads["composite"]) == 2 and len(threads["view"]) >= 2  # a view of each at least
    assert not [name for names in threads.values() for name in names if name.startswith("inpaint-gpu")]
    assert [thread.startswith("inpaint-gpu") for _, thread in checker.checks] == [True]
