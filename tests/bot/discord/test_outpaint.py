"""Outpainting on Discord: /outpaint, 🔍 Zoom out and ⬅ ➡ ⬆ ⬇ Pan on a result, chained like any job."""

import io

import pytest
from PIL import Image

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole
from bot.store.presets import get_preset, save_preset
from engine.engine import Engine
from engine.settings import Area, InpaintSettings
from tests.bot.discord.conftest import StartBot
from tests.bot.discord.test_inpaint import embed_fields, inpaint, refusal, result
from tests.bot.discord.test_jobs import answer, with_embed
from tests.bot.discord.test_results import buttons, delivered, ephemeral_answer, job, open_modal
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded
from tests.pictures import photo, png_bytes

ZOOM_BUTTONS = ["zoom15", "zoom2", "pan-left", "pan-right", "pan-up", "pan-down"]


async def outpaint(fake: FakeDiscord, **options: object) -> FakeInteraction:
    image = fake.add_attachment(png_bytes(photo(64, 48, seed=3)), "photo.png")
    return await fake.slash("outpaint", {"image": image, "steps": 2, **options})


def size(record: Recorded) -> tuple[int, int]:
    return Image.open(io.BytesIO(record.files[0].data)).size


async def test_outpaint_command_extends_the_upload(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    (command,) = [c for c in fake_discord.commands[None] if c["name"] == "outpaint"]
    assert len(command["options"]) <= 25
    it = await outpaint(fake_discord, prompt="a beach", zoom=2.0, seed=5)
    done, _ = await delivered(fake_discord, it)
    assert size(done) == (128, 96)
    fields = embed_fields(done)
    assert fields["Outpaint"] == "zoom 2×" and fields["Masked content"] == "fill"
    assert "Area" not in fields
    assert "the new border (outpainting)" in done.json["embeds"][0]["footer"]["text"]
    zoom_rows = [
        [c["custom_id"].split(":")[1] for c in row["components"]] for row in done.json["components"]
    ]
    assert zoom_rows[1:] == [ZOOM_BUTTONS[:2], ZOOM_BUTTONS[2:]]

    sides = await outpaint(fake_discord, left=16, down=8)
    assert size(await result(fake_discord, sides)) == (80, 56)
    assert embed_fields(await result(fake_discord, sides))["Outpaint"] == "left 16, down 8"
    assert (await job(store, 2)).inpaint_settings().left == 16


async def test_bad_outpaint_values_are_refused_before_queueing(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    nothing = await outpaint(fake_discord, left=0)
    assert (await refusal(fake_discord, nothing)).startswith("Nothing to add: give a zoom")
    both = await outpaint(fake_discord, zoom=1.5, up=10)
    assert "Give either zoom or pixels for the sides" in await refusal(fake_discord, both)
    huge = await outpaint(fake_discord, left=4096, right=4096, up=4096, down=4096)
    assert (await refusal(fake_discord, huge)).startswith(
        "Outpainting this 64x48 picture makes it 8256x8240 (68 megapixels), over this bot's limit"
    )
    assert await jobs.get_job(store, 1) is None, "nothing was queued"


async def test_zoom_then_reroll_then_zoom_chains_from_each_result(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    done, message = await delivered(fake_discord, await inpaint(fake_discord, prompt="a red scarf"))
    assert buttons(done)[-6:] == [f"job:{action}:1" for action in ZOOM_BUTTONS]

    zoomed, zoomed_message = await delivered(
        fake_discord, await fake_discord.click(message, "job:zoom15:1", user=fake_discord.alice)
    )
    assert size(zoomed) == (144, 96)  # 96x64 times 1.5
    first, second = await job(store, 1), await job(store, 2)
    assert second.parent_id == 1
    assert second.images_with(ImageRole.INPUT)[0].image.sha256 == (
        first.images_with(ImageRole.OUTPUT)[0].image.sha256
    ), "the zoom starts from the result"
    settings = second.inpaint_settings()
    assert settings.zoom == 1.5 and settings.prompt == "a red scarf"
    assert settings.strength == 0.8  # outpainting's default, not the inpainting's strength

    rerolled, rerolled_message = await delivered(
        fake_discord, await fake_discord.click(zoomed_message, "job:reroll:2")
    )
    assert size(rerolled) == (144, 96), "a re-roll zooms the same picture again"
    assert embed_fields(rerolled)["Seed"] != embed_fields(zoomed)["Seed"]
    third = await job(store, 3)
    assert third.images_with(ImageRole.INPUT)[0].image.sha256 == (
        second.images_with(ImageRole.INPUT)[0].image.sha256
    )

    again = await fake_discord.click(rerolled_message, "job:zoom2:3")
    assert size(await result(fake_discord, again)) == (288, 192)
    panned = await fake_discord.click(rerolled_message, "job:pan-up:3")
    assert size(await result(fake_discord, panned)) == (144, 96 + 48)  # half its height, on top
    assert (await job(store, 5)).inpaint_settings().up == 48


async def test_history_show_and_presets_know_the_outpainting(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    _, message = await delivered(fake_discord, await outpaint(fake_discord, right=24, prompt="dunes"))
    history = (await answer(fake_discord, await fake_discord.slash("history"))).json["data"]
    assert "outpaint right 24" in history["embeds"][0]["description"]
    shown = await with_embed(fake_discord, await fake_discord.slash("show", {"job": 1}))
    assert embed_fields(shown)["Outpaint"] == "right 24"

    modal = await open_modal(fake_discord, message, "job:preset:1")
    saved = await fake_discord.submit_modal(modal, {"name": "dunes"}, message=message)
    assert (await ephemeral_answer(fake_discord, saved)).startswith("Saved preset **dunes**")
    preset = await get_preset(store, int(fake_discord.alice["user"]["id"]), "dunes")
    assert preset.settings["prompt"] == "dunes" and preset.settings["strength"] == 0.8
    assert not {"right", "zoom", "seed"} & set(preset.settings), "the border is the job's own"
    # A preset's prompt reaches /outpaint like /inpaint; the border comes from the command.
    it = await outpaint(fake_discord, preset="dunes", up=8)
    done = await result(fake_discord, it)
    assert "dunes" in done.json["embeds"][0]["description"] and size(done) == (64, 56)
    # A preset made for masks serves too: what only a mask means is left out.
    alice = int(fake_discord.alice["user"]["id"])
    masks = InpaintSettings.parse(mask_prompt="hat", invert_mask=True, area="whole", strength=0.5)
    await save_preset(store, alice, "hats", masks, max_per_user=25)
    done = await result(fake_discord, await outpaint(fake_discord, preset="hats", left=8))
    ran = (await job(store, 3)).inpaint_settings()
    assert ran.strength == 0.5 and ran.left == 8
    assert ran.mask_prompt is None and not ran.invert_mask and ran.area is Area.MASKED


async def test_a_zoom_over_the_size_limit_is_refused_on_the_button_too(
    fake_discord: FakeDiscord,
    start_bot: StartBot,
    store: Store,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_bot()
    _, message = await delivered(fake_discord, await inpaint(fake_discord))
    monkeypatch.setattr(engine.config, "max_pixels", 96 * 64 * 3)  # the operator's limit, lowered
    click = await fake_discord.click(message, "job:zoom2:1")
    assert (await refusal(fake_discord, click)).startswith(
        "Outpainting this 96x64 picture makes it 192x128 (0.0246 megapixels), over this bot's limit"
    )
    assert await jobs.get_job(store, 2) is None, "nothing was queued"
    panned = await fake_discord.click(message, "job:pan-right:1")  # 144x64 fits
    assert size(await result(fake_discord, panned)) == (144, 64)
