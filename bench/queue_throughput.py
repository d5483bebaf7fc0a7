"""What the job queue costs in throughput, and what batching buys.

1. N jobs submitted to the queue (real SQLite store, results written to disk) against the same N engine
   calls back to back in one thread. Target: ratio >= 0.97 -- the queue adds no idle time between jobs.
2. The same N compatible jobs through the queue with batching on (batch size 4) against off (1).

Runs offline on a tiny random-weight model (``engine.testing``); the machine may be shared and noisy, so
the variants are interleaved round by round and the medians compared. Read the ratios, not the seconds.

    python -m bench.queue_throughput [--jobs 16] [--rounds 3] [--steps 20] [--resolution 128]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
from PIL import Image

from bot.config import BotConfig
from bot.queue.base import DoneEvent, JobSubmission
from bot.queue.local import LocalJobQueue
from bot.store.database import open_store
from engine.config import EngineConfig
from engine.engine import Engine
from engine.job import InpaintRequest
from engine.settings import InpaintSettings
from engine.testing import build_tiny_sd


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


def back_to_back(engine: Engine, jobs: list[InpaintRequest]) -> float:
    started = time.perf_counter()
    for request in jobs:
        engine.inpaint(request)
    return time.perf_counter() - started


async def through_queue(
    engine: Engine, jobs: list[InpaintRequest], data_dir: Path, batch_size: int
) -> float:
    """Seconds from the first submission to the last stored result, on a fresh store."""
    config = BotConfig(
        data_dir=data_dir, batch_size=batch_size, queue_max_per_user=len(jobs), _env_file=None
    )
    store = await open_store(config)
    queue = LocalJobQueue(engine, store, config)
    events = queue.subscribe()
    await queue.start()
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
    await store.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_sd(root / "tiny-sd")
        engine = Engine(
            EngineConfig(model=str(model), device="cpu", data_dir=root / "data", _env_file=None)
        )
        jobs = requests(args.jobs, args.steps, args.resolution)
        back_to_back(engine, jobs[:2])  # warm up: load the model, first-call allocations

        times: dict[str, list[float]] = {"engine": [], "queue": [], "batched": []}
        for round_ in range(args.rounds):
            times["engine"].append(back_to_back(engine, jobs))
            times["queue"].append(asyncio.run(through_queue(engine, jobs, root / f"q{round_}", 1)))
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
    print(
        f"queue throughput / back-to-back:     {median['engine'] / median['queue']:.3f}  (target >= 0.97)"
    )
    print(f"batching on / off throughput:        {median['queue'] / median['batched']:.3f}")


if __name__ == "__main__":
    main()
