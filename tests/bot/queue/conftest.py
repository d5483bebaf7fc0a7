from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.config import BotConfig
from bot.queue.events import EventStream
from bot.queue.local import LocalJobQueue
from bot.store.database import Store
from engine.safety import SafetyChecker
from tests.bot.queue.fakes import FakeEngine

MakeQueue = Callable[..., Awaitable[tuple[LocalJobQueue, EventStream]]]


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def make_queue(
    store: Store, bot_config: BotConfig, fake_engine: FakeEngine
) -> AsyncIterator[MakeQueue]:
    """Start a queue on the fake engine with config overrides (and a ``safety`` checker); subscribed
    before start, closed after."""
    queues: list[LocalJobQueue] = []

    async def make(
        safety: SafetyChecker | None = None, **overrides: object
    ) -> tuple[LocalJobQueue, EventStream]:
        config = bot_config.model_copy(update=overrides)
        queue = LocalJobQueue(fake_engine, store, config, safety=safety)
        events = queue.subscribe()
        await queue.start()
        queues.append(queue)
        return queue, events

    yield make
    fake_engine.gate.set()
    for queue in queues:
        await queue.close()
