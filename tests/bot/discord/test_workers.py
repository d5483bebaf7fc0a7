"""The bot with two GPU workers in processes of their own (``inpaintbot worker`` on the tiny model),
through a real ``redis-server``, driven through the fake Discord. The workers are started once for the
module (each imports torch); the test that kills one runs last."""

from __future__ import annotations

import asyncio
import contextlib
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
from tests.support.tiny_models import build_tiny_sd

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 120
PREFIX = f"e2e-{uuid.uuid4().hex[:8]}"
KEYS = Keys(PREFIX)
# Short, yet sized for a loaded 2-core CI machine (torch in the bot and two workers, other suites
# beside): an announcement lives three beats, so a worker descheduled for a few seconds is not taken
# for gone. Nothing waits a beat to move on: dispatch follows the announcements and the outcomes.
SETTINGS = {"worker_heartbeat": 2.0, "worker_lease": 6.0}
LONG = 150  # steps: a job that is still running when the test acts on it


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny inpainting model, the one ``gpu-2`` loads at its start."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-other"), seed=1)


@pytest.fixture(scope="module")
def workers(
    redis_server_url: str,
    tiny_sd_path: Path,
    other_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """``inpaintbot worker`` twice, announced in Redis before the tests start: ``gpu-1`` with the
    bot's default model loaded, ``gpu-2`` with the other one."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("INPAINTBOT_")}
    processes = {}
    for name, model in (("gpu-1", tiny_sd_path), ("gpu-2", other_model)):
        env = base | {
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "INPAINTBOT_REDIS_URL": redis_server_url,
            "INPAINTBOT_REDIS_PREFIX": PREFIX,
            "INPAINTBOT_WORKER_NAME": name,
            "INPAINTBOT_WORKER_HEARTBEAT": str(SETTINGS["worker_heartbeat"]),
            "INPAINTBOT_WORKER_LEASE": str(SETTINGS["worker_lease"]),
            "INPAINTBOT_MODEL": str(model),
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
def config(
    bot_config: BotConfig, redis_server_url: str, tiny_sd_path: Path, other_model: Path
) -> BotConfig:
    """The bot dispatches to the workers only (no GPU work of its own); members may pick either model."""
    return bot_config.model_copy(
        update={
            "redis_url": SecretStr(redis_server_url),
            "redis_prefix": PREFIX,
            "local_worker": False,
            "queue_max_per_user": 3,
            "model": str(tiny_sd_path),
            "models": [str(other_model)],
            **SETTINGS,
        }
    )


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, engine: Engine, store: Store, config: BotConfig
) -> AsyncIterator[tuple[InpaintBot, Redis]]:
    """A bot process's worth: its Redis client, queue and Discord client, all closed on exit."""
    assert config.redis_url is not None
    client = Redis.from_url(config.redis_url.get_secret_value())
    queue: RemoteJobQueue[Any] = RemoteJobQueue(engine, store, config, client)
    instance = InpaintBot(config, queue, store, guild_ready_timeout=0.05, edit_interval=0.5)
    try:
        async with run_client(fake, instance):
            yield instance, client
    finally:
        await queue.close()
        await client.aclose()


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    engine: Engine,
    store: Store,
    config: BotConfig,
    workers: dict[str, subprocess.Popen[bytes]],
) -> AsyncIterator[tuple[InpaintBot, Redis]]:
    async with running_bot(fake_discord, engine, store, config) as running:
        yield running


async def ask(fake: FakeDiscord, member: JSON, **options: Any) -> FakeInteraction:
    """``/inpaint`` of the test picture by ``member``."""
    values = {
        "image": fake.add_attachment(png_bytes(photo(96, 64)), "photo.png"),
        "mask": fake.add_attachment(png_bytes(rect_mask(96, 64, (24, 16, 72, 48))), "mask.png"),
    }
    return await fake.slash("inpaint", {**values, "steps": 3, **options}, user=member)


async def started_on(instance: InpaintBot, client: Redis, job_id: int) -> str:
    """The worker a job went to, once it went; if it does not go, what the bot believed meanwhile."""
    try:
        async with asyncio.timeout(JOB_TIMEOUT):
            while (data := await client.hget(KEYS.inflight, str(job_id))) is None:
                await asyncio.sleep(0.02)
    except TimeoutError:
        seen = await what_the_bot_sees(instance, client)
        row = await jobs.get_job(instance.store, job_id)
        stored = "not stored" if row is None else f"stored as {row.status} ({row.error!r})"
        raise AssertionError(
            f"job {job_id} was not sent to a worker in {JOB_TIMEOUT} s; it is {stored}; {seen}"
        ) from None
    return Flight.decode(data).worker


async def what_the_bot_sees(instance: InpaintBot, client: Redis) -> str:
    """The queue's view of the workers and jobs, its loops, and what Redis holds: why nothing moves."""
    snapshot = await instance.queue.snapshot()
    loops = {
        task.get_name(): "running" if not task.done() else repr(task.exception())
        for task in asyncio.all_tasks()
        if task.get_name().startswith("queue-")
    }
    names = sorted(name.decode() for name in await client.smembers(KEYS.workers))
    announced = {name: await client.get(KEYS.worker(name)) for name in ("gpu-1", "gpu-2")}
    inflight = await client.hgetall(KEYS.inflight)
    return (
        f"the bot sees workers {snapshot.workers}, running {snapshot.running}, waiting "
        f"{snapshot.waiting}; its loops: {loops}; Redis has the worker set {names}, the "
        f"announcements {announced}, in flight {inflight}"
    )


