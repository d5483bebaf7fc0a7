"""Every setting survives every Discord entry point: /inpaint's options, a preset, the server's default
preset, 🔁 (button and reaction), the ✏️ Edit form, 💾 Save preset and 🎭 Fix faces.

The observable is what the real engine was handed to run (``GatedEngine.ran``), compared in full with
what the member asked for, so a setting one path drops shows up by name in the assertion's diff. Every
value differs from its default, or a lost one would not show.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from engine.settings import FACE_DEFAULTS, InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_flows import ASTRONAUT
from tests.bot.discord.test_inpaint import JOB_TIMEOUT, has_result, result
from tests.bot.discord.test_presets import preset
from tests.bot.discord.test_results import delivered, ephemeral_answer, open_modal
from tests.fakediscord import FakeDiscord, FakeInteraction
from tests.pictures import photo, png_bytes, rect_mask

NEW_SEED = "a new random seed"
SEED = 1234
EDITED = {"prompt": "a blue hat", "negative_prompt": "grainy", "strength": 0.35, "seed": 77}


@pytest.fixture
def engine(controlnet_engine: Engine) -> Engine:
    """ControlNet settings reach the engine only if it has a ControlNet to run them with."""
    return controlnet_engine


@pytest.fixture
def asked(tiny_sd_path: Path) -> dict[str, Any]:
    """A value for every settings option of /inpaint but ``auto_mask``, none of them the default."""
    return {
        "prompt": "a red scarf",
        "negative_prompt": "blurry",
        "strength": 0.6,
        "steps": 4,
        "guidance": 5.5,
        "seed": SEED,
        "sampler": "ddim",
        "area": "whole",
        "padding": 40,
        "masked_content": "fill",
        "mask_blur": 6,
        "invert_mask": True,
        "mask_grow": 3,
        "count": 2,
        "model": str(tiny_sd_path),  # the engine's own model: an allowed name that loads
        "controlnet": "tile",
        "control_weight": 0.5,
        "mask_pick": "largest",
    }


# The settings Discord offers only in /preset save (25 options a command): set through a preset.
TUNED = {"control_start": 0.1, "control_end": 0.9, "tile_downsample": 2.0}


@pytest.fixture(autouse=True)
async def started(start_bot: StartBot, tiny_sd_path: Path) -> None:
    """The bot, offering the engine's model by name, so that the ``model`` option may name it."""
    await start_bot(models=[str(tiny_sd_path)])


def assert_ran(ran: InpaintSettings, wanted: dict[str, Any]) -> None:
    """``ran`` has exactly the ``wanted`` values (the rest at their defaults); ``NEW_SEED``: any seed
    but the first job's."""
    new_seed = wanted.get("seed") == NEW_SEED
    expected = InpaintSettings.parse(**wanted | ({"seed": None} if new_seed else {}))
    got = ran.model_dump(mode="json")
    if new_seed:
        assert got["seed"] not in (-1, SEED), "a new seed"
        got["seed"] = expected.seed
    assert got == expected.model_dump(mode="json")


async def inpaint_with(fake: FakeDiscord, **options: Any) -> FakeInteraction:
    """/inpaint on a photo and a mask with exactly ``options``."""
    image = fake.add_attachment(png_bytes(photo(96, 64)), "photo.png")
    mask = fake.add_attachment(png_bytes(rect_mask(96, 64, (24, 16, 72, 48))), "mask.png")
    return await fake.slash("inpaint", {"image": image, "mask": mask, **options})


async def inpaint_everything(fake: FakeDiscord, asked: dict[str, Any]) -> FakeInteraction:
    """/inpaint with every option, on a preset that holds the settings only presets offer."""
    assert (await preset(fake, "save", name="tuned", **TUNED)).startswith("Saved preset")
    return await inpaint_with(fake, preset="tuned", **asked)


async def test_the_settings_cover_every_option_of_inpaint(
    fake_discord: FakeDiscord, asked: dict[str, Any]
) -> None:
    """A new option must get a value in ``asked`` (and so a place in every path below). The other
    ways to make a mask (they exclude the uploaded one) are followed by their own tests: faces below,
    words in test_mask_words.py."""
    (command,) = [c for c in fake_discord.commands[None] if c["name"] == "inpaint"]
    options = {option["name"] for option in command["options"]}
    # preview_mask shows a preview instead of queuing: tests/bot/discord/test_mask_preview.py follows it.
    assert options - {"image", "mask", "preset", "auto_mask", "preview_mask", "mask_prompt"} == set(
        asked
    )
    (command,) = [c for c in fake_discord.commands[None] if c["name"] == "preset"]
    (save,) = [o for o in command["options"] if o["name"] == "save"]
    options = {option["name"] for option in save["options"]}
    assert options - {"name", "scope", "auto_mask", "preview_mask", "mask_prompt"} == (
        set(asked) - {"seed"} | set(TUNED)
    )


