"""The running bot as its operator sees it: the health heartbeat and one log line per job event."""

import asyncio
import logging
import re
from typing import cast

import pytest

from bot import health
from bot.cogs.maintenance import Maintenance
from bot.config import BotConfig
from bot.queue.events import STUCK
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import inpaint, result
from tests.fakediscord import FakeDiscord


async def test_heartbeat_while_connected_and_removed_on_close(
    fake_discord: FakeDiscord, start_bot: StartBot, bot_config: BotConfig
) -> None:
    path = health.heartbeat_path(bot_config.data_dir)
    bot = await start_bot()
    for _ in range(100):  # the first beat follows the ready event
        if path.exists():
            break
        await asyncio.sleep(0.05)
    assert health.problem(path) is None
    maintenance = cast(Maintenance, bot.get_cog("Maintenance"))
    path.unlink()
    with pytest.MonkeyPatch.context() as disconnected:
        disconnected.setattr(bot, "ws", None)  # between the gateway dropping and reconnecting
        await maintenance.heartbeat()
    assert not path.exists()
    await maintenance.heartbeat()
    assert health.problem(path) is None
    await bot.close()
    assert not path.exists()
    assert health.problem(path) is not None


async def test_a_gpu_that_hangs_on_a_job_fails_it_and_turns_the_health_check_unhealthy(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, bot_config: BotConfig
) -> None:
    """A stuck thread cannot be stopped: its owner is told, and the health check asks for a restart."""
    gated_engine.gate.clear()  # the run waits for the gate and never looks at its cancel event
    bot = await start_bot(edit_interval=0, job_timeout=0.05, watchdog_grace=0.05)
    maintenance = cast(Maintenance, bot.get_cog("Maintenance"))
    path = health.heartbeat_path(bot_config.data_dir)
    it = await inpaint(fake_discord)
    told = await fake_discord.wait_for(
        "edit_webhook_message", lambda r: it.owns(r) and "❌" in r.json["content"], timeout=30
    )
    assert told.json["content"].endswith(STUCK)
    await maintenance.heartbeat()
    assert health.problem(path) == "the GPU has been busy on one job for over 0.1 seconds"

    gated_engine.gate.set()  # the thread comes back after all
    async with asyncio.timeout(30):
        while bot.queue.stuck() is not None:
            await asyncio.sleep(0.01)
    await maintenance.heartbeat()
    assert health.problem(path) is None


async def test_each_job_event_is_one_log_line_and_the_token_is_never_logged(
    fake_discord: FakeDiscord, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the most a library would ever say, login included
    await start_bot()
    it = await inpaint(fake_discord, seed=5)
    await result(fake_discord, it)
    lines = [record.getMessage() for record in caplog.records if record.name == "bot.jobs"]
    user = it.payload["member"]["user"]["id"]
    patterns = [
        rf"job=(\d+) user={user} event=queued position=1 eta=\?",
        rf"job=\1 user={user} event=started waited=\d+\.\d\ds eta=\?",
        rf"job=\1 user={user} event=done run=\d+\.\d\ds total=\d+\.\d\ds images=1 "
        r"prepare=\d+\.\d\ds denoise=\d+\.\d\ds model=\S+",
    ]
    assert re.fullmatch("\n".join(patterns), "\n".join(lines)), lines
    assert FakeDiscord.token not in caplog.text
