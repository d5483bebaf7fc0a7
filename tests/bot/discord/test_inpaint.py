"""Golden flows of /inpaint: the real discord.py client against the fake Discord, the tiny model."""

import asyncio
import io
import logging
from typing import Any

import pytest
from PIL import Image

from bot.store.presets import save_preset
from bot.store.retention import BYTES_PER_GB, CleanupReport, RetentionPolicy
from bot.uploads import DEFAULT_UPLOAD_LIMIT, PREVIEW_FILENAME
from engine.images import NO_MASK_MESSAGE
from engine.job import MaskSource
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded
from tests.pictures import astronaut, circled_face_copy, phone_copy, photo, png_bytes, rect_mask

EPHEMERAL = 64
JOB_TIMEOUT = 60  # the tiny model takes well under a second; a loaded CI machine can be slower


def transparent_hole() -> bytes:
    picture = photo(96, 64).convert("RGBA")
    picture.paste((0, 0, 0, 0), (24, 16, 72, 48))
    return png_bytes(picture)


async def inpaint(fake: FakeDiscord, mask: bool = True, **options: Any) -> FakeInteraction:
    values: dict[str, Any] = {"image": fake.add_attachment(png_bytes(photo(96, 64)), "photo.png")}
    if mask:
        values["mask"] = fake.add_attachment(png_bytes(rect_mask(96, 64, (24, 16, 72, 48))), "mask.png")
    return await fake.slash("inpaint", {**values, "steps": 3, **options})


def has_result(record: Recorded) -> bool:
    """Carries a result picture (progress edits carry a preview instead)."""
    return any(f.filename != PREVIEW_FILENAME for f in record.files)


def has_preview(record: Recorded) -> bool:
    return [f.filename for f in record.files] == [PREVIEW_FILENAME]


async def result(fake: FakeDiscord, it: FakeInteraction) -> Recorded:
    return await fake.wait_for(
        "edit_webhook_message", lambda r: it.owns(r) and has_result(r), timeout=JOB_TIMEOUT
    )


async def refusal(fake: FakeDiscord, it: FakeInteraction) -> str:
    """The ephemeral message a refused command ends with; the public "thinking" message is gone."""
    record = await fake.wait_for("followup", lambda r: it.owns(r) and r.json["flags"] & EPHEMERAL)
    assert it.original_id not in fake.messages
    assert not fake.recorded("edit_webhook_message", it.owns)
    return record.json["content"]


def embed_fields(record: Recorded) -> dict[str, str]:
    return {field["name"]: field["value"] for field in record.json["embeds"][0]["fields"]}