# What a member does to the delivered result of the first job (``message``); each returns the
# settings the job it starts must run with, once that job's result is out.
FollowUp = Callable[[FakeDiscord, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def reroll_button(fake: FakeDiscord, message: str, asked: dict[str, Any]) -> dict[str, Any]:
    await result(fake, await fake.click(message, "job:reroll:1"))
    return asked | {"seed": NEW_SEED}


async def reroll_reaction(fake: FakeDiscord, message: str, asked: dict[str, Any]) -> dict[str, Any]:
    await fake.react(message, "🔁", user=fake.owner)
    await fake.wait_for("post_message", has_result, timeout=JOB_TIMEOUT)
    return asked | {"seed": NEW_SEED}


async def edit_form(fake: FakeDiscord, message: str, asked: dict[str, Any]) -> dict[str, Any]:
    modal = await open_modal(fake, message, "job:edit:1")
    typed = {name: str(value) for name, value in EDITED.items()}
    await result(fake, await fake.submit_modal(modal, typed, message=message))
    return asked | EDITED


async def edit_form_as_filled_in(
    fake: FakeDiscord, message: str, asked: dict[str, Any]
) -> dict[str, Any]:
    """Submitted as the bot filled it in: what Discord sends for the fields a member leaves alone."""
    click = await fake.click(message, "job:edit:1")
    form = (await fake.wait_for("callback", click.owns)).json["data"]
    filled = {
        field["custom_id"]: field["value"] for row in form["components"] for field in row["components"]
    }
    assert filled.keys() == EDITED.keys()
    await result(fake, await fake.submit_modal(form["custom_id"], filled, message=message))
    return asked


async def saved_preset(fake: FakeDiscord, message: str, asked: dict[str, Any]) -> dict[str, Any]:
    """💾, then /inpaint with that preset and nothing else: the job again, but for its seed."""
    modal = await open_modal(fake, message, "job:preset:1")
    saved = await fake.submit_modal(modal, {"name": "all of it"}, message=message)
    assert (await ephemeral_answer(fake, saved)).startswith("Saved preset **all of it**")
    await result(fake, await inpaint_with(fake, preset="all of it"))
    return asked | {"seed": NEW_SEED}


@pytest.mark.parametrize(
    "follow_up", [reroll_button, reroll_reaction, edit_form, edit_form_as_filled_in, saved_preset]
)
async def test_inpaint_and_what_follows_a_result_keep_every_setting(
    fake_discord: FakeDiscord,
    gated_engine: GatedEngine,
    asked: dict[str, Any],
    follow_up: FollowUp,
) -> None:
    _, message = await delivered(fake_discord, await inpaint_everything(fake_discord, asked))
    wanted = await follow_up(fake_discord, message, asked | TUNED)
    first, then = gated_engine.ran
    assert_ran(first, asked | TUNED)
    assert_ran(then, wanted)


async def test_a_preset_and_the_servers_default_preset_keep_every_setting(
    fake_discord: FakeDiscord,
    gated_engine: GatedEngine,
    asked: dict[str, Any],
) -> None:
    presets_hold = {name: value for name, value in asked.items() if name != "seed"} | TUNED
    assert (await preset(fake_discord, "save", name="mine", **presets_hold)).startswith("Saved preset")
    await result(fake_discord, await inpaint_with(fake_discord, preset="mine"))

    owner = fake_discord.owner
    server = presets_hold | {"prompt": "the house style"}
    saved = await preset(fake_discord, "save", owner, name="house", scope="server", **server)
    assert saved.startswith("Saved server preset")
    it = await fake_discord.slash("server default-preset", {"name": "house"}, user=owner)
    set_default = (await fake_discord.wait_for("callback", it.owns)).json["data"]["content"]
    assert set_default.startswith("Every job here now starts from the server preset **house**")
    await result(fake_discord, await inpaint_with(fake_discord))

    mine, house = gated_engine.ran
    assert_ran(mine, presets_hold | {"seed": NEW_SEED})
    assert_ran(house, server | {"seed": NEW_SEED})


async def test_fix_faces_keeps_the_prompt_and_sampling_on_the_face_defaults(
    fake_discord: FakeDiscord,
    gated_engine: GatedEngine,
    asked: dict[str, Any],
) -> None:
    """🎭 repaints the faces of the result with the job's prompt, sampling and model; the mask and
    area settings are the face mask's own, as for ``auto_mask: face``."""
    astronaut = fake_discord.add_attachment(ASTRONAUT, "astronaut.png")
    corner = rect_mask(512, 512, (400, 400, 500, 500))  # the face stays as it was
    mask = fake_discord.add_attachment(png_bytes(corner), "mask.png")
    options = asked | {"invert_mask": False, "image": astronaut, "mask": mask}
    _, message = await delivered(fake_discord, await fake_discord.slash("inpaint", options))
    await result(fake_discord, await fake_discord.click(message, "job:faces:1"))

    _, faces = gated_engine.ran
    kept = ("prompt", "negative_prompt", "steps", "guidance", "sampler", "model")
    assert_ran(faces, {name: asked[name] for name in kept} | {"auto_mask": "face", "seed": NEW_SEED})
    assert (faces.strength, faces.mask_grow) == (FACE_DEFAULTS["strength"], FACE_DEFAULTS["mask_grow"])


async def test_the_face_mask_survives_a_preset_and_a_reroll(
    fake_discord: FakeDiscord, gated_engine: GatedEngine
) -> None:
    faces: dict[str, Any] = {"auto_mask": "face", "prompt": "a smile", "steps": 2, "mask_blur": 2}
    assert (await preset(fake_discord, "save", name="faces", **faces)).startswith("Saved preset")
    astronaut = fake_discord.add_attachment(ASTRONAUT, "astronaut.png")
    it = await fake_discord.slash("inpaint", {"image": astronaut, "preset": "faces"})
    _, message = await delivered(fake_discord, it)
    await result(fake_discord, await fake_discord.click(message, "job:reroll:1"))

    first, again = gated_engine.ran
    assert_ran(first, faces | {"seed": NEW_SEED})
    assert_ran(again, faces | {"seed": NEW_SEED})
    assert first.seed != again.seed
