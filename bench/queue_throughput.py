"""What the job queue costs in throughput, and what batching buys.

1. N jobs submitted to the queue (real SQLite store, every result written to disk) against the same N
   engine calls back to back. Target: ratio >= 0.97 -- the queue adds no idle time between jobs. The
   GPU's idle time between jobs in the queue is printed too.
2. The same N compatible jobs through the queue with batching on (batch size 4) against off (1).

Runs offline on a tiny random-weight model (``tests.support.tiny_models``) at SD 1.5's size (512 px, 25 steps);
the machine may be shared and noisy, so the variants are interleaved round by round and the medians
compared. Read the ratios, not the seconds. Smaller ``--resolution`` makes jobs so short (0.1 s) that
the store's fixed CPU cost per job (PNG encoding, two SQLite commits: about 10 ms) starts to show.

torch runs with one OpenMP thread here (override with ``OMP_NUM_THREADS``): the baseline computes in
the main thread and the queue in its worker thread, and two OpenMP teams in one process make CPU
inference several times slower. The bot computes in the worker thread only.

    python -m bench.queue_throughput [--jobs 12] [--rounds 3] [--steps 25] [--resolution 512]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image

from bot.config import BotConfig
from bot.queue.base import JobQueue, JobSubmission
from bot.queue.events import DoneEvent
from bot.queue.local import LocalJobQueue
from bot.store.database import open_store
from engine.config import EngineConfig
from engine.engine import Engine, PreparedJob
from engine.job import InpaintRequest, InpaintResult
from engine.settings import InpaintSettings
from tests.support.tiny_models import build_tiny_sd


class TimedEngine:
    """The engine, remembering when each pipeline call started and ended."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[tuple[float, float]] = []

    def load(self, model: str | None = None) -> object:
        return self.engine.load(model)

    def prepare(self, request: InpaintRequest) -> PreparedJob:
        return self.engine.prepare(request)

    def run(self, jobs: Sequence[PreparedJob], **options: Any) -> list[InpaintResult]:
        started = time.perf_counter()
        try:
            return self.engine.run(jobs, **options)
        finally:
            self.calls.append((started, time.perf_counter()))

    def idle_between_calls(self) -> float:
        return sum(later[0] - earlier[1] for earlier, later in itertools.pairwise(self.calls))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def requests(count: int, steps: int, resolution: int) -> list[InpaintRequest]:
    """Compatible jobs (same size and sampling settings), each with its own picture and seed."""
    rng = np.random.default_rng(0)
    mask = Image.new("L", (192, 128), 0)
    mask.paste(255, (48, 32, 144, 96))
    settings = InpaintSettings.parse(steps=steps, resolution=resolution, strength=1.0)
    return [
        InpaintRequest(
            image=png(Image.fromarray(rng.integers(0, 255, (128, 192, 3), dtype=np.uint8))),
            mask=png(mask),
            settings=settings.model_copy(update={"seed": seed}),
        )
        for seed in range(count)
    ]


def back_to_back(engine: TimedEngine, jobs: list[InpaintRequest]) -> float:
    started = time.perf_counter()
    for request in jobs:
        engine.run([engine.prepare(request)])
    return time.perf_counter() - started


async def through_queue(
    engine: TimedEngine, jobs: list[InpaintRequest], data_dir: Path, batch_size: int
) -> float:
    """Seconds from the first submission to the last stored result, on a fresh store."""
    config = BotConfig(
        data_dir=data_dir, batch_size=batch_size, queue_max_per_user=len(jobs), _env_file=None
    )
    store = await open_store(config)
    queue = LocalJobQueue(engine, store, config)
    seconds = await timed(queue, jobs, before=engine.calls.clear)
    await store.close()
    return seconds


async def timed(
    queue: JobQueue, jobs: Sequence[InpaintRequest], before: Callable[[], object] = lambda: None
) -> float:
    """Seconds from the first submission to the last stored result; ``before`` runs once the queue
    has started (its model loaded), just before the clock does."""
    events = queue.subscribe()
    await queue.start()
    before()
    started = time.perf_counter()
    for request in jobs:
        await queue.submit(JobSubmission(user_id=1, request=request))
    done = 0
    async for event in events:
        done += isinstance(event, DoneEvent)
        if done == len(jobs):
            break
    seconds = time.perf_counter() - started
    await queue.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--resolution", type=int, default=512)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_sd(root / "tiny-sd")
        engine = TimedEngine(
            Engine(EngineConfig(model=str(model), device="cpu", data_dir=root, _env_file=None))
        )
        jobs = requests(args.jobs, args.steps, args.resolution)
        back_to_back(engine, jobs[:2])  # warm up: load the model, first-call allocations

        times: dict[str, list[float]] = {"engine": [], "queue": [], "batched": []}
        idle: list[float] = []
        for round_ in range(args.rounds):
            times["engine"].append(back_to_back(engine, jobs))
            times["queue"].append(asyncio.run(through_queue(engine, jobs, root / f"q{round_}", 1)))
            idle.append(engine.idle_between_calls())
            times["batched"].append(asyncio.run(through_queue(engine, jobs, root / f"b{round_}", 4)))

    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"{args.jobs} jobs, {args.steps} steps at {args.resolution} px, median of {args.rounds} rounds"
    )
    for name, label in [
        ("engine", "engine calls back to back"),
        ("queue", "through the queue, batch size 1"),
        ("batched", "through the queue, batch size 4"),
    ]:
        print(f"  {label:34} {median[name]:7.2f} s  {args.jobs / median[name]:6.2f} jobs/s")
    gap = statistics.median(idle) / max(args.jobs - 1, 1) * 1000
    print(
        f"queue throughput / back-to-back:     {median['engine'] / median['queue']:.3f}  (target >= 0.97)"
    )
    print(f"engine idle between queued jobs:     {gap:.1f} ms per job")
    print(f"batching on / off throughput:        {median['queue'] / median['batched']:.3f}")


if __name__ == "__main__":
    main()
