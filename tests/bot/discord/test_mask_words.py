"""/inpaint mask_prompt: end to end through the fake Discord, with a finder whose boxes are known."""

import io

import numpy as np
import pytest
from PIL import Image

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole
from engine.engine import Engine
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import embed_fields, refusal, result
from tests.bot.discord.test_mask_preview import picture, press, redrawn, shown_preview
from tests.bot.discord.test_presets import button_ids, preset
from tests.bot.discord.test_results import delivered
from tests.fakediscord import FakeDiscord
from tests.pictures import photo, png_bytes
from tests.support.known_boxes import KnownBoxes

HAT = (24, 16, 72, 48, 0.9)


@pytest.fixture
def finder(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> KnownBoxes:
    known = KnownBoxes({"hat": [HAT], "face": [(30, 20, 40, 30, 0.8)]})
    monkeypatch.setattr(engine, "word_finder", known)
    return known


@pytest.fixture(autouse=True)
async def started(start_bot: StartBot) -> None:
    await start_bot(edit_interval=0)


def photo_attachment(fake: FakeDiscord) -> str:
    return fake.add_attachment(png_bytes(photo(96, 64)), "photo.png")


async def test_inpaint_masks_what_the_words_name(
    fake_discord: FakeDiscord, finder: KnownBoxes, gated_engine: GatedEngine, store: Store
) -> None:
    options = {
        "image": photo_attachment(fake_discord),
        "mask_prompt": "hat | not face",
        "steps": 2,
        "preview_mask": False,  # on by default for words: test_words_show_the_mask_first below
    }
    done = await result(fake_discord, await fake_discord.slash("inpaint", {**options, "mask_pick": "1"}))
    # Markdown-escaped: "||" would start a spoiler. Discord shows "hat | not face (pick: 1)".
    assert embed_fields(done)["Mask from words"] == "hat \\| not face (pick: 1)"
    assert "mask: mask from words" in done.json["embeds"][0]["footer"]["text"]
    assert finder.asked == ["hat", "face"]
    (ran,) = gated_engine.ran
    assert (ran.mask_prompt, ran.mask_pick) == ("hat | not face", "1")
    job = await jobs.get_job(store, 1)
    assert job is not None and job.images_with(ImageRole.FOUND_MASK)
    assert not job.images_with(ImageRole.MASK)


async def test_nothing_found_is_refused_and_nothing_queued(
    fake_discord: FakeDiscord, finder: KnownBoxes, store: Store
) -> None:
    it = await fake_discord.slash(
        "inpaint", {"image": photo_attachment(fake_discord), "mask_prompt": "a unicorn"}
    )
    assert (await refusal(fake_discord, it)).startswith(
        "Nothing matching 'a unicorn' was found in the picture, so nothing was queued."
    )
    assert await jobs.get_job(store, 1) is None


async def test_a_reroll_reuses_the_stored_mask(
    fake_discord: FakeDiscord, finder: KnownBoxes, gated_engine: GatedEngine, store: Store
) -> None:
    """From a preset, re-rolled: the words are searched once; the re-roll paints the stored mask,
    even once the finder would find something else."""
    words = {"mask_prompt": "hat", "steps": 2, "mask_blur": 0, "preview_mask": False}
    assert (await preset(fake_discord, "save", name="hats", **words)).startswith("Saved preset")
    it = await fake_discord.slash("inpaint", {"image": photo_attachment(fake_discord), "preset": "hats"})
    _, message = await delivered(fake_discord, it)
    finder.boxes["hat"] = [(0, 0, 10, 10, 0.9)]
    again = await result(fake_discord, await fake_discord.click(message, "job:reroll:1"))
    assert embed_fields(again)["Mask from words"] == "hat"
    assert finder.asked == ["hat"]
    first, reroll = gated_engine.ran
    assert reroll.mask_prompt == "hat" and reroll.seed != first.seed
    stored = [await jobs.get_job(store, job_id) for job_id in (1, 2)]
    found = [job.images_with(ImageRole.FOUND_MASK)[0].image.sha256 for job in stored if job]
    assert len(found) == 2 and found[0] == found[1]


async def test_words_show_the_mask_first(
    fake_discord: FakeDiscord, finder: KnownBoxes, store: Store
) -> None:
    """A mask found from words is one the member has not seen: it is previewed unless turned off."""
    it = await fake_discord.slash(
        "inpaint", {"image": photo_attachment(fake_discord), "mask_prompt": "hat"}
    )
    preview = await shown_preview(fake_discord, it)  # private, with the overlay attached
    assert preview.files
    assert await jobs.get_job(store, 1) is None, "nothing is queued before ✅"


async def test_next_match_steps_through_what_the_words_found_and_paints_the_one_shown(
    fake_discord: FakeDiscord, finder: KnownBoxes, gated_engine: GatedEngine, store: Store
) -> None:
    """Two hats: ⏭ shows the most confident one first (mask_pick 1), and ✅ paints only it."""
    finder.boxes["hat"] = [(2, 2, 12, 12, 0.5), HAT]
    options = {"image": photo_attachment(fake_discord), "mask_prompt": "hat", "mask_blur": 0, "steps": 2}
    first = await shown_preview(fake_discord, await fake_discord.slash("inpaint", options))
    message = first.reply["id"]
    assert "Next match" in button_ids(first.reply)
    assert "all 2 matches" in first.json["content"]
    one = await redrawn(fake_discord, await press(fake_discord, message, "Next match"))
    assert "match 1 of 2" in one.json["content"]
    tinted = (picture(one) != np.asarray(photo(96, 64))).any(axis=-1)
    assert tinted[32, 48] and not tinted[7, 7], "the confident hat, not the small one"
    await result(fake_discord, await press(fake_discord, message, "Paint it"))
    (ran,) = gated_engine.ran
    assert ran.mask_pick == "1"
    job = await jobs.get_job(store, 1)
    assert job is not None
    found = store.files.read(job.images_with(ImageRole.FOUND_MASK)[0].image.sha256)
    assert Image.open(io.BytesIO(found)).getbbox() == HAT[:4], "the stored mask is the hat painted"
