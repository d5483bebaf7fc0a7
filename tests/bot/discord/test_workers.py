"""The bot with two GPU workers in processes of their own (``inpaintbot worker`` on the tiny model),
through a real ``redis-server``, driven through the fake Discord. The workers are started once for the
module (each imports torch); the test that kills one runs last."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.client import InpaintBot
from bot.config import BotConfig
from bot.queue.events import EventStream
from bot.queue.remote import RemoteJobQueue
from bot.queue.streams import Flight, Keys
from bot.store import jobs
from bot.store.database import Store
from bot.store.models import JobStatus
from engine.engine import Engine
from tests.bot.discord.test_inpaint import JOB_TIMEOUT, has_result, result
from tests.fakediscord import FakeDiscord, run_client
from tests.fakediscord.server import JSON, FakeInteraction
from tests.pictures import photo, png_bytes, rect_mask

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 120
PREFIX = f"e2e-{uuid.uuid4().hex[:8]}"
KEYS = Keys(PREFIX)
# Short, yet long enough that a loaded machine (torch in two processes on two cores) keeps its beat.
SETTINGS = {"worker_heartbeat": 1.0, "worker_lease": 3.0}
LONG = 150  # steps: a job that is still running when the test acts on it


@pytest.fixture(scope="module")
def workers(
    redis_server_url: str, tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """``inpaintbot worker`` twice, announced in Redis before the tests start."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("INPAINTBOT_")}
    processes = {}
    for name in ("gpu-1", "gpu-2"):
        env = base | {
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "INPAINTBOT_REDIS_URL": redis_server_url,
            "INPAINTBOT_REDIS_PREFIX": PREFIX,
            "INPAINTBOT_WORKER_NAME": name,
            "INPAINTBOT_WORKER_HEARTBEAT": str(SETTINGS["worker_heartbeat"]),
            "INPAINTBOT_WORKER_LEASE": str(SETTINGS["worker_lease"]),
            "INPAINTBOT_MODEL": str(tiny_sd_path),
            "INPAINTBOT_DEVICE": "cpu",
            "INPAINTBOT_DATA_DIR": str(tmp_path_factory.mktemp(name)),
            "INPAINTBOT_SAFETY_CHECKER": "none",
        }
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker"], cwd=tmp_path_factory.mktemp("cwd"), env=env
        )
    client = redis.Redis.from_url(redis_server_url)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(client.exists(KEYS.worker(name)) for name in processes):
            assert time.monotonic() < deadline, "the workers did not announce themselves"
            assert all(process.poll() is None for process in processes.values()), "a worker exited"
            time.sleep(0.1)
        yield processes
    finally:
        client.close()
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    engine: Engine,
    store: Store,
    bot_config: BotConfig,
    redis_server_url: str,
    workers: dict[str, subprocess.Popen[bytes]],
) -> AsyncIterator[tuple[InpaintBot, EventStream, Redis]]:
    """The bot, dispatching to the workers only (no GPU work of its own)."""
    config = bot_config.model_copy(
        update={
            "redis_url": SecretStr(redis_server_url),
            "redis_prefix": PREFIX,
            "local_worker": False,
            "queue_max_per_user": 3,
            **SETTINGS,
        }
    )
    client = Redis.from_url(redis_server_url)
    queue: RemoteJobQueue[Any] = RemoteJobQueue(engine, store, config, client)
    events = queue.subscribe()
    instance = InpaintBot(config, queue, store, guild_ready_timeout=0.05, edit_interval=0.5)
    try:
        async with run_client(fake_discord, instance):
            yield instance, events, client
    finally:
        await queue.close()
        await client.aclose()


async def ask(fake: FakeDiscord, member: JSON, **options: Any) -> FakeInteraction:
    """``/inpaint`` of the test picture by ``member``."""
    values = {
        "image": fake.add_attachment(png_bytes(photo(96, 64)), "photo.png"),
        "mask": fake.add_attachment(png_bytes(rect_mask(96, 64, (24, 16, 72, 48))), "mask.png"),
    }
    return await fake.slash("inpaint", {**values, "steps": 3, **options}, user=member)


