"""Smoke test of the fake Discord: a tiny bot, defined here, driven through the real discord.py client."""

import asyncio
import gc
import io
import logging
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import FakeDiscord, FakeInteraction, Recorded, run_client

PNG = b"\x89PNG\r\n\x1a\n not really an image"


class SmokeView(discord.ui.View):
    """Persistent (no timeout, fixed custom_ids), registered at startup: clicks work after a restart."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="smoke:again")
    async def again(
        self, interaction: discord.Interaction, button: discord.ui.Button["SmokeView"]
    ) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="again!")

    @discord.ui.button(label="Done", custom_id="smoke:done")
    async def done(
        self, interaction: discord.Interaction, button: discord.ui.Button["SmokeView"]
    ) -> None:
        await interaction.response.edit_message(content="done", view=None)


class AskModal(discord.ui.Modal, title="Ask"):
    answer: discord.ui.TextInput["AskModal"] = discord.ui.TextInput(
        label="Answer", custom_id="smoke:answer"
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"answer: {self.answer.value}")


@app_commands.command(description="Sends the image back")
async def echo(interaction: discord.Interaction, image: discord.Attachment, note: str = "") -> None:
    await interaction.response.defer(thinking=True)
    try:
        data = await image.read()
    except discord.NotFound:
        await interaction.followup.send("attachment expired")
        return
    file = discord.File(io.BytesIO(data), f"echo-{image.filename}")
    try:
        sent = await interaction.followup.send(note, file=file, view=SmokeView(), wait=True)
    except discord.HTTPException as e:
        await interaction.followup.send(f"upload refused: {e.code}")
        return
    await sent.add_reaction("🔄")


@echo.autocomplete("note")
async def note_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=n, value=n) for n in ("cat", "car", "dog") if n.startswith(current)]


@app_commands.command(description="Opens a modal")
async def ask(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(AskModal())


@app_commands.command(description="Answers once released, like a job that outlives its token")
async def slow(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    await cast(SmokeBot, interaction.client).release.wait()
    try:
        await interaction.followup.send("late result")
    except discord.HTTPException as e:
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send(f"{interaction.user.mention} late result ({e.code})")


class SmokeBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.members = True  # makes the client request member chunks before it is ready
        super().__init__(commands.when_mentioned, intents=intents, guild_ready_timeout=0.05)
        self.release = asyncio.Event()

    async def setup_hook(self) -> None:
        self.add_view(SmokeView())
        self.tree.add_command(echo)
        self.tree.add_command(ask)
        self.tree.add_command(slow)
        await self.tree.sync()

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.member is None or payload.member.bot:
            return
        channel = self.get_channel(payload.channel_id)
        assert isinstance(channel, discord.TextChannel)
        reference = discord.MessageReference(
            message_id=payload.message_id, channel_id=payload.channel_id
        )
        await channel.send(f"{payload.member.mention} reacted {payload.emoji}", reference=reference)


@pytest.fixture
async def bot(fake_discord: FakeDiscord) -> AsyncIterator[SmokeBot]:
    smoke_bot = SmokeBot()
    async with run_client(fake_discord, smoke_bot):
        yield smoke_bot


async def run_echo(fake: FakeDiscord, data: bytes = PNG) -> tuple[FakeInteraction, Recorded]:
    """/echo with an uploaded file; returns the interaction and the bot's first followup."""
    it = await fake.slash("echo", {"image": fake.add_attachment(data, "cat.png"), "note": "hi"})
    return it, await fake.wait_for("followup", it.owns)


