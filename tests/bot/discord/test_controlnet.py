"""ControlNet from Discord: the options of /inpaint and /preset save reach the engine and come back in
the result's settings, on the tiny model with a tiny Tile ControlNet."""

from pathlib import Path

import pytest
from discord.utils import escape_markdown

from bot.store import jobs
from bot.store.database import Store
from engine.engine import Engine
from engine.settings import ControlNet
from tests.bot.discord.conftest import StartBot
from tests.bot.discord.test_inpaint import embed_fields, inpaint, refusal, result
from tests.bot.discord.test_presets import preset
from tests.fakediscord import FakeDiscord


@pytest.fixture
def engine(controlnet_engine: Engine) -> Engine:
    return controlnet_engine


async def test_inpaint_with_tile_controlnet_runs_on_the_base_model_and_says_so(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store, tiny_sd_regular_path: Path
) -> None:
    await start_bot()
    # The guidance window and the tile's downsampling are set in presets (Discord's 25 options).
    await preset(fake_discord, "save", name="loose tile", control_end=0.8, tile_downsample=2.0)
    it = await inpaint(
        fake_discord, preset="loose tile", strength=1.0, controlnet="tile", control_weight=0.5
    )
    fields = embed_fields(await result(fake_discord, it))
    assert fields["ControlNet"] == "tile, weight 0.5, steps 0–0.8, downsample 2"
    assert fields["Model"] == escape_markdown(tiny_sd_regular_path.name)  # a local model: no path
    row = await jobs.get_job(store, 1)
    assert row is not None
    settings = row.inpaint_settings()
    assert (settings.controlnet, settings.control_weight, settings.tile_downsample) == (
        ControlNet.TILE,
        0.5,
        2.0,
    )


async def test_controlnet_settings_round_trip_through_a_preset(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    await preset(fake_discord, "save", name="keep pose", controlnet="tile", control_weight=1.5)
    it = await inpaint(fake_discord, preset="keep pose")
    await result(fake_discord, it)
    row = await jobs.get_job(store, 1)
    assert row is not None
    assert (row.inpaint_settings().controlnet, row.inpaint_settings().control_weight) == (
        ControlNet.TILE,
        1.5,
    )


async def test_bad_controlnet_options_are_refused(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    refused = await preset(fake_discord, "save", name="backwards", control_start=0.9, control_end=0.1)
    assert "control_start (0.9) must be less than control_end (0.1)" in refused
    it = await inpaint(fake_discord, control_weight=3.0)
    assert await refusal(fake_discord, it) == "control_weight must be between 0.0 and 2.0 (got 3.0)."
    await result(fake_discord, await inpaint(fake_discord))  # and the bot still serves
