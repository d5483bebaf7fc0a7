"""Who may start jobs, by every path (``bot.rules``): the command, the result buttons, the Edit form
and 🔁 reactions, against the fake Discord and the tiny model."""

import asyncio
import json
import logging
from pathlib import Path

import discord
import pytest
from discord.utils import escape_markdown

from bot.store import jobs
from bot.store.database import Store
from tests.bot.discord.conftest import GatedEngine, StartBot
from tests.bot.discord.test_inpaint import JOB_TIMEOUT, embed_fields, refusal, result
from tests.bot.discord.test_results import delivered, mention
from tests.bot.discord.test_server import job_in
from tests.fakediscord import FakeDiscord, FakeInteraction, payloads
from tests.fakediscord.payloads import (
    COMMAND_CHANNEL,
    COMMAND_USER,
    JSON,
    command_permission,
    overwrite,
)

AUTOCOMPLETE_RESULT = 8
EDIT_VALUES = {"prompt": "a blue hat", "negative_prompt": "", "strength": "0.5", "seed": "7"}


async def reroll_notices(fake: FakeDiscord, member: JSON) -> list[str]:
    """The notes in the channel that answer ``member``'s refused 🔁."""
    return [
        r.json["content"]
        for r in fake.recorded("post_message")
        if r.json["content"].startswith(mention(member))
    ]


async def open_edit(fake: FakeDiscord, message: str, member: JSON) -> str:
    click = await fake.click(message, "job:edit:1", user=member)
    return (await fake.wait_for("callback", click.owns)).json["data"]["custom_id"]


async def click(fake: FakeDiscord, message: str, action: str, member: JSON) -> FakeInteraction:
    return await fake.click(message, f"job:{action}:1", user=member)


