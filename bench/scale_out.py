"""What GPU workers through Redis buy and cost.

1. Throughput with two worker processes against one (``inpaintbot worker``, one torch thread each, a
   real ``redis-server``): N jobs submitted at once, seconds until the last result is stored. Target:
   ratio >= 1.8. Needs two idle cores: on a shared machine the ratio says more about the neighbours.
2. The Redis mode's overhead per job against the local queue: the same N jobs through
   ``LocalJobQueue`` and through ``RemoteJobQueue`` with the bot's own worker in process (same engine,
   same thread), so the difference is the dispatch, the pictures' round trip through Redis and the
   reports; in milliseconds per job.

Tiny random-weight model (``tests.support.tiny_models``), 25 steps at 512 px by default, like
``bench.queue_throughput`` (whose jobs these are); variants interleaved round by round, medians compared.

    python -m bench.scale_out [--jobs 12] [--rounds 2] [--steps 25] [--resolution 512]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import redis
from pydantic import SecretStr
from redis.asyncio import Redis

from bench.queue_throughput import requests, timed
from bot.config import BotConfig
from bot.queue.local import LocalJobQueue
from bot.queue.remote import RemoteJobQueue
from bot.queue.streams import Keys
from bot.store.database import open_store
from bot.worker import Worker
from engine.config import EngineConfig
from engine.engine import Engine
from engine.job import InpaintRequest
from tests.support.servers import redis_server
from tests.support.tiny_models import build_tiny_sd

ROOT = Path(__file__).resolve().parents[1]


def config_for(data_dir: Path, jobs: int, model: Path, url: str | None, prefix: str) -> BotConfig:
    return BotConfig(
        data_dir=data_dir,
        model=str(model),
        device="cpu",
        batch_size=1,
        queue_max_per_user=jobs,
        safety_checker=None,
        redis_url=SecretStr(url) if url else None,
        redis_prefix=prefix,
        worker_name="bot",
        _env_file=None,
    )


async def local(engine: Engine, jobs: list[InpaintRequest], data_dir: Path, model: Path) -> float:
    config = config_for(data_dir, len(jobs), model, None, "unused")
    store = await open_store(config)
    try:
        return await timed(LocalJobQueue(engine, store, config), jobs)
    finally:
        await store.close()


async def remote(
    engine: Engine,
    jobs: list[InpaintRequest],
    data_dir: Path,
    model: Path,
    url: str,
    prefix: str,
    *,
    own_worker: bool,
) -> float:
    """Through Redis: with ``own_worker`` the bot's own worker runs the jobs on ``engine``, else the
    worker processes of ``prefix`` (already announced) do."""
    config = config_for(data_dir, len(jobs), model, url, prefix)
    store = await open_store(config)
    client = Redis.from_url(url)
    own = Worker(engine, config, client) if own_worker else None
    try:
        queue: RemoteJobQueue[Any] = RemoteJobQueue(engine, store, config, client, local=own)
        return await timed(queue, jobs)
    finally:
        await client.aclose()
        await store.close()


@contextmanager
def worker_processes(url: str, prefix: str, count: int, model: Path) -> Iterator[None]:
    """``count`` worker processes serving ``prefix``, announced before this returns."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("INPAINTBOT_")}
    processes = []
    with tempfile.TemporaryDirectory() as data:
        for index in range(count):
            env = base | {
                "PYTHONPATH": str(ROOT),
                "OMP_NUM_THREADS": "1",
                "INPAINTBOT_REDIS_URL": url,
                "INPAINTBOT_REDIS_PREFIX": prefix,
                "INPAINTBOT_WORKER_NAME": f"{prefix}-{index}",
                "INPAINTBOT_MODEL": str(model),
                "INPAINTBOT_DEVICE": "cpu",
                "INPAINTBOT_DATA_DIR": data,
                "INPAINTBOT_SAFETY_CHECKER": "none",
                "INPAINTBOT_LOG_LEVEL": "WARNING",
            }
            command = [sys.executable, "-m", "bot.cli", "worker"]
            processes.append(subprocess.Popen(command, env=env))
        client = redis.Redis.from_url(url)
        try:
            keys = Keys(prefix)
            while client.scard(keys.workers) < count:
                if any(process.poll() is not None for process in processes):
                    raise RuntimeError("a worker exited")
                time.sleep(0.2)
            yield
        finally:
            client.close()
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait()


async def measure(args: argparse.Namespace, url: str, model: Path, work: Path) -> dict[str, float]:
    engine = Engine(EngineConfig(model=str(model), device="cpu", _env_file=None))
    jobs = requests(args.jobs, args.steps, args.resolution)
    await local(engine, jobs[:1], work / "warm", model)  # loads the model
    samples: dict[str, list[float]] = {"local": [], "own": [], "one": [], "two": []}
    for round_ in range(args.rounds):
        for name in samples:
            data_dir = work / f"{name}-{round_}"
            if name == "local":
                seconds = await local(engine, jobs, data_dir, model)
            else:
                prefix = f"bench-{name}"
                seconds = await remote(
                    engine, jobs, data_dir, model, url, prefix, own_worker=name == "own"
                )
            samples[name].append(seconds)
            print(f"  round {round_ + 1} {name:5} {seconds:6.2f} s", flush=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--resolution", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, redis_server() as url:
        work = Path(folder)
        model = build_tiny_sd(work / "tiny-sd")
        with (
            worker_processes(url, "bench-one", 1, model),
            worker_processes(url, "bench-two", 2, model),
        ):
            median = asyncio.run(measure(args, url, model, work))
    print(f"{args.jobs} jobs, {args.steps} steps at {args.resolution} px, medians of {args.rounds}:")
    for name, label in (
        ("local", "local queue"),
        ("own", "Redis, the bot's own worker"),
        ("one", "Redis, one worker process"),
        ("two", "Redis, two worker processes"),
    ):
        print(f"  {label:30} {median[name]:7.2f} s  {args.jobs / median[name]:6.2f} jobs/s")
    print(f"two workers / one, throughput:   {median['one'] / median['two']:.2f}")
    overhead = (median["own"] - median["local"]) / args.jobs * 1000
    print(f"Redis mode overhead per job:     {overhead:.0f} ms")


if __name__ == "__main__":
    main()
