"""Golden flows of /server and the server rules it sets: allowed channels, the per-member limit, the
default preset and the NSFW policy, against the fake Discord and the tiny model."""

from typing import Any

import discord
from PIL import Image

from bot.store import jobs
from bot.store.guilds import get_guild_settings
from bot.store.models import NsfwPolicy
from bot.store.presets import save_preset
from engine.settings import InpaintSettings
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import (
    EPHEMERAL,
    JOB_TIMEOUT,
    embed_fields,
    has_preview,
    refusal,
    result,
)
from tests.bot.discord.test_results import delivered, ephemeral_answer, mention, shown
from tests.bot.queue.fakes import StubSafetyChecker
from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded
from tests.fakediscord.payloads import JSON
from tests.pictures import photo, png_bytes, rect_mask

FLAG_ALL = StubSafetyChecker()
CHECKED = {"safety": FLAG_ALL, "safety_checker": "stub"}  # start_bot options: every picture flagged


async def job_in(
    fake: FakeDiscord, channel: JSON | None = None, user: JSON | None = None, **options: Any
) -> FakeInteraction:
    """``/inpaint`` with a picture and a mask in ``channel`` (default #general)."""
    image = fake.add_attachment(png_bytes(photo(96, 64)), "photo.png")
    mask = fake.add_attachment(png_bytes(rect_mask(96, 64, (24, 16, 72, 48))), "mask.png")
    values = {"image": image, "mask": mask, "steps": 3, **options}
    return await fake.slash("inpaint", values, user=user, channel=channel)


async def server(
    fake: FakeDiscord, command: str, options: dict[str, Any] | None = None, user: JSON | None = None
) -> str:
    """Run ``/server <command>`` (as the owner by default) and return its ephemeral answer."""
    it = await fake.slash(f"server {command}", options or {}, user=user or fake.owner)
    return await ephemeral_answer(fake, it)


async def show(fake: FakeDiscord) -> dict[str, str]:
    """The fields of ``/server show``'s ephemeral embed."""
    it = await fake.slash("server show", user=fake.owner)
    answer = (await fake.wait_for("callback", it.owns)).json
    assert answer["type"] == 4 and answer["data"]["flags"] & EPHEMERAL
    return {field["name"]: field["value"] for field in answer["data"]["embeds"][0]["fields"]}


def filenames(record: Recorded) -> list[str]:
    return [f.filename for f in record.files]


