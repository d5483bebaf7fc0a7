"""A running InpaintBot on the tiny model, connected to the fake Discord."""

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import pytest

from bot.client import InpaintBot
from bot.config import BotConfig
from bot.queue.local import LocalJobQueue
from bot.store.database import Store
from engine.engine import Engine, PreparedJob
from engine.job import InpaintRequest, InpaintResult
from engine.safety import SafetyChecker
from tests.fakediscord import FakeDiscord, run_client
from tests.fakediscord.fixtures import fake_discord as fake_discord

StartBot = Callable[..., Awaitable[InpaintBot]]


class GatedEngine:
    """The real engine whose runs wait for ``gate``, so a test decides when a job may finish."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gate = threading.Event()
        self.waiting = threading.Event()  # a run has reached the gate; ``cancel`` is its cancel event
        self.cancel: threading.Event | None = None

    def load(self, model: str | None = None) -> object:
        return self.engine.load(model)

    def prepare(self, request: InpaintRequest) -> PreparedJob:
        return self.engine.prepare(request)

    def run(self, jobs: Sequence[PreparedJob], **options: Any) -> list[InpaintResult]:
        self.cancel = options.get("cancel")
        self.waiting.set()
        self.gate.wait(timeout=60)
        return self.engine.run(jobs, **options)


@pytest.fixture
def gated_engine(engine: Engine) -> GatedEngine:
    gated = GatedEngine(engine)
    gated.gate.set()
    return gated


@pytest.fixture
async def start_bot(
    fake_discord: FakeDiscord, gated_engine: GatedEngine, store: Store, bot_config: BotConfig
) -> AsyncIterator[StartBot]:
    """Start the bot with config overrides (and ``edit_interval``, a ``safety`` checker); it is closed
    after the test."""
    async with AsyncExitStack() as stack:

        async def start(
            edit_interval: float = 2.0, safety: SafetyChecker | None = None, **overrides: object
        ) -> InpaintBot:
            config = bot_config.model_copy(update=overrides)
            queue = LocalJobQueue(gated_engine, store, config, safety=safety)
            bot = InpaintBot(config, queue, store, guild_ready_timeout=0.05, edit_interval=edit_interval)
            stack.push_async_callback(queue.close)
            await stack.enter_async_context(run_client(fake_discord, bot))
            return bot

        yield start
        gated_engine.gate.set()
