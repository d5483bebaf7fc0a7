"""Golden flows of a result's buttons and 🔁 reactions, against the fake Discord and the tiny model."""

import asyncio

from PIL import Image
from skimage import data
from sqlalchemy import update

from bot.store import jobs
from bot.store.database import Store
from bot.store.models import ImageRole, Job, JobStatus
from bot.store.presets import get_preset, save_preset
from bot.ui.buttons import EXPIRED_MESSAGE
from engine.job import MaskSource
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import (
    EPHEMERAL,
    JOB_TIMEOUT,
    embed_fields,
    inpaint,
    refusal,
    result,
)
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded
from tests.fakediscord.payloads import JSON
from tests.pictures import photo, png_bytes, rect_mask

MODAL = 9
DEFERRED_UPDATE = 6
RESULT_BUTTONS = ["reroll", "edit", "faces", "preset", "delete", "zoom15", "zoom2"]
RESULT_BUTTONS += ["pan-left", "pan-right", "pan-up", "pan-down"]


def buttons(record: Recorded) -> list[str]:
    return [c["custom_id"] for row in record.json["components"] for c in row["components"]]


def mention(member: JSON) -> str:
    return f"<@{member['user']['id']}>"


async def shown(fake: FakeDiscord, message_id: str) -> None:
    """The delivery's last step: the bot reacts 🔁 after recording the message in the database."""
    await fake.wait_for("add_reaction", lambda r: r.params["message_id"] == message_id)


async def delivered(fake: FakeDiscord, it: FakeInteraction) -> tuple[Recorded, str]:
    """The result of the job ``it`` started, once fully shown, and its message id."""
    done = await result(fake, it)
    assert it.original_id is not None
    await shown(fake, it.original_id)
    return done, it.original_id


async def handled(fake: FakeDiscord, click: FakeInteraction) -> None:
    """Until the bot's handler of a button click has returned. discord.py runs it in a task named
    after the button's custom id, still running when its answer (the callback) reaches Discord."""
    await fake.wait_for("callback", click.owns)
    custom_id = click.payload["data"]["custom_id"]
    running = {task for task in asyncio.all_tasks() if task.get_name().endswith(f"-{custom_id}")}
    assert running, "no task runs the click's handler: has discord.py renamed them?"
    _, pending = await asyncio.wait(running, timeout=5)
    assert not pending, "the click's handler did not return"


async def job(store: Store, job_id: int) -> Job:
    row = await jobs.get_job(store, job_id)
    assert row is not None
    return row


async def ephemeral_answer(fake: FakeDiscord, it: FakeInteraction) -> str:
    record = await fake.wait_for("callback", it.owns)
    assert record.json["type"] == 4 and record.json["data"]["flags"] & EPHEMERAL, record.json
    return record.json["data"]["content"]


async def private_followup(fake: FakeDiscord, it: FakeInteraction) -> str:
    """The ephemeral followup that answers ``it`` after a deferral."""
    record = await fake.wait_for("followup", it.owns)
    assert record.json["flags"] & EPHEMERAL, record.json
    return record.json["content"]


async def open_modal(fake: FakeDiscord, message: str, custom_id: str) -> str:
    click = await fake.click(message, custom_id)
    modal = await fake.wait_for("callback", click.owns)
    assert modal.json["type"] == MODAL
    return modal.json["data"]["custom_id"]


