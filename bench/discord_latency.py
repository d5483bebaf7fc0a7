"""How quickly the bot answers Discord while the GPU is busy, with many users at once.

Waves of 20 users (``--users``) each send ``/inpaint`` at the same moment to the in-repo fake Discord
(``tests.fakediscord``: real discord.py client, local REST and gateway), and the tiny random-weight model
runs the jobs. Measured:

1. INTERACTION_CREATE sent → deferral callback received: Discord drops an interaction not answered
   within 3 s, so this must stay far below that while jobs are queued and running.
2. The engine finishing a job → its result arriving at Discord, split at the queue's done event (the
   result stored: PNG encode, SQLite) and the delivery (reading, fitting and uploading the picture).
3. Event-loop lag while jobs run: how late a 10 ms ``asyncio.sleep`` wakes up. Every Discord event, the
   heartbeat included, waits this long on top of its own work.

Runs offline on CPU; the machine may be shared and noisy, so read the figures as an order of magnitude.

    python -m bench.discord_latency [--users 20] [--waves 3] [--steps 10] [--size 256]
"""

from __future__ import annotations

import argparse
import asyncio
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

from bot.client import InpaintBot
from bot.config import BotConfig
from bot.queue.events import DoneEvent, EventStream
from bot.queue.local import LocalJobQueue
from bot.store.database import open_store
from engine.config import EngineConfig
from engine.engine import Engine, PreparedJob
from engine.job import InpaintRequest, InpaintResult
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded, run_client
from tests.pictures import photo, png_bytes, rect_mask
from tests.support.tiny_models import build_tiny_sd

LAG_PERIOD = 0.01


class TimedEngine:
    """The engine, remembering when the run that made each seed ended (monotonic clock)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.finished: dict[int, float] = {}

    def load(self, model: str | None = None) -> object:
        return self.engine.load(model)

    def prepare(self, request: InpaintRequest) -> PreparedJob:
        return self.engine.prepare(request)

    def run(self, jobs: Sequence[PreparedJob], **options: Any) -> list[InpaintResult]:
        results = self.engine.run(jobs, **options)
        ended = time.monotonic()
        for job in jobs:
            self.finished[job.settings.seed or 0] = ended
        return results


async def watch_done(events: EventStream, stored: dict[int, float]) -> None:
    """When the queue reported each result stored, by seed."""
    async for event in events:
        if isinstance(event, DoneEvent):
            stored[event.seeds[0]] = time.monotonic()


async def measure_lag(lags: list[float]) -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD)
        lags.append(time.perf_counter() - started - LAG_PERIOD)


def is_result(it: FakeInteraction) -> Callable[[Recorded], bool]:
    """The edit of the interaction's message that carries the picture."""
    return lambda record: it.owns(record) and bool(record.files)


async def wave(
    fake: FakeDiscord, users: list[dict[str, Any]], first_seed: int, steps: int, size: int
) -> list[tuple[int, FakeInteraction]]:
    """Every user sends /inpaint at once; returns (seed, interaction) once every result is in."""
    image = png_bytes(photo(size, size))
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    mask = png_bytes(rect_mask(size, size, box))
    sent = []
    for seed, user in enumerate(users, first_seed):
        options = {
            "image": fake.add_attachment(image, "photo.png"),
            "mask": fake.add_attachment(mask, "mask.png"),
            "steps": steps,
            "seed": seed,
        }
        sent.append((seed, await fake.slash("inpaint", options, user=user)))
    for _, it in sent:
        await fake.wait_for("edit_webhook_message", is_result(it), timeout=600)
    return sent


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in milliseconds."""
    ms = sorted(value * 1000 for value in values)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    return statistics.median(ms), p99, ms[-1]


async def run(args: argparse.Namespace, root: Path) -> None:
    model = build_tiny_sd(root / "tiny-sd")
    engine = TimedEngine(
        Engine(EngineConfig(model=str(model), device="cpu", data_dir=root, _env_file=None))
    )
    config = BotConfig(data_dir=root / "data", database_url="", _env_file=None)
    store = await open_store(config)
    queue = LocalJobQueue(engine, store, config)
    stored: dict[int, float] = {}
    lags: list[float] = []
    async with FakeDiscord() as fake:
        users = [fake.add_member(f"user{i}") for i in range(args.users)]
        bot = InpaintBot(config, queue, store, guild_ready_timeout=0.05)
        watcher = asyncio.create_task(watch_done(queue.subscribe(), stored))
        try:
            async with run_client(fake, bot):
                await wave(fake, users[:1], 10**6, args.steps, args.size)  # warm up
                lag_task = asyncio.create_task(measure_lag(lags))
                sent = []
                for number in range(args.waves):
                    sent += await wave(fake, users, number * len(users), args.steps, args.size)
                lag_task.cancel()
                await asyncio.gather(lag_task, return_exceptions=True)
        finally:
            await queue.close()
            await watcher
            await store.close()

    deferral, to_event, to_discord, total = [], [], [], []
    for seed, it in sent:
        callback = fake.recorded("callback", it.owns)[0]
        (posted,) = fake.recorded("edit_webhook_message", is_result(it))
        deferral.append(callback.at - it.at)
        to_event.append(stored[seed] - engine.finished[seed])
        to_discord.append(posted.at - stored[seed])
        total.append(posted.at - engine.finished[seed])

    print(
        f"{args.users} users at once, {args.waves} waves ({len(sent)} jobs), tiny model on CPU, "
        f"{args.size} px, {args.steps} steps"
    )
    print(f"  {'':44} {'p50':>8} {'p99':>8} {'max':>8}")
    rows = [
        ("INTERACTION_CREATE -> deferral", deferral),
        ("engine done -> result stored (done event)", to_event),
        ("done event -> result at Discord", to_discord),
        ("engine done -> result at Discord", total),
        (f"event-loop lag ({LAG_PERIOD * 1000:g} ms sleep overshoot)", lags),
    ]
    for label, values in rows:
        p50, p99, most = percentiles(values)
        print(f"  {label:44} {p50:6.1f}ms {p99:6.1f}ms {most:6.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