async def test_no_path_starts_a_job_for_a_member_who_may_not_post_in_the_channel(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    muted = discord.Permissions(send_messages=True, send_messages_in_threads=True)
    news = fake_discord.add_channel("news", overwrites=[overwrite(fake_discord.guild_id, deny=muted)])
    mallory = fake_discord.add_member("mallory")
    await start_bot()
    _, message = await delivered(fake_discord, await job_in(fake_discord, news, fake_discord.owner))
    refused = "You cannot start jobs in this channel: you need the Send Messages permission here."

    assert await refusal(fake_discord, await job_in(fake_discord, news)) == refused
    assert len(fake_discord.recorded("cdn")) == 2, "refused before the pictures were downloaded"
    for action in ("reroll", "faces", "zoom15", "pan-left"):
        assert (
            await refusal(fake_discord, await click(fake_discord, message, action, mallory)) == refused
        )

    # 🔁: one note, then quiet for a while however often they react.
    await fake_discord.react(message, "🔁", user=mallory)
    notice = await fake_discord.wait_for("post_message")
    assert notice.json["content"] == f"{mention(mallory)} {refused}"
    await fake_discord.react(message, "🔁", user=mallory)
    await fake_discord.react(message, "🔁", user=fake_discord.alice)  # answered: mallory's was before
    await fake_discord.wait_for("post_message", after=notice)
    await asyncio.sleep(0.2)
    assert await reroll_notices(fake_discord, mallory) == [f"{mention(mallory)} {refused}"]
    assert await jobs.get_job(store, 2) is None

    # The owner (every permission) still re-rolls there.
    await result(fake_discord, await click(fake_discord, message, "reroll", fake_discord.owner))


async def test_buttons_forms_and_reactions_follow_the_servers_command_permissions(
    fake_discord: FakeDiscord, start_bot: StartBot, store: Store
) -> None:
    moderator = fake_discord.add_member("mod", permissions=discord.Permissions(manage_messages=True))
    await start_bot()
    _, message = await delivered(fake_discord, await job_in(fake_discord))
    modal = await open_edit(fake_discord, message, moderator)  # before the server's change

    # Server Settings > Integrations: /inpaint denied to the moderator.
    await fake_discord.set_command_permissions(
        "inpaint", [command_permission(moderator["user"]["id"], COMMAND_USER, False)]
    )
    await asyncio.sleep(0.1)  # the gateway's note of the change reaches the bot
    denied = (
        "This server does not let you use /inpaint in this channel, so its buttons and 🔁 cannot "
        "start jobs for you here either."
    )
    edited = await fake_discord.submit_modal(modal, EDIT_VALUES, user=moderator, message=message)
    assert await refusal(fake_discord, edited) == denied
    assert await refusal(fake_discord, await click(fake_discord, message, "reroll", moderator)) == denied
    await fake_discord.react(message, "🔁", user=moderator)
    assert (await fake_discord.wait_for("post_message")).json["content"] == (
        f"{mention(moderator)} {denied}"
    )
    assert await jobs.get_job(store, 2) is None

    # All of the bot's commands denied in #general: for everyone but administrators.
    general = fake_discord.channel["id"]
    await fake_discord.set_command_permissions(
        None, [command_permission(general, COMMAND_CHANNEL, False)]
    )
    await asyncio.sleep(0.1)
    alice = fake_discord.alice
    assert await refusal(fake_discord, await click(fake_discord, message, "reroll", alice)) == denied
    owner = await click(fake_discord, message, "reroll", fake_discord.owner)
    await fake_discord.wait_for(
        "edit_webhook_message", lambda r: owner.owns(r) and bool(r.files), timeout=JOB_TIMEOUT
    )


async def test_direct_messages_take_no_jobs_unless_the_operator_allows_them(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    dm = fake_discord.add_dm(fake_discord.alice)
    bot = await start_bot()
    assert await refusal(fake_discord, await job_in(fake_discord, dm)) == (
        "This bot takes no jobs in direct messages; use /inpaint in a server it is in."
    )
    assert not fake_discord.recorded("cdn")
    await bot.close()
    await bot.queue.close()

    await start_bot(allow_dms=True)
    await result(fake_discord, await job_in(fake_discord, dm))


async def test_the_bot_leaves_servers_not_on_the_allow_list_at_start_and_on_join(
    fake_discord: FakeDiscord, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot")
    other = payloads.snowflake()
    await start_bot(allowed_guilds=[int(other)])
    await fake_discord.wait_for("leave_guild", lambda r: r.params["guild_id"] == fake_discord.guild_id)
    assert f"leaving server {fake_discord.guild_id}" in caplog.text
    assert "INPAINTBOT_ALLOWED_GUILDS" in caplog.text
    # An interaction that was on its way is refused all the same.
    assert await refusal(fake_discord, await job_in(fake_discord)) == (
        "This bot is not set up to serve this server, so it takes no jobs here."
    )

    def joined(guild_id: str) -> JSON:
        """GUILD_CREATE of a server the bot was just invited to (no ``unavailable`` key)."""
        guild = payloads.guild(guild_id, fake_discord.owner["user"]["id"], [], [], [])
        return {key: value for key, value in guild.items() if key != "unavailable"}

    stranger = payloads.snowflake()  # invited to another server: it leaves at once
    await fake_discord.gateway.dispatch("GUILD_CREATE", joined(stranger))
    await fake_discord.wait_for("leave_guild", lambda r: r.params["guild_id"] == stranger)
    await fake_discord.gateway.dispatch("GUILD_CREATE", joined(other))
    await asyncio.sleep(0.2)
    assert [r.params["guild_id"] for r in fake_discord.recorded("leave_guild")] == [
        fake_discord.guild_id,
        stranger,
    ]


async def test_every_server_is_served_while_the_allow_list_is_empty_or_names_it(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    await start_bot(allowed_guilds=[int(fake_discord.guild_id)])
    await result(fake_discord, await job_in(fake_discord))
    assert not fake_discord.recorded("leave_guild")


async def test_caps_are_checked_before_the_pictures_are_downloaded_the_servers_included(
    fake_discord: FakeDiscord, start_bot: StartBot, gated_engine: GatedEngine
) -> None:
    gated_engine.gate.clear()
    await start_bot(queue_max_per_user=1, queue_max_per_guild=2)
    first = await job_in(fake_discord)
    await fake_discord.wait_for("edit_webhook_message", first.owns)
    again = await refusal(fake_discord, await job_in(fake_discord))
    assert "the most one person may have at a time (1)" in again
    assert len(fake_discord.recorded("cdn")) == 2, "refused before the pictures were downloaded"

    second = await job_in(fake_discord, user=fake_discord.owner)
    await fake_discord.wait_for("edit_webhook_message", second.owns)
    mallory = fake_discord.add_member("mallory")
    assert await refusal(fake_discord, await job_in(fake_discord, user=mallory)) == (
        "This server already has 2 jobs waiting or running, the most one server may have at a time "
        "(2), so that other servers get their turn too. Try again when one has finished."
    )
    assert len(fake_discord.recorded("cdn")) == 4
    gated_engine.gate.set()
    await result(fake_discord, first)


async def test_prompts_show_as_typed_and_local_models_by_their_name_only(
    fake_discord: FakeDiscord, start_bot: StartBot, tiny_sd_path: Path
) -> None:
    bot = await start_bot(model=str(tiny_sd_path))  # a local folder, as the engine's
    name = tiny_sd_path.name
    it = await job_in(fake_discord, prompt="**bold** _lean_ ~~gone~~", negative_prompt="`code`")
    done = await result(fake_discord, it)
    assert done.json["embeds"][0]["description"] == r"**Prompt:** \*\*bold\*\* \_lean\_ \~\~gone\~\~"
    fields = embed_fields(done)
    assert fields["Negative prompt"] == r"\`code\`"
    assert fields["Model"] == escape_markdown(name)

    typed = await fake_discord.slash("inpaint", {"model": ""}, focused="model")
    choices = (await fake_discord.wait_for("callback", typed.owns)).json["data"]["choices"]
    assert [choice["name"] for choice in choices] == [name]

    saved = await fake_discord.slash("preset save", {"name": "mine", "model": bot.config.model})
    await fake_discord.wait_for("callback", saved.owns)
    shown = await fake_discord.slash("preset show", {"name": "mine"})
    embed = (await fake_discord.wait_for("callback", shown.owns)).json["data"]["embeds"][0]
    assert {f["name"]: f["value"] for f in embed["fields"]}["model"] == escape_markdown(f'"{name}"')
    folder = str(Path(bot.config.model).parent)
    said = [
        json.dumps(r.json)
        for r in fake_discord.records
        if r.kind in ("callback", "followup", "edit_webhook_message", "post_message")
        and r.json.get("type") != AUTOCOMPLETE_RESULT  # a choice's value is sent back, not shown
    ]
    assert said and not [text for text in said if folder in text]
