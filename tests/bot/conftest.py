"""Fixtures for the bot's store and queue: a fresh data directory and database per test."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.store.database import Store, open_store


@pytest.fixture
def bot_config(tmp_path: Path) -> BotConfig:
    """Explicit values, so a developer's INPAINTBOT_* environment cannot point tests at a real database."""
    return BotConfig(
        data_dir=tmp_path / "data",
        database_url="",
        batch_size=1,
        queue_max_per_user=3,
        queue_max_total=100,
        job_timeout=600,
        shutdown_timeout=30,
        safety_checker=None,  # tests inject a stub checker into the queue where they need one
        _env_file=None,
    )


@pytest.fixture
async def store(bot_config: BotConfig) -> AsyncIterator[Store]:
    """A store migrated to head the way the bot opens it."""
    store = await open_store(bot_config)
    yield store
    await store.close()