async def started_on(client: Redis, job_id: int) -> str:
    """The worker a job went to, once it went."""
    async with asyncio.timeout(JOB_TIMEOUT):
        while (data := await client.hget(KEYS.inflight, str(job_id))) is None:
            await asyncio.sleep(0.02)
    return Flight.decode(data).worker


async def first_step(client: Redis, job_id: int) -> None:
    async with asyncio.timeout(JOB_TIMEOUT):
        while not await client.xlen(KEYS.events(job_id)):
            await asyncio.sleep(0.02)


async def test_three_members_jobs_all_finish_once_on_the_workers(
    fake_discord: FakeDiscord, bot: tuple[InpaintBot, EventStream, Redis], store: Store
) -> None:
    _, _, client = bot
    members = [fake_discord.alice, fake_discord.add_member("bob"), fake_discord.add_member("carol")]
    holder = fake_discord.add_member("holder")
    # Two long jobs hold both workers while the members' nine jobs queue up behind them.
    held = [await ask(fake_discord, holder, seed=n, steps=LONG) for n in range(2)]
    asked = [await ask(fake_discord, member, seed=n) for member in members for n in range(3)]
    for it in [*held, *asked]:
        await result(fake_discord, it)
    rows = []
    for member in members:
        rows += await jobs.user_jobs(store, int(member["user"]["id"]))
    # The exact fair order needs the workers held while jobs queue (tests/bot/queue/test_remote.py);
    # real tiny-model runs end too soon to hold them here.
    assert len(rows) == 9
    it = await fake_discord.slash("queue", user=members[0])
    shown = await fake_discord.wait_for("callback", it.owns, timeout=JOB_TIMEOUT)
    assert "GPU workers: gpu-1 (0/1 busy), gpu-2 (0/1 busy)." in shown.json["data"]["content"]
    assert all(row.status is JobStatus.DONE and row.attempts == 1 for row in rows)
    assert await client.keys(f"{PREFIX}:job:*") == []


async def only_job(store: Store, member: JSON) -> int:
    """The member's one job, once it is stored."""
    async with asyncio.timeout(JOB_TIMEOUT):
        while not (rows := await jobs.user_jobs(store, int(member["user"]["id"]))):
            await asyncio.sleep(0.02)
    [row] = rows
    return row.id


async def test_cancel_stops_a_job_running_on_a_worker(
    fake_discord: FakeDiscord, bot: tuple[InpaintBot, EventStream, Redis], store: Store
) -> None:
    _, _events, client = bot
    member = fake_discord.add_member("dora")
    await ask(fake_discord, member, steps=LONG)
    job_id = await only_job(store, member)
    await started_on(client, job_id)
    await first_step(client, job_id)
    await fake_discord.slash("cancel", {"job": job_id}, user=member)
    async with asyncio.timeout(JOB_TIMEOUT):
        while (
            row := await jobs.get_job(store, job_id)
        ) is None or row.status is not JobStatus.CANCELLED:
            await asyncio.sleep(0.05)
    assert row.finished_at is not None
    assert await client.keys(f"{PREFIX}:job:{job_id}:*") == []


async def test_a_worker_killed_mid_job_has_it_finished_by_the_other_and_posted_once(
    fake_discord: FakeDiscord,
    bot: tuple[InpaintBot, EventStream, Redis],
    store: Store,
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    """Runs last: it leaves one worker."""
    _, _events, client = bot
    member = fake_discord.add_member("erin")
    it = await ask(fake_discord, member, steps=LONG)
    job_id = await only_job(store, member)
    victim = await started_on(client, job_id)
    await first_step(client, job_id)
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].wait()
    await result(fake_discord, it)
    row = await jobs.get_job(store, job_id)
    assert row is not None and row.status is JobStatus.DONE and row.attempts == 2
    await asyncio.sleep(SETTINGS["worker_lease"])  # time for a second post, if there were one
    posts = fake_discord.recorded("edit_webhook_message", lambda r: it.owns(r) and has_result(r))
    assert len(posts) == 1
    assert [w.name for w in (await bot[0].queue.snapshot()).workers] == [
        name for name in workers if name != victim
    ]
