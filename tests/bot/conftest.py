"""Fixtures for the bot's store and queue: a fresh data directory and database per test."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from bot.config import BotConfig
from bot.store.database import Store, open_store
from tests.support.servers import redis_server


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


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """One ``redis-server`` for the session (see ``tests.support.servers``)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The session's Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    return redis_server_url
