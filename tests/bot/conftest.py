"""Fixtures for the bot's store and queue: a fresh data directory and database per test; the Redis
queue with GPU workers in this process."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.config import BotConfig
from bot.queue.events import EventStream
from bot.queue.remote import RemoteJobQueue
from bot.store.database import Store, open_store
from bot.worker import Worker
from tests.bot.queue.fakes import FakeEngine
from tests.support.servers import redis_server

Started = Callable[..., Awaitable[tuple[RemoteJobQueue[Any], EventStream]]]
Harness = tuple[Started, Callable[..., Awaitable[Worker]]]


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


@pytest.fixture
def remote_config(bot_config: BotConfig, redis_url: str) -> BotConfig:
    """Heartbeats and leases short enough that a lost worker is noticed within a second."""
    return bot_config.model_copy(
        update={
            "redis_url": SecretStr(redis_url),
            "worker_heartbeat": 0.1,
            "worker_lease": 0.5,
            "local_worker": False,
        }
    )


@pytest.fixture(name="redis")
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the test's Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def harness(store: Store, remote_config: BotConfig, redis_url: str) -> AsyncIterator[Harness]:
    """``start_queue(**overrides)`` and ``start_worker(name, engine, model, **overrides)``, on the
    fake engine (``tests.bot.queue.fakes``); all closed after."""
    closers: list[Callable[[], Awaitable[None]]] = []

    async def start_queue(**overrides: object) -> tuple[RemoteJobQueue[Any], EventStream]:
        client = Redis.from_url(redis_url)
        config = remote_config.model_copy(update=overrides)
        queue: RemoteJobQueue[Any] = RemoteJobQueue(FakeEngine(), store, config, client)
        events = queue.subscribe()
        await queue.start()
        closers.append(client.aclose)
        closers.append(queue.close)
        return queue, events

    async def start_worker(
        name: str, engine: FakeEngine, model: str = "fake-model", **overrides: object
    ) -> Worker:
        client = Redis.from_url(redis_url)
        config = remote_config.model_copy(update={"worker_name": name, "model": model, **overrides})
        worker = Worker(engine, config, client)
        await worker.start()
        closers.append(client.aclose)
        closers.append(worker.close)
        return worker

    yield start_queue, start_worker
    for close in reversed(closers):
        await close()
