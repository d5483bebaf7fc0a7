"""``/inpaint preview_mask:true``: a private picture of the mask with buttons, and only ✅ queues."""

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.store import jobs
from bot.store.database import Store
from bot.ui.buttons import EXPIRED_MESSAGE
from bot.ui.preview import CANCELLED, EXPIRED, FILENAME, GROW_STEP, QUEUED
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import EPHEMERAL, inpaint, result
from tests.bot.discord.test_presets import button_ids, preset
from tests.bot.discord.test_results import ephemeral_answer, private_followup
from tests.fakediscord import FakeDiscord, FakeInteraction
from tests.fakediscord.recording import Recorded
from tests.pictures import crowd, png_bytes

UPDATE_MESSAGE = 7
DEFERRED_UPDATE = 6


async def shown_preview(fake: FakeDiscord, it: FakeInteraction) -> Recorded:
    """The private preview that answers ``it``; its public "thinking" message is gone."""
    record = await fake.wait_for("followup", lambda r: it.owns(r) and bool(r.files))
    assert record.json["flags"] & EPHEMERAL
    assert [f.filename for f in record.files] == [FILENAME]
    assert it.original_id not in fake.messages
    return record


def picture(record: Recorded) -> np.ndarray:
    (file,) = record.files
    return np.asarray(Image.open(io.BytesIO(file.data)))


def red(record: Recorded) -> int:
    """How many pixels the overlay tints (the photo under it has little pure red)."""
    pixels = picture(record).astype(int)
    return int((pixels[..., 0] - pixels[..., 1] > 60).sum())


async def press(fake: FakeDiscord, message: str, label: str, user: Any = None) -> FakeInteraction:
    return await fake.click(message, button_ids(fake.message(message))[label], user=user)


async def redrawn(fake: FakeDiscord, click: FakeInteraction) -> Recorded:
    """The preview as a button changed it."""
    return await fake.wait_for("edit_webhook_message", lambda r: click.owns(r) and bool(r.files))


