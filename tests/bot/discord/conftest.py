"""A running InpaintBot on the tiny model, connected to the fake Discord."""

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from bot.client import InpaintBot
from bot.config import BotConfig
from bot.queue.local import LocalJobQueue
from bot.store.database import Store
from engine.config import EngineConfig
from engine.engine import Engine, PreparedJob
from engine.job import InpaintRequest, InpaintResult
from engine.mask_preview import MaskPreview
from engine.safety import SafetyChecker
from engine.settings import InpaintSettings
from tests.fakediscord import FakeDiscord, run_client
from tests.fakediscord.fixtures import fake_discord as fake_discord
from tests.support.tiny_models import build_tiny_controlnet

StartBot = Callable[..., Awaitable[InpaintBot]]


class GatedEngine:
    """The real engine whose runs wait for ``gate``, so a test decides when a job may finish.

    ``ran`` keeps the settings of every prepared job handed to ``run``, in order: what a Discord path
    really gave the engine, for tests that follow a setting through it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gate = threading.Event()
        self.waiting = threading.Event()  # a run has reached the gate; ``cancel`` is its cancel event
        self.cancel: threading.Event | None = None
        self.ran: list[InpaintSettings] = []
        self.previewed: list[InpaintSettings] = []  # the settings of each mask preview asked for
        self.fail_next: Exception | None = None  # raised by the next ``prepare``: an unexpected failure

    def load(self, model: str | None = None) -> object:
        return self.engine.load(model)

    def prepare(self, request: InpaintRequest) -> PreparedJob:
        failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure
        return self.engine.prepare(request)

    def mask_preview(self, request: InpaintRequest) -> MaskPreview:
        self.previewed.append(request.settings)
        return self.engine.mask_preview(request)

    def select_object(self, image: bytes, point: tuple[float, float]) -> bytes:
        return self.engine.select_object(image, point)

    def run(self, jobs: Sequence[PreparedJob], **options: Any) -> list[InpaintResult]:
        self.ran += [job.settings for job in jobs]
        self.cancel = options.get("cancel")
        self.waiting.set()
        self.gate.wait(timeout=60)
        return self.engine.run(jobs, **options)


@pytest.fixture(scope="session")
def controlnet_engine(
    tiny_sd_path: Path, tiny_sd_regular_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Engine:
    """An engine with a tiny Tile ControlNet; a test module uses it by overriding ``engine``. The
    default model is an inpainting checkpoint, so ControlNet jobs switch to the configured regular
    base model, as an operator would set it up."""
    tile = build_tiny_controlnet(tmp_path_factory.mktemp("tile"), tiny_sd_regular_path, seed=1)
    config = EngineConfig(
        model=str(tiny_sd_path),
        device="cpu",
        data_dir=tmp_path_factory.mktemp("data"),
        controlnet_tile=str(tile),
        controlnet_base_model=str(tiny_sd_regular_path),
        _env_file=None,
    )
    return Engine(config)


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