async def first_step(client: Redis, job_id: int) -> None:
    async with asyncio.timeout(JOB_TIMEOUT):
        while not await client.xlen(KEYS.events(job_id)):
            await asyncio.sleep(0.02)


async def test_a_job_goes_to_the_worker_that_has_its_model_loaded(
    fake_discord: FakeDiscord, bot: tuple[InpaintBot, Redis], store: Store, other_model: Path
) -> None:
    """Both workers are free; ``gpu-1`` would be picked on a tie, but has the other model."""
    instance, client = bot
    member = fake_discord.add_member("fay")
    it = await ask(fake_discord, member, model=str(other_model))
    job_id = await only_job(store, member)
    assert await started_on(instance, client, job_id) == "gpu-2"
    await result(fake_discord, it)
    row = await jobs.get_job(store, job_id)
    assert row is not None and row.model == str(other_model)


async def test_three_members_jobs_run_on_both_workers_in_fair_order(
    fake_discord: FakeDiscord,
    bot: tuple[InpaintBot, Redis],
    store: Store,
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    """The workers are paused (SIGSTOP) until the bot counts them gone, so all nine jobs wait; once
    they are back, the jobs start in round-robin order across both."""
    instance, client = bot
    members = [fake_discord.alice, fake_discord.add_member("bob"), fake_discord.add_member("carol")]
    for process in workers.values():
        process.send_signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(JOB_TIMEOUT):
            while (await instance.queue.snapshot()).workers:
                await asyncio.sleep(0.1)
        asked = [await ask(fake_discord, member, seed=n) for member in members for n in range(3)]
        async with asyncio.timeout(JOB_TIMEOUT):
            while len((await instance.queue.snapshot()).waiting) < len(asked):
                await asyncio.sleep(0.05)
    finally:
        for process in workers.values():
            process.send_signal(signal.SIGCONT)
    for it in asked:
        await result(fake_discord, it)
    rows = []
    for member in members:
        rows += await jobs.user_jobs(store, int(member["user"]["id"]))
    rows.sort(key=lambda row: (row.started_at, row.id))
    # Round-robin: each round of three starts serves every member once (the members' order within a
    # round is their jobs' arrival, which concurrent interactions do not fix).
    order = [row.user_id for row in rows]
    ids = {int(member["user"]["id"]) for member in members}
    assert [set(order[i : i + 3]) for i in (0, 3, 6)] == [ids, ids, ids], order
    assert all(row.status is JobStatus.DONE and row.attempts == 1 for row in rows)
    assert await client.keys(f"{PREFIX}:job:*") == []
    it = await fake_discord.slash("queue", user=members[0])
    shown = await fake_discord.wait_for("callback", it.owns, timeout=JOB_TIMEOUT)
    assert "GPU workers: gpu-1 (0/1 busy), gpu-2 (0/1 busy)." in shown.json["data"]["content"]


async def test_a_restart_of_the_bot_while_a_worker_runs_a_job_loses_nothing(
    fake_discord: FakeDiscord,
    engine: Engine,
    store: Store,
    config: BotConfig,
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    member = fake_discord.add_member("gus")
    async with running_bot(fake_discord, engine, store, config) as (instance, client):
        await ask(fake_discord, member, steps=LONG)
        job_id = await only_job(store, member)
        await started_on(instance, client, job_id)
        await first_step(client, job_id)
    async with running_bot(fake_discord, engine, store, config):
        async with asyncio.timeout(JOB_TIMEOUT):
            while (row := await jobs.get_job(store, job_id)) is None or row.delivered_at is None:
                await asyncio.sleep(0.05)
        await asyncio.sleep(SETTINGS["worker_lease"])  # time for a second post, if there were one
    assert row.status is JobStatus.DONE and row.attempts == 1, "adopted, not run again"
    posted = fake_discord.recorded(["edit_webhook_message", "post_message"], has_result)
    assert len(posted) == 1


async def only_job(store: Store, member: JSON) -> int:
    """The member's one job, once it is stored."""
    async with asyncio.timeout(JOB_TIMEOUT):
        while not (rows := await jobs.user_jobs(store, int(member["user"]["id"]))):
            await asyncio.sleep(0.02)
    [row] = rows
    return row.id


async def test_cancel_stops_a_job_running_on_a_worker(
    fake_discord: FakeDiscord, bot: tuple[InpaintBot, Redis], store: Store
) -> None:
    instance, client = bot
    member = fake_discord.add_member("dora")
    await ask(fake_discord, member, steps=LONG)
    job_id = await only_job(store, member)
    await started_on(instance, client, job_id)
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
    bot: tuple[InpaintBot, Redis],
    store: Store,
    workers: dict[str, subprocess.Popen[bytes]],
) -> None:
    """Runs last: it leaves one worker."""
    instance, client = bot
    member = fake_discord.add_member("erin")
    it = await ask(fake_discord, member, steps=LONG)
    job_id = await only_job(store, member)
    victim = await started_on(instance, client, job_id)
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