async def test_the_preview_is_private_adjustable_and_only_paint_queues_once(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    await start_bot()
    it = await inpaint(fake_discord, preview_mask=True, mask_blur=0)
    first = await shown_preview(fake_discord, it)
    message = first.reply["id"]
    assert list(button_ids(first.reply)) == ["Paint it", "Grow", "Shrink", "Invert", "Cancel"]
    assert picture(first).shape == (64, 96, 3)
    assert first.json["content"].startswith("Red is what will be repainted (the uploaded mask)")
    assert gated_engine.ran == [] and await jobs.get_job(store, 1) is None

    grown = await redrawn(fake_discord, await press(fake_discord, message, "Grow"))
    assert red(grown) > red(first)
    assert f"grown {GROW_STEP} px" in grown.json["content"]
    twice = await redrawn(fake_discord, await press(fake_discord, message, "Grow"))
    shrunk = await redrawn(fake_discord, await press(fake_discord, message, "Shrink"))
    assert red(first) < red(shrunk) < red(twice)
    inverted = await redrawn(fake_discord, await press(fake_discord, message, "Invert"))
    assert red(inverted) > 96 * 64 / 2 and "inverted" in inverted.json["content"]
    assert gated_engine.ran == [], "adjusting queues nothing"

    paint = await press(fake_discord, message, "Paint it")
    await result(fake_discord, paint)
    settings = InpaintSettings.parse(
        steps=3, mask_blur=0, preview_mask=True, mask_grow=GROW_STEP, invert_mask=True
    )
    (ran,) = gated_engine.ran
    assert ran.model_copy(update={"seed": -1}) == settings
    assert fake_discord.message(message)["content"] == QUEUED
    assert fake_discord.message(message)["components"] == []
    assert await jobs.get_job(store, 2) is None, "exactly one job"


async def test_cancel_queues_nothing_and_others_may_not_press(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    mallory = fake_discord.add_member("mallory")
    await start_bot()
    message = (await shown_preview(fake_discord, await inpaint(fake_discord, preview_mask=True))).reply[
        "id"
    ]
    refused = await press(fake_discord, message, "Paint it", user=mallory)
    assert (
        await ephemeral_answer(fake_discord, refused)
        == "Only the person who asked can use these buttons."
    )
    cancel = await press(fake_discord, message, "Cancel")
    answer = (await fake_discord.wait_for("callback", cancel.owns)).json
    assert answer["type"] == UPDATE_MESSAGE and answer["data"]["content"] == CANCELLED
    assert answer["data"]["components"] == [] and answer["data"]["attachments"] == []
    assert gated_engine.ran == [] and gated_engine.previewed and await jobs.get_job(store, 1) is None


async def test_a_preset_turns_it_on_and_off_and_a_mask_shrunk_away_is_refused(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    await start_bot()
    await preset(fake_discord, "save", name="look", preview_mask=True)
    await preset(fake_discord, "save", name="straight", preview_mask=False)
    await result(fake_discord, await inpaint(fake_discord, preset="straight"))
    it = await inpaint(fake_discord, preset="look", mask_grow=-8, mask_blur=0)  # of a 48x32 mask
    first = await shown_preview(fake_discord, it)
    message = first.reply["id"]
    assert "shrunk 8 px" in first.json["content"]
    shrink = await press(fake_discord, message, "Shrink")
    assert "mask is empty" in await private_followup(fake_discord, shrink)
    grow = await redrawn(fake_discord, await press(fake_discord, message, "Grow"))
    assert "(the uploaded mask)" in grow.json["content"], "from -8, as the refused shrink left it"
    assert len(gated_engine.ran) == 1


async def test_next_match_steps_through_the_faces_and_paints_the_one_shown(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    await start_bot()
    two = fake_discord.add_attachment(png_bytes(crowd(columns=2, rows=1)), "two.png")
    it = await fake_discord.slash(
        "inpaint", {"image": two, "auto_mask": "face", "preview_mask": True, "steps": 3}
    )
    first = await shown_preview(fake_discord, it)
    message = first.reply["id"]
    assert "Next match" in button_ids(first.reply)
    assert "all 2 matches" in first.json["content"]
    under = np.asarray(crowd(columns=2, rows=1))
    halves = []
    for expected in ("match 1 of 2", "match 2 of 2", "all 2 matches"):
        shown = await redrawn(fake_discord, await press(fake_discord, message, "Next match"))
        assert expected in shown.json["content"]
        tinted = (picture(shown) != under).any(axis=-1)
        halves.append((bool(tinted[:, :170].any()), bool(tinted[:, 170:].any())))
    assert sorted(halves[:2]) == [(False, True), (True, False)] and halves[2] == (True, True)
    await redrawn(fake_discord, await press(fake_discord, message, "Next match"))  # match 1 again
    await result(fake_discord, await press(fake_discord, message, "Paint it"))
    (ran,) = gated_engine.ran
    assert ran.mask_pick == "1"


async def test_expired_and_restarted_previews_say_start_again(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.ui.preview.PREVIEW_SECONDS", 0.3)
    await start_bot()
    message = (await shown_preview(fake_discord, await inpaint(fake_discord, preview_mask=True))).reply[
        "id"
    ]
    expired = await fake_discord.wait_for("edit_webhook_message", lambda r: r.json["content"] == EXPIRED)
    assert expired.json["components"] == [] and fake_discord.message(message)["attachments"] == []
    assert await jobs.get_job(store, 1) is None


async def test_a_preview_from_before_a_restart_says_start_again(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    bot = await start_bot()
    message = (await shown_preview(fake_discord, await inpaint(fake_discord, preview_mask=True))).reply[
        "id"
    ]
    paint_id = button_ids(fake_discord.message(message))["Paint it"]
    await bot.close()
    await bot.queue.close()
    await start_bot()
    late = await fake_discord.click(message, paint_id)
    assert await ephemeral_answer(fake_discord, late) == EXPIRED_MESSAGE
    assert await jobs.get_job(store, 1) is None