async def test_login_caches_the_guild_and_syncs_commands(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    assert bot.is_ready() and bot.user is not None and bot.user.id == int(fake_discord.app_id)
    guild = bot.get_guild(int(fake_discord.guild_id))
    assert guild is not None and guild.get_channel(int(fake_discord.channel["id"])) is not None
    assert guild.get_member(int(fake_discord.alice["user"]["id"])) is not None
    identify = fake_discord.recorded("gateway", lambda r: r.json["op"] == 2)[0]
    assert identify.json["d"]["intents"] == bot.intents.value
    assert {c["name"] for c in fake_discord.commands[None]} == {"echo", "ask", "slow"}


async def test_slash_command_defers_downloads_and_follows_up_with_the_file(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    it, followup = await run_echo(fake_discord)
    deferral = fake_discord.recorded("callback", it.owns)[0]
    assert deferral.json["type"] == 5 and deferral.reply["interaction"]["response_message_loading"]
    assert deferral.at - it.at < 1.0
    assert fake_discord.recorded("cdn")[0].at < followup.at
    assert [(f.filename, f.data) for f in followup.files] == [("echo-cat.png", PNG)]
    message = fake_discord.message(followup.reply["id"])
    assert message["id"] == it.original_id, "the first followup replaces the 'thinking' message"
    assert message["content"] == "hi" and message["flags"] == 0
    assert fake_discord.attachment_bytes(message["attachments"][0]) == PNG
    buttons = [c["custom_id"] for row in message["components"] for c in row["components"]]
    assert buttons == ["smoke:again", "smoke:done"]
    await fake_discord.wait_for("add_reaction", lambda r: r.params["message_id"] == message["id"])


async def test_buttons_defer_and_edit_or_update_their_message(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    _, followup = await run_echo(fake_discord)
    again = await fake_discord.click(followup.reply, "smoke:again")
    assert (await fake_discord.wait_for("callback", again.owns)).json["type"] == 6
    edit = await fake_discord.wait_for("edit_webhook_message", again.owns)
    assert edit.params["message_id"] == "@original" and edit.reply["id"] == followup.reply["id"]
    assert fake_discord.message(followup.reply)["content"] == "again!"

    done = await fake_discord.click(followup.reply, "smoke:done")
    update = await fake_discord.wait_for("callback", done.owns)
    assert update.json["type"] == 7
    assert update.reply["resource"]["message"]["content"] == "done"
    assert fake_discord.message(followup.reply)["components"] == []


async def test_reactions_by_members_and_by_bots_reach_the_bot(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    _, followup = await run_echo(fake_discord)
    message_id = followup.reply["id"]
    await fake_discord.wait_for("add_reaction", lambda r: r.params["message_id"] == message_id)
    helper_id = int(fake_discord.helper_bot["user"]["id"])
    from_helper = bot.wait_for("raw_reaction_add", check=lambda p: p.user_id == helper_id, timeout=5)
    await fake_discord.react(message_id, "👍", user=fake_discord.helper_bot)
    assert (await from_helper).member.bot

    await fake_discord.react(message_id, "🔄")
    reply = await fake_discord.wait_for("post_message")
    assert reply.reply["message_reference"]["message_id"] == message_id
    assert reply.reply["type"] == 19 and reply.reply["referenced_message"]["id"] == message_id
    assert reply.reply["mentions"] == [fake_discord.alice["user"]]
    counts = {r["emoji"]["name"]: r["count"] for r in fake_discord.message(message_id)["reactions"]}
    assert counts == {"🔄": 2, "👍": 1}


async def test_autocomplete_and_modal(fake_discord: FakeDiscord, bot: SmokeBot) -> None:
    complete = await fake_discord.slash("echo", {"note": "ca"}, focused="note")
    choices = await fake_discord.wait_for("callback", complete.owns)
    assert choices.json == {
        "type": 8,
        "data": {"choices": [{"name": "cat", "value": "cat"}, {"name": "car", "value": "car"}]},
    }

    it = await fake_discord.slash("ask")
    modal = await fake_discord.wait_for("callback", it.owns)
    assert modal.json["type"] == 9
    submitted = await fake_discord.submit_modal(modal.json["data"]["custom_id"], {"smoke:answer": "42"})
    answer = await fake_discord.wait_for("callback", submitted.owns)
    assert answer.json["type"] == 4 and answer.reply["resource"]["message"]["content"] == "answer: 42"


async def test_upload_limit_refuses_large_files(fake_discord: FakeDiscord, bot: SmokeBot) -> None:
    fake_discord.upload_limit = len(PNG) - 1
    it, refused = await run_echo(fake_discord)
    assert it.payload["attachment_size_limit"] == len(PNG) - 1
    assert refused.status == 413 and refused.error_code == 40005
    fallback = await fake_discord.wait_for("followup", it.owns, after=refused)
    assert fallback.reply["content"] == "upload refused: 40005"


async def test_expired_attachment_url(fake_discord: FakeDiscord, bot: SmokeBot) -> None:
    attachment = fake_discord.add_attachment(PNG)
    fake_discord.expire_attachment(attachment)
    it = await fake_discord.slash("echo", {"image": attachment})
    assert (await fake_discord.wait_for("cdn")).status == 404
    assert (await fake_discord.wait_for("followup", it.owns)).reply["content"] == "attachment expired"


async def test_expired_and_unknown_interaction_tokens(fake_discord: FakeDiscord, bot: SmokeBot) -> None:
    it = await fake_discord.slash("slow")
    await fake_discord.wait_for("callback", it.owns)
    fake_discord.expire(it)
    bot.release.set()
    refused = await fake_discord.wait_for("followup", it.owns)
    assert (refused.status, refused.error_code) == (401, 50027)
    late = await fake_discord.wait_for("post_message")
    assert late.reply["content"] == f"<@{fake_discord.alice['user']['id']}> late result (50027)"

    async with aiohttp.ClientSession() as session:
        webhook = discord.Webhook.partial(int(fake_discord.app_id), "no-such-token", session=session)
        with pytest.raises(discord.NotFound) as unknown:
            await webhook.send("hello")
    assert unknown.value.code == 10015


@pytest.mark.filterwarnings("error")
async def test_buttons_survive_a_restart_and_shutdown_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeDiscord() as fake:
        async with run_client(fake, SmokeBot()):
            _, followup = await run_echo(fake)
            await fake.wait_for("add_reaction")  # the last thing /echo does; closing cuts handlers off
        async with run_client(fake, SmokeBot()):
            click = await fake.click(followup.reply, "smoke:done")
            assert (await fake.wait_for("callback", click.owns)).json["type"] == 7
    gc.collect()  # unclosed aiohttp sessions would complain now
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_interactions_in_direct_messages(fake_discord: FakeDiscord, bot: SmokeBot) -> None:
    seen = bot.wait_for("interaction", timeout=5)
    it = await fake_discord.slash("ask", channel=fake_discord.add_dm(fake_discord.alice))
    interaction = await seen
    assert interaction.guild_id is None and isinstance(interaction.channel, discord.DMChannel)
    assert interaction.user.id == int(fake_discord.alice["user"]["id"])
    assert not isinstance(interaction.user, discord.Member)
    assert (await fake_discord.wait_for("callback", it.owns)).json["type"] == 9


async def test_refusals_a_bot_meets_and_direct_messages(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    fake_discord.forbid(fake_discord.channel)
    channel = bot.get_channel(int(fake_discord.channel["id"]))
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("hello")
    assert forbidden.value.code == 50013

    with pytest.raises(discord.Forbidden) as not_in_guild:
        await bot.tree.sync(guild=discord.Object(4242))
    assert not_in_guild.value.code == 50001

    dm = await bot.create_dm(discord.Object(int(fake_discord.alice["user"]["id"])))
    await dm.send("psst")
    sent = await fake_discord.wait_for("post_message", lambda r: r.params["channel_id"] == str(dm.id))
    assert fake_discord.dm_with(fake_discord.alice["user"]["id"])["id"] == str(dm.id)
    assert sent.reply["content"] == "psst"


async def test_an_outage_answers_503_which_discord_py_raises_at_once(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    fake_discord.fail_next("post_message", 2)
    channel = bot.get_channel(int(fake_discord.channel["id"]))
    assert isinstance(channel, discord.TextChannel)
    for _ in range(2):
        with pytest.raises(discord.DiscordServerError) as outage:
            await channel.send("hello")
        assert outage.value.status == 503
    assert (await channel.send("hello")).content == "hello"
    assert [r.status for r in fake_discord.recorded("post_message")] == [503, 503, 200]


async def test_a_deleted_message_can_still_be_clicked_as_given(
    fake_discord: FakeDiscord, bot: SmokeBot
) -> None:
    _, followup = await run_echo(fake_discord)
    await fake_discord.wait_for("add_reaction")
    del fake_discord.messages[followup.reply["id"]]
    stale = await fake_discord.click(followup.reply, "smoke:again")
    assert (await fake_discord.wait_for("callback", stale.owns)).json["type"] == 6
    assert (await fake_discord.wait_for("edit_webhook_message", stale.owns)).status == 404
