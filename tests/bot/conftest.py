"""Fixtures for the bot's store and queue: a fresh data directory and database per test."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.store.database import Store, open_store


@pytest.fixture
def bot_config(tmp_path: Path) -> BotConfig:
    return BotConfig(data_dir=tmp_path / "data", batch_size=1, _env_file=None)


@pytest.fixture
async def store(bot_config: BotConfig) -> AsyncIterator[Store]:
    """A store migrated to head the way the bot opens it."""
    store = await open_store(bot_config)
    yield store
    await store.close()
