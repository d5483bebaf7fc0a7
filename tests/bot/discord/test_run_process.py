"""``inpaintbot run`` as an operator starts it: a process of its own, configured by the environment, on
the tiny model and the fake Discord (which listens on a real local port), stopped with Ctrl-C."""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis

from tests.bot.discord.test_inpaint import JOB_TIMEOUT, inpaint, result
from tests.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parents[3]
IDENTIFY = 2
START_TIMEOUT = 120  # imports torch and loads the model; a loaded CI machine can be slow
EXIT_INTERRUPTED = 130  # bot.cli's status for Ctrl-C, as documented in the README
EXIT_USER_ERROR = 2


def environment(fake: FakeDiscord, tiny_sd_path: Path, data_dir: Path) -> dict[str, str]:
    """Only this test's settings: a developer's INPAINTBOT_* or token must not leak in."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("INPAINTBOT_") and key != "DISCORD_TOKEN"
    }
    return inherited | {
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "DISCORD_TOKEN": fake.token,
        "INPAINTBOT_DISCORD_API_BASE": f"{fake.url}/api/v10",
        "INPAINTBOT_DISCORD_GATEWAY_URL": f"{fake.url.replace('http', 'ws', 1)}/gateway",
        "INPAINTBOT_MODEL": str(tiny_sd_path),
        "INPAINTBOT_DEVICE": "cpu",
        "INPAINTBOT_DATA_DIR": str(data_dir),
        "INPAINTBOT_SAFETY_CHECKER": "none",
    }


@contextlib.asynccontextmanager
async def inpaintbot_run(cwd: Path, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``inpaintbot run`` as a child process, in ``cwd`` (no .env there), configured by ``env``;
    killed on the way out if it is still running (a failed test must not leave a bot behind)."""
    # A run in the background (`pytest &`) ignores SIGINT, and the child would inherit that; a
    # handled signal is reset to its default by exec instead.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        bot = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, ignored)
    try:
        yield bot
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()


async def until_exists(path: Path) -> None:
    async with asyncio.timeout(START_TIMEOUT):
        while not path.exists():
            await asyncio.sleep(0.05)


async def test_run_connects_serves_and_stops_cleanly_on_ctrl_c(
    fake_discord: FakeDiscord, tiny_sd_path: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    async with inpaintbot_run(tmp_path, environment(fake_discord, tiny_sd_path, data_dir)) as bot:
        identify = await fake_discord.wait_for(
            "gateway", lambda r: r.json["op"] == IDENTIFY, timeout=START_TIMEOUT
        )
        assert identify.json["d"]["token"] == fake_discord.token
        assert "inpaint" in {command["name"] for command in fake_discord.commands[None]}
        # The heartbeat (``inpaintbot health``) is first written once the bot is ready.
        await until_exists(data_dir / "heartbeat")
        await result(fake_discord, await inpaint(fake_discord, seed=3))

        bot.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(bot.communicate(), timeout=JOB_TIMEOUT)
    log = stderr.decode()
    assert bot.returncode == EXIT_INTERRUPTED, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert fake_discord.token not in log
    assert not (data_dir / "heartbeat").exists(), "a stopped bot is not healthy"
    assert not fake_discord.gateway.connected


async def test_run_refuses_to_start_without_its_safety_checker(
    fake_discord: FakeDiscord, tiny_sd_path: Path, tmp_path: Path
) -> None:
    """A checker that cannot load would withhold every result silently: one line, and no bot."""
    missing = tmp_path / "no-checker"
    env = environment(fake_discord, tiny_sd_path, tmp_path / "data")
    async with inpaintbot_run(tmp_path, env | {"INPAINTBOT_SAFETY_CHECKER": str(missing)}) as bot:
        _, stderr = await asyncio.wait_for(bot.communicate(), timeout=START_TIMEOUT)
    log = stderr.decode()
    assert bot.returncode == EXIT_USER_ERROR, log
    last = log.strip().splitlines()[-1]
    assert last.startswith(f"error: INPAINTBOT_SAFETY_CHECKER={missing} could not be loaded ("), log
    assert "Traceback" not in log, log
    assert not fake_discord.gateway.connected


async def test_run_with_redis_runs_jobs_on_its_own_gpu_as_one_worker(
    fake_discord: FakeDiscord, tiny_sd_path: Path, tmp_path: Path, redis_url: str
) -> None:
    """``INPAINTBOT_REDIS_URL`` set and no worker elsewhere: the bot's own GPU takes the jobs, through
    Redis, and leaves it when the bot stops."""
    data_dir = tmp_path / "data"
    env = environment(fake_discord, tiny_sd_path, data_dir) | {
        "INPAINTBOT_REDIS_URL": redis_url,
        "INPAINTBOT_WORKER_NAME": "bot-gpu",
    }
    client = Redis.from_url(redis_url)
    try:
        async with inpaintbot_run(tmp_path, env) as bot:
            await until_exists(data_dir / "heartbeat")
            assert await client.smembers("inpaintbot:workers") == {b"bot-gpu"}
            await result(fake_discord, await inpaint(fake_discord, seed=3))
            bot.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(bot.communicate(), timeout=JOB_TIMEOUT)
        log = stderr.decode()
        assert bot.returncode == EXIT_INTERRUPTED, log
        assert "Traceback" not in log and " ERROR " not in log, log
        assert await client.smembers("inpaintbot:workers") == set()
        assert await client.keys("inpaintbot:job:*") == []
    finally:
        await client.aclose()