async def test_inpaint_with_a_mask_defers_shows_progress_and_delivers(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot(edit_interval=0)
    assert "inpaint" in {command["name"] for command in fake_discord.commands[None]}
    it = await inpaint(fake_discord, prompt="a red scarf", seed=42)
    deferral = await fake_discord.wait_for("callback", it.owns)
    assert deferral.json["type"] == 5 and deferral.at - it.at < 1.0

    done = await result(fake_discord, it)
    statuses = [r.json["content"] for r in fake_discord.recorded("edit_webhook_message", it.owns)]
    assert statuses[0].startswith("⏳ Queued: position 1")
    assert any(status.startswith("🎨 Step") for status in statuses)
    assert [f.filename for f in done.files] == ["inpaint-1-42.png"]
    assert Image.open(io.BytesIO(done.files[0].data)).size == (96, 64)
    assert embed_fields(done)["Seed"] == "42"
    assert "a red scarf" in done.json["embeds"][0]["description"]
    assert "uploaded mask" in done.json["embeds"][0]["footer"]["text"]


async def test_progress_edits_are_coalesced(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot(edit_interval=60)
    it = await inpaint(fake_discord, steps=6)
    await result(fake_discord, it)
    statuses = fake_discord.recorded("edit_webhook_message", lambda r: it.owns(r) and not has_result(r))
    assert len(statuses) == 1, "one status edit, then nothing until the result"


async def test_progress_shows_a_preview_of_the_picture_being_painted(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot(edit_interval=0)
    it = await inpaint(fake_discord, steps=4)
    done = await result(fake_discord, it)
    steps = fake_discord.recorded(
        "edit_webhook_message", lambda r: it.owns(r) and r.json["content"].startswith("🎨 Step")
    )
    assert steps and all(has_preview(r) for r in steps)
    preview = Image.open(io.BytesIO(steps[-1].files[0].data))
    assert preview.format == "JPEG" and max(preview.size) <= 256
    # The result replaces the preview: only the result's own file is left on the message.
    assert it.original_id is not None
    names = [a["filename"] for a in fake_discord.message(it.original_id)["attachments"]]
    assert names == [done.files[0].filename]


async def test_previews_can_be_turned_off(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    await start_bot(edit_interval=0, progress_previews=False)
    it = await inpaint(fake_discord, steps=4)
    await result(fake_discord, it)
    statuses = fake_discord.recorded("edit_webhook_message", lambda r: it.owns(r) and not has_result(r))
    assert any(r.json["content"].startswith("🎨 Step") for r in statuses)
    assert not any(r.files for r in statuses)


async def test_the_images_transparency_is_the_mask(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    image = fake_discord.add_attachment(transparent_hole(), "erased.png")
    it = await fake_discord.slash("inpaint", {"image": image, "steps": 2, "seed": 7})
    done = await result(fake_discord, it)
    assert "transparent pixels" in done.json["embeds"][0]["footer"]["text"]
    assert embed_fields(done)["Seed"] == "7"


async def test_strokes_on_a_copy_of_the_picture_are_the_mask(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    copy, _ = circled_face_copy()
    image = fake_discord.add_attachment(png_bytes(astronaut()), "astronaut.png")
    mask = fake_discord.add_attachment(copy, "marked.jpg")
    it = await fake_discord.slash("inpaint", {"image": image, "mask": mask, "steps": 2})
    done = await result(fake_discord, it)
    assert MaskSource.SCRIBBLE.value in done.json["embeds"][0]["footer"]["text"]


async def test_a_copy_with_nothing_drawn_is_refused(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    image = fake_discord.add_attachment(png_bytes(astronaut()), "astronaut.png")
    mask = fake_discord.add_attachment(phone_copy(astronaut()), "copy.jpg")
    it = await fake_discord.slash("inpaint", {"image": image, "mask": mask, "steps": 2})
    assert "nothing drawn on it" in await refusal(fake_discord, it)


async def test_bad_inputs_are_refused_ephemerally_and_the_bot_keeps_serving(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    text = fake_discord.add_attachment(b"hello", "notes.txt")
    it = await fake_discord.slash("inpaint", {"image": text})
    assert "`notes.txt` is not a picture" in await refusal(fake_discord, it)

    broken = fake_discord.add_attachment(b"\x89PNG broken", "broken.png")
    it = await fake_discord.slash("inpaint", {"image": broken})
    assert "image" in (await refusal(fake_discord, it)).lower()

    it = await inpaint(fake_discord, mask=False)
    assert await refusal(fake_discord, it) == NO_MASK_MESSAGE

    it = await inpaint(fake_discord, steps=500)  # the client would refuse it; the fake sends it anyway
    assert await refusal(fake_discord, it) == "steps must be between 1 and 150 (got 500)."

    it = await inpaint(fake_discord, preset="nope")
    assert await refusal(fake_discord, it) == (
        "You have no preset called 'nope', and neither does this server. "
        "`/preset list` shows the ones you can use."
    )

    it = await inpaint(fake_discord, model="someone/any-model")  # would download it, or read a path
    assert (await refusal(fake_discord, it)).startswith("Unknown model 'someone/any-model'.")

    it = await inpaint(fake_discord, seed=3)
    assert embed_fields(await result(fake_discord, it))["Seed"] == "3"


async def test_a_full_queue_is_refused(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    gated_engine.gate.clear()
    await start_bot(queue_max_per_user=1)
    first = await inpaint(fake_discord)
    await fake_discord.wait_for("edit_webhook_message", first.owns)
    second = await inpaint(fake_discord)
    assert "the most one person may have at a time (1)" in await refusal(fake_discord, second)
    gated_engine.gate.set()
    await result(fake_discord, first)


async def test_a_result_after_the_token_expired_is_a_reply_in_the_channel(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    gated_engine.gate.clear()
    await start_bot()
    it = await inpaint(fake_discord, seed=5)
    await fake_discord.wait_for("edit_webhook_message", it.owns)
    fake_discord.expire(it)
    gated_engine.gate.set()
    late = await fake_discord.wait_for("post_message", timeout=JOB_TIMEOUT)
    assert late.reply["content"].startswith(f"<@{fake_discord.alice['user']['id']}>")
    assert late.reply["message_reference"]["message_id"] == it.original_id
    assert [f.filename for f in late.files] == ["inpaint-1-5.png"]
    assert embed_fields(late)["Seed"] == "5"
    # The status message, out of reach of the dead token, is ended through the channel.
    ended = await fake_discord.wait_for(
        "edit_message", lambda r: r.params["message_id"] == it.original_id
    )
    assert ended.json["content"] == "Job 1 has finished: see the reply below."
    assert ended.json["components"] == [] and ended.status == 200


async def test_a_result_over_the_upload_limit_is_reencoded_to_fit(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    fake_discord.upload_limit = 4000
    await start_bot()
    it = await inpaint(fake_discord, seed=9)
    done = await result(fake_discord, it)
    assert done.status == 200 and len(done.files[0].data) <= 4000
    assert done.files[0].filename == "inpaint-1-9.webp"
    assert fake_discord.upload_limit < DEFAULT_UPLOAD_LIMIT


async def test_commands_sync_to_the_listed_guilds_instantly(
    fake_discord: FakeDiscord, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    fake_discord.commands[None] = [{"name": "inpaint"}]  # synced globally before the switch
    unknown = 4242  # a server the bot is not in: Discord answers 403 Missing Access
    await start_bot(guild_ids=[unknown, int(fake_discord.guild_id)])
    assert fake_discord.commands[None] == [], "members would see every command twice"
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.startswith(f"could not register the slash commands in server {unknown} ")
    assert "the bot is not in that server, or was invited without the applications.commands" in error
    assert (await result(fake_discord, await inpaint(fake_discord))).status == 200
    commands = {command["name"]: command for command in fake_discord.commands[fake_discord.guild_id]}
    command = commands["inpaint"]
    options = {option["name"] for option in command["options"]}
    assert options == {
        "image", "mask", "prompt", "negative_prompt", "auto_mask", "preset", "strength", "steps",
        "guidance", "seed", "sampler", "area", "padding", "masked_content", "mask_blur", "invert_mask",
        "mask_grow", "count", "model", "controlnet", "control_weight", "preview_mask", "mask_prompt",
        "mask_pick",
    }  # fmt: skip
    assert len(options) <= 25, "Discord refuses a command with more options"


async def test_picture_retention_runs_when_the_bot_starts(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[RetentionPolicy] = []
    ran = asyncio.Event()

    async def record(store: object, policy: RetentionPolicy) -> CleanupReport:
        passes.append(policy)
        ran.set()
        return CleanupReport(purged=0, freed_bytes=0, stray_files=0)

    monkeypatch.setattr("bot.store.retention.clean_up", record)
    await start_bot(retention_max_gb=1.5)
    await asyncio.wait_for(ran.wait(), timeout=5)
    assert passes == [RetentionPolicy(max_age=None, max_bytes=int(1.5 * BYTES_PER_GB))]


async def test_preset_and_model_autocomplete(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    bot = await start_bot(models=["extra/sdxl-inpainting"])
    for name in ("Portrait fix", "hands", "portrait soft"):
        await save_preset(
            bot.store,
            int(fake_discord.alice["user"]["id"]),
            name,
            InpaintSettings.parse(steps=9),
            max_per_user=25,
        )

    it = await fake_discord.slash("inpaint", {"preset": "portrait"}, focused="preset")
    answer = await fake_discord.wait_for("callback", it.owns)
    assert answer.json["type"] == 8  # autocomplete result
    assert [c["value"] for c in answer.json["data"]["choices"]] == ["Portrait fix", "portrait soft"]

    it = await fake_discord.slash("inpaint", {"model": "SDXL"}, focused="model")
    answer = await fake_discord.wait_for("callback", it.owns)
    assert [c["value"] for c in answer.json["data"]["choices"]] == ["extra/sdxl-inpainting"]