async def test_a_result_has_its_buttons_and_a_reroll_reaction_and_is_recorded(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    it = await inpaint(fake_discord, seed=42)
    done, message = await delivered(fake_discord, it)
    assert buttons(done) == [f"job:{action}:1" for action in RESULT_BUTTONS]
    assert (await job(store, 1)).message_id == int(message)


async def test_reroll_button_starts_a_job_on_the_same_inputs_with_a_new_seed(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    it = await inpaint(fake_discord, prompt="a red scarf", seed=42)
    _, message = await delivered(fake_discord, it)
    click = await fake_discord.click(message, "job:reroll:1", user=fake_discord.owner)
    again = await result(fake_discord, click)
    assert again.json["content"].startswith(mention(fake_discord.owner))
    assert embed_fields(again)["Seed"] != "42"
    assert "a red scarf" in again.json["embeds"][0]["description"]
    first, second = await job(store, 1), await job(store, 2)
    assert second.parent_id == 1 and second.user_id == int(fake_discord.owner["user"]["id"])
    inputs = {link.role: link.image.sha256 for link in first.images if link.role is not ImageRole.OUTPUT}
    assert {link.role: link.image.sha256 for link in second.images if link.role in inputs} == inputs


async def test_edit_applies_the_modals_values_and_refuses_bad_ones(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot()
    it = await inpaint(fake_discord, prompt="a red scarf", seed=42)
    _, message = await delivered(fake_discord, it)
    values = {"prompt": "a blue hat", "negative_prompt": "blur", "strength": "0.5", "seed": "7"}

    modal = await open_modal(fake_discord, message, "job:edit:1")
    bad = await fake_discord.submit_modal(modal, values | {"strength": "lots"}, message=message)
    assert await refusal(fake_discord, bad) == "Strength must be a number (got 'lots')."

    modal = await open_modal(fake_discord, message, "job:edit:1")
    bad = await fake_discord.submit_modal(modal, values | {"strength": "2"}, message=message)
    assert "strength" in await refusal(fake_discord, bad)

    modal = await open_modal(fake_discord, message, "job:edit:1")
    edited = await fake_discord.submit_modal(modal, values, message=message)
    done = await result(fake_discord, edited)
    fields = embed_fields(done)
    assert fields["Seed"] == "7" and fields["Strength"] == "0.5" and fields["Negative prompt"] == "blur"
    assert "a blue hat" in done.json["embeds"][0]["description"]


async def test_edit_is_for_the_owner_and_manage_messages_others_may_reroll(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    """Edit at strength 0 would post the owner's upload as it is, the part they masked out included:
    only they (or a moderator) may change a job's settings; others re-roll it as it is."""
    stranger = fake_discord.add_member("mallory")
    await start_bot()
    it = await inpaint(fake_discord, prompt="a red scarf", seed=42)
    _, message = await delivered(fake_discord, it)

    refused = await fake_discord.click(message, "job:edit:1", user=stranger)
    assert await ephemeral_answer(fake_discord, refused) == (
        "Only the person who ran job 1 or someone who may manage messages can edit it; "
        "re-roll it (🔁) to get your own version."
    )
    rerolled = await fake_discord.click(message, "job:reroll:1", user=stranger)
    assert embed_fields(await result(fake_discord, rerolled))["Strength"] == "0.75"

    values = {"prompt": "a red scarf", "negative_prompt": "", "strength": "0", "seed": "7"}
    click = await fake_discord.click(message, "job:edit:1", user=fake_discord.owner)  # a moderator
    modal = (await fake_discord.wait_for("callback", click.owns)).json["data"]["custom_id"]
    edited = await fake_discord.submit_modal(modal, values, user=fake_discord.owner, message=message)
    assert embed_fields(await result(fake_discord, edited))["Strength"] == "0"
    assert [s.strength for s in gated_engine.ran] == [0.75, 0.75, 0]


async def test_fix_faces_repaints_the_faces_of_the_result(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    astronaut = png_bytes(Image.fromarray(data.astronaut()))
    image = fake_discord.add_attachment(astronaut, "astronaut.png")
    mask = fake_discord.add_attachment(png_bytes(rect_mask(512, 512, (400, 400, 500, 500))), "m.png")
    it = await fake_discord.slash("inpaint", {"image": image, "mask": mask, "steps": 2})
    _, message = await delivered(fake_discord, it)
    click = await fake_discord.click(message, "job:faces:1")
    done = await result(fake_discord, click)
    assert MaskSource.FACE.value in done.json["embeds"][0]["footer"]["text"]
    assert embed_fields(done)["Strength"] == "0.4"
    (output,) = (await job(store, 1)).images_with(ImageRole.OUTPUT)
    (source,) = (await job(store, 2)).images_with(ImageRole.INPUT)
    assert source.image.sha256 == output.image.sha256


async def test_save_preset_keeps_the_settings_without_the_seed(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    it = await inpaint(fake_discord, prompt="a red scarf", seed=42, steps=4)
    _, message = await delivered(fake_discord, it)

    modal = await open_modal(fake_discord, message, "job:preset:1")
    bad = await fake_discord.submit_modal(modal, {"name": "  "}, message=message)
    assert await ephemeral_answer(fake_discord, bad) == "A preset name must be 1 to 32 characters long."

    modal = await open_modal(fake_discord, message, "job:preset:1")
    saved = await fake_discord.submit_modal(modal, {"name": "scarf"}, message=message)
    assert (await ephemeral_answer(fake_discord, saved)).startswith("Saved preset **scarf**")
    preset = await get_preset(store, int(fake_discord.alice["user"]["id"]), "scarf")
    assert preset.settings["prompt"] == "a red scarf" and preset.settings["steps"] == 4
    assert "seed" not in preset.settings


async def test_delete_is_for_the_owner_or_manage_messages_only(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    stranger = fake_discord.add_member("mallory")
    await start_bot()
    it = await inpaint(fake_discord)
    _, message = await delivered(fake_discord, it)
    refused = await fake_discord.click(message, "job:delete:1", user=stranger)
    assert "Only the person who ran job 1" in await ephemeral_answer(fake_discord, refused)
    assert message in fake_discord.messages

    moderator = await fake_discord.click(message, "job:delete:1", user=fake_discord.owner)
    await fake_discord.wait_for("delete_message", lambda r: r.params["message_id"] == message)
    assert (await fake_discord.wait_for("callback", moderator.owns)).json["type"] == DEFERRED_UPDATE
    assert message not in fake_discord.messages


async def test_cancel_while_queued(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    stranger = fake_discord.add_member("mallory")
    gated_engine.gate.clear()
    await start_bot(edit_interval=0)
    first = await inpaint(fake_discord)
    await fake_discord.wait_for("edit_webhook_message", first.owns)  # job 1: the commands may race
    second = await inpaint(fake_discord)
    status = await fake_discord.wait_for("edit_webhook_message", second.owns)
    assert status.json["content"].startswith("⏳ Queued") and buttons(status) == ["job:cancel:2"]
    assert second.original_id is not None
    message = second.original_id

    refused = await fake_discord.click(message, "job:cancel:2", user=stranger)
    assert "Only the person who ran job 2" in await ephemeral_answer(fake_discord, refused)
    click = await fake_discord.click(message, "job:cancel:2")
    cancelled = await fake_discord.wait_for(
        "edit_webhook_message", lambda r: second.owns(r) and "cancelled" in r.json["content"]
    )
    assert cancelled.json["components"] == []
    assert (await fake_discord.wait_for("callback", click.owns)).json["type"] == DEFERRED_UPDATE
    assert (await job(store, 2)).status is JobStatus.CANCELLED

    gated_engine.gate.set()
    await result(fake_discord, first)


async def test_cancel_while_running_and_again_after_it_ended(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    gated_engine.gate.clear()
    await start_bot(edit_interval=0)
    it = await inpaint(fake_discord)
    await fake_discord.wait_for(
        "edit_webhook_message", lambda r: it.owns(r) and r.json["content"].startswith("🎨 Running")
    )
    assert await asyncio.to_thread(gated_engine.waiting.wait, JOB_TIMEOUT)
    assert (await job(store, 1)).status is JobStatus.RUNNING
    assert it.original_id is not None
    status_buttons = fake_discord.message(it.original_id)["components"]
    click = await fake_discord.click(it.original_id, "job:cancel:1")
    assert (await fake_discord.wait_for("callback", click.owns)).json["type"] == DEFERRED_UPDATE
    assert gated_engine.cancel is not None  # the run is told to stop
    assert await asyncio.to_thread(gated_engine.cancel.wait, JOB_TIMEOUT)
    gated_engine.gate.set()
    cancelled = await fake_discord.wait_for(
        "edit_webhook_message", lambda r: it.owns(r) and "cancelled" in r.json["content"]
    )
    assert cancelled.json["components"] == [] and not cancelled.files
    assert (await job(store, 1)).status is JobStatus.CANCELLED

    # A ✖ pressed on a device that still shows the old status is answered, not ignored, and the
    # message the button is on (the deferral's original response) stays.
    fake_discord.message(it.original_id)["components"] = status_buttons
    again = await fake_discord.click(it.original_id, "job:cancel:1")
    assert (await fake_discord.wait_for("callback", again.owns)).json["type"] == DEFERRED_UPDATE
    assert await private_followup(fake_discord, again) == "Job 1 is no longer queued or running."
    assert not fake_discord.recorded("delete_webhook_message")
    assert it.original_id in fake_discord.messages


async def test_a_reroll_reaction_by_a_member_replies_with_their_own_job(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    it = await inpaint(fake_discord, seed=42)
    _, message = await delivered(
        fake_discord, it
    )  # the bot's own 🔁 reaches the bot too, and is ignored
    await fake_discord.react(message, "🔁", user=fake_discord.helper_bot)
    await fake_discord.react(message, "👍", user=fake_discord.owner)
    await fake_discord.react(message, "🔁", user=fake_discord.owner)

    reply = await fake_discord.wait_for("post_message", timeout=JOB_TIMEOUT)
    assert reply.reply["message_reference"]["message_id"] == message
    assert reply.json["content"].startswith(mention(fake_discord.owner))
    assert embed_fields(reply)["Seed"] != "42"
    assert buttons(reply) == [f"job:{action}:2" for action in RESULT_BUTTONS]
    await shown(fake_discord, reply.reply["id"])
    rerolled = await job(store, 2)
    assert rerolled.user_id == int(fake_discord.owner["user"]["id"]) and rerolled.parent_id == 1
    assert rerolled.message_id == int(reply.reply["id"])
    assert await jobs.get_job(store, 3) is None, "the bots' and other reactions started nothing"
    assert len(fake_discord.recorded("post_message")) == 1


async def test_buttons_work_after_a_restart(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    bot = await start_bot()
    it = await inpaint(fake_discord, seed=42)
    _, message = await delivered(fake_discord, it)
    await bot.close()
    await bot.queue.close()

    await start_bot()
    click = await fake_discord.click(message, "job:reroll:1")
    again = await result(fake_discord, click)
    assert embed_fields(again)["Seed"] != "42"


async def test_a_reroll_reaction_counts_against_the_reactors_own_limit(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine, store: Store
) -> None:
    await start_bot(queue_max_per_user=1)
    _, message = await delivered(fake_discord, await inpaint(fake_discord))
    gated_engine.gate.clear()
    image = fake_discord.add_attachment(png_bytes(photo(96, 64)), "photo.png")
    mask = fake_discord.add_attachment(png_bytes(rect_mask(96, 64, (8, 8, 40, 40))), "mask.png")
    options = {"image": image, "mask": mask, "steps": 2}
    pending = await fake_discord.slash("inpaint", options, user=fake_discord.owner)
    await fake_discord.wait_for("edit_webhook_message", pending.owns)
    await fake_discord.react(message, "🔁", user=fake_discord.owner)

    notice = await fake_discord.wait_for("post_message")
    assert notice.json["content"].startswith(mention(fake_discord.owner))
    assert "the most one person may have at a time (1)" in notice.json["content"]
    assert notice.reply["message_reference"]["message_id"] == message
    gated_engine.gate.set()
    await result(fake_discord, pending)
    assert await jobs.get_job(store, 3) is None


async def test_a_reroll_of_a_model_no_longer_offered_is_refused(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    bot = await start_bot()
    _, message = await delivered(fake_discord, await inpaint(fake_discord, seed=42))
    row = await job(store, 1)
    async with store.sessions.begin() as session:  # run on a model the operator has since removed
        settings = {**row.settings, "model": "gone/model"}
        await session.execute(update(Job).where(Job.id == 1).values(settings=settings))
    unknown = f"Unknown model 'gone/model'. This bot offers: {bot.config.model}."

    click = await fake_discord.click(message, "job:reroll:1")
    assert await refusal(fake_discord, click) == unknown
    await fake_discord.react(message, "🔁", user=fake_discord.owner)
    notice = await fake_discord.wait_for("post_message")
    assert notice.json["content"] == f"{mention(fake_discord.owner)} {unknown}"
    assert await jobs.get_job(store, 2) is None


async def test_delete_hides_the_job_and_a_second_click_is_quiet(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    await start_bot()
    _, message = await delivered(fake_discord, await inpaint(fake_discord))
    stale = fake_discord.message(message)  # what a second device still shows
    await fake_discord.click(message, "job:delete:1")
    await fake_discord.wait_for("delete_message", lambda r: r.params["message_id"] == message)
    assert (await job(store, 1)).hidden

    second = await fake_discord.click(stale, "job:delete:1")
    await handled(fake_discord, second)  # an error would be reported before its handler returns
    await fake_discord.wait_for("delete_message", lambda r: r.status == 404)  # already gone
    assert not fake_discord.recorded("followup", second.owns)
    assert [r.json["type"] for r in fake_discord.recorded("callback", second.owns)] == [DEFERRED_UPDATE]


async def test_forms_and_buttons_from_before_a_restart_are_answered(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    bot = await start_bot()
    _, message = await delivered(fake_discord, await inpaint(fake_discord))
    edit = await open_modal(fake_discord, message, "job:edit:1")
    save = await open_modal(fake_discord, message, "job:preset:1")
    alice = int(fake_discord.alice["user"]["id"])
    for number in range(12):  # two pages: /preset list gets ◀ ▶
        settings = InpaintSettings.parse(steps=number + 1)
        await save_preset(store, alice, f"p{number}", settings, max_per_user=25)
    listing = await fake_discord.slash("preset list")
    pages = (await fake_discord.wait_for("callback", listing.owns)).json["data"]
    page_ids = [c["custom_id"] for row in pages["components"] for c in row["components"]]
    assert all(custom_id.startswith("mem:") for custom_id in [edit, save, *page_ids])
    await bot.close()
    await bot.queue.close()

    await start_bot()
    values = {"prompt": "a blue hat", "negative_prompt": "", "strength": "0.5", "seed": "7"}
    late_edit = await fake_discord.submit_modal(edit, values, message=message)
    assert await ephemeral_answer(fake_discord, late_edit) == EXPIRED_MESSAGE
    late_save = await fake_discord.submit_modal(save, {"name": "scarf"}, message=message)
    assert await ephemeral_answer(fake_discord, late_save) == EXPIRED_MESSAGE
    assert listing.original_id is not None
    late_page = await fake_discord.click(listing.original_id, page_ids[1])
    assert await ephemeral_answer(fake_discord, late_page) == EXPIRED_MESSAGE
    assert await jobs.get_job(store, 2) is None