async def test_server_is_for_members_who_may_manage_the_server(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    moderator = fake_discord.add_member("mod", permissions=discord.Permissions(manage_guild=True))
    bot = await start_bot()
    definition = next(c for c in fake_discord.commands[None] if c["name"] == "server")
    assert int(definition["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    assert definition["contexts"] == [0]  # servers only

    # Admins can let anyone see the command; the bot checks the permission itself when it runs.
    refused: list[tuple[str, dict[str, Any]]] = [
        ("show", {}),
        ("channels add", {"channel": fake_discord.channel}),
        ("channels clear", {}),
        ("limit", {"jobs": 1}),
        ("default-preset", {}),
        ("nsfw", {"policy": "off"}),
    ]
    for command, options in refused:
        answer = await server(fake_discord, command, options, user=fake_discord.alice)
        assert answer == "Only members with the Manage Server permission can change /server settings."
    settings = await get_guild_settings(bot.store, int(fake_discord.guild_id))
    assert settings.allowed_channel_ids == [] and settings.max_jobs_per_user is None
    assert settings.nsfw_policy is NsfwPolicy.BLOCK

    answer = await server(fake_discord, "nsfw", {"policy": "spoiler"}, user=moderator)
    assert answer.startswith("NSFW policy: spoiler")


async def test_jobs_run_only_in_allowed_channels_and_their_threads(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    art = fake_discord.add_channel("art")
    sketches = fake_discord.add_thread(art, "sketches")
    await start_bot()
    general = fake_discord.channel
    answer = await server(fake_discord, "channels add", {"channel": art})
    assert answer == f"Added <#{art['id']}>. Jobs run only in <#{art['id']}> and their threads."
    assert "already allowed" in await server(fake_discord, "channels add", {"channel": art})
    answer = await server(fake_discord, "channels remove", {"channel": general})
    assert answer.startswith(f"<#{general['id']}> is not on the allowed list.")

    refused = await job_in(fake_discord, general)
    message = await refusal(fake_discord, refused)
    assert message == (
        f"Jobs don't run in this channel on this server. Use <#{art['id']}> "
        "(or a thread in one of them)."
    )
    assert not fake_discord.recorded("cdn"), "refused before the pictures were downloaded"

    # The next job in the allowed channel, and one in a thread of it, are served.
    await result(fake_discord, await job_in(fake_discord, art))
    await result(fake_discord, await job_in(fake_discord, sketches))

    answer = await server(fake_discord, "channels remove", {"channel": art})
    assert answer == f"Removed <#{art['id']}>. Jobs run in every channel the bot can post in."
    await result(fake_discord, await job_in(fake_discord, general))


async def test_a_reroll_reaction_outside_the_allowed_channels_is_refused(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    art = fake_discord.add_channel("art")
    bot = await start_bot()
    _, message = await delivered(fake_discord, await job_in(fake_discord))
    await server(fake_discord, "channels add", {"channel": art})
    await fake_discord.react(message, "🔁", user=fake_discord.owner)
    notice = await fake_discord.wait_for("post_message")
    assert notice.json["content"] == (
        f"{mention(fake_discord.owner)} Jobs don't run in this channel on this server. "
        f"Use <#{art['id']}> (or a thread in one of them)."
    )
    assert await jobs.get_job(bot.store, 2) is None

    answer = await server(fake_discord, "channels clear")
    assert answer == "Cleared the list. Jobs run in every channel the bot can post in."
    await fake_discord.react(message, "🔁", user=fake_discord.owner)
    reply = await fake_discord.wait_for("post_message", after=notice, timeout=JOB_TIMEOUT)
    assert reply.reply["message_reference"]["message_id"] == message


async def test_the_servers_limit_applies_under_the_bots_own(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    await start_bot(queue_max_per_user=3)
    answer = await server(fake_discord, "limit", {"jobs": 4})
    assert answer == (
        "This bot lets each member have at most 3 jobs waiting or running "
        "(its operator's INPAINTBOT_QUEUE_MAX_PER_USER); choose 1 to 3."
    )
    answer = await server(fake_discord, "limit", {"jobs": 1})
    assert answer == "Each member may now have up to 1 job waiting or running."

    gated_engine.gate.clear()
    first = await job_in(fake_discord)
    await fake_discord.wait_for("edit_webhook_message", first.owns)
    second = await job_in(fake_discord)
    assert "the most one person may have at a time (1)" in await refusal(fake_discord, second)
    gated_engine.gate.set()
    await result(fake_discord, first)

    answer = await server(fake_discord, "limit")
    assert answer == "Each member may now have up to 3 jobs waiting or running (the bot's own limit)."


async def test_the_servers_default_preset_applies_to_inpaint(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    bot = await start_bot()
    owner_id, guild_id = int(fake_discord.owner["user"]["id"]), int(fake_discord.guild_id)
    soft = InpaintSettings.parse(strength=0.3)
    await save_preset(bot.store, owner_id, "Soft", soft, max_per_user=25, guild_id=guild_id)
    await save_preset(bot.store, owner_id, "Mine", soft, max_per_user=25)  # the owner's own

    it = await fake_discord.slash(
        "server default-preset", {"name": ""}, user=fake_discord.owner, focused="name"
    )
    choices = await fake_discord.wait_for("callback", it.owns)
    assert [c["value"] for c in choices.json["data"]["choices"]] == ["server:Soft"]

    answer = await server(fake_discord, "default-preset", {"name": "mine"})
    assert answer == "This server has no preset called 'mine'."
    answer = await server(fake_discord, "default-preset", {"name": "server:soft"})
    assert answer.startswith("Every job here now starts from the server preset **Soft**")
    done = await result(fake_discord, await job_in(fake_discord))
    assert embed_fields(done)["Strength"] == "0.3"

    assert (await show(fake_discord))["Default preset"] == "Soft"

    answer = await server(fake_discord, "default-preset")
    assert answer == "This server has no default preset now."
    done = await result(fake_discord, await job_in(fake_discord))
    assert embed_fields(done)["Strength"] == "0.75"


async def test_show_lists_every_setting(fake_discord: FakeDiscord, start_bot: StartBot) -> None:
    art = fake_discord.add_channel("art")
    await start_bot(queue_max_per_user=3, **CHECKED)
    await server(fake_discord, "channels add", {"channel": art})
    await server(fake_discord, "limit", {"jobs": 2})
    await server(fake_discord, "nsfw", {"policy": "spoiler"})
    assert await show(fake_discord) == {
        "Channels": f"<#{art['id']}>",
        "Per member": "up to 2 jobs waiting or running",
        "Default preset": "none",
        "NSFW policy": (
            "spoiler: flagged pictures are posted behind a spoiler. Age-restricted channels are "
            "exempt: flagged pictures are posted there as they are. Progress previews are shown "
            "only there (a preview is not checked)."
        ),
    }


async def test_nsfw_policy_says_when_the_checker_is_off(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot(safety_checker=None)
    answer = await server(fake_discord, "nsfw", {"policy": "block"})
    assert answer == (
        "NSFW policy: block: flagged pictures are not posted, a note says so. The bot's operator has "
        "turned the safety checker off (INPAINTBOT_SAFETY_CHECKER), so no picture is flagged and the "
        "policy has nothing to act on."
    )


async def test_spoiler_policy_hides_flagged_pictures_behind_a_spoiler(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot(edit_interval=0, **CHECKED)
    await server(fake_discord, "nsfw", {"policy": "spoiler"})
    it = await job_in(fake_discord, seed=7)
    done = await result(fake_discord, it)
    assert filenames(done) == ["SPOILER_inpaint-1-7.png"]
    assert done.json["content"] == f"{mention(fake_discord.alice)} done."
    statuses = fake_discord.recorded("edit_webhook_message", it.owns)
    assert not any(has_preview(r) for r in statuses), "no unchecked preview where flags are hidden"


async def test_block_policy_withholds_only_the_flagged_picture(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    seen: list[Image.Image] = []

    def first_picture(image: Image.Image) -> bool:
        seen.append(image)
        return len(seen) == 1

    await start_bot(safety=StubSafetyChecker(first_picture), safety_checker="stub")
    done = await result(fake_discord, await job_in(fake_discord, seed=7, count=2))
    assert filenames(done) == ["inpaint-1-8.png"]
    assert done.json["content"] == (
        f"{mention(fake_discord.alice)} done. 🔞 1 picture was withheld by this server's NSFW policy."
    )
    assert embed_fields(done)["Seeds"] == "7, 8"  # the settings stay, so the job can be re-run


async def test_block_policy_applies_to_a_result_posted_after_the_token_expired(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    gated_engine.gate.clear()
    await start_bot(**CHECKED)
    it = await job_in(fake_discord, seed=5)
    await fake_discord.wait_for("edit_webhook_message", it.owns)
    fake_discord.expire(it)
    gated_engine.gate.set()
    late = await fake_discord.wait_for("post_message", timeout=JOB_TIMEOUT)
    assert filenames(late) == []
    assert late.reply["content"].endswith("🔞 1 picture was withheld by this server's NSFW policy.")
    await shown(fake_discord, late.reply["id"])


async def test_only_the_owner_or_a_moderator_may_resubmit_withheld_pictures(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    """A withheld result is the owner's upload with a repainted part; a re-roll or face fix by
    someone else would put it back in front of the checker, which may miss it the second time."""
    stranger = fake_discord.add_member("mallory")
    bot = await start_bot(**CHECKED)
    it = await job_in(fake_discord)
    await fake_discord.wait_for(
        "edit_webhook_message", lambda r: it.owns(r) and bool(r.json.get("embeds"))
    )
    assert it.original_id is not None
    message = it.original_id
    await shown(fake_discord, message)
    withheld = (
        "Job 1's pictures were withheld by this server's NSFW policy, so only the person who ran it "
        "or someone who may manage messages can use it again."
    )
    for action in ("reroll", "faces"):
        click = await fake_discord.click(message, f"job:{action}:1", user=stranger)
        assert await refusal(fake_discord, click) == withheld
    await fake_discord.react(message, "🔁", user=stranger)
    notice = await fake_discord.wait_for("post_message")
    assert notice.json["content"] == f"{mention(stranger)} {withheld}"
    assert await jobs.get_job(bot.store, 2) is None

    owners = await fake_discord.click(message, "job:reroll:1")
    await fake_discord.wait_for(
        "edit_webhook_message",
        lambda r: owners.owns(r) and bool(r.json.get("embeds")),
        timeout=JOB_TIMEOUT,
    )
    assert (await jobs.get_job(bot.store, 2)) is not None


async def test_age_restricted_channels_and_policy_off_post_flagged_pictures_as_they_are(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    lounge = fake_discord.add_channel("lounge", nsfw=True)
    await start_bot(edit_interval=0, **CHECKED)  # the default policy: block
    it = await job_in(fake_discord, lounge, seed=3)
    done = await result(fake_discord, it)
    assert filenames(done) == ["inpaint-1-3.png"]
    statuses = fake_discord.recorded("edit_webhook_message", it.owns)
    assert any(has_preview(r) for r in statuses), "previews are shown in age-restricted channels"

    answer = await server(fake_discord, "nsfw", {"policy": "off"})
    assert answer == "NSFW policy: off: flagged pictures are posted as they are."
    done = await result(fake_discord, await job_in(fake_discord, seed=4))
    assert filenames(done) == ["inpaint-2-4.png"]
