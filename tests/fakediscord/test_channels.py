"""The fake's channels as the real client sees them: age-restricted channels, threads, and channel
options of slash commands."""

import discord
from discord import app_commands

from tests.fakediscord import FakeDiscord, run_client


@app_commands.command(description="Describes where it runs and the channel it was given")
async def where(interaction: discord.Interaction, channel: discord.TextChannel) -> None:
    here = interaction.channel
    parent = here.parent_id if isinstance(here, discord.Thread) else None
    nsfw = isinstance(here, discord.TextChannel | discord.Thread) and here.is_nsfw()
    await interaction.response.send_message(
        f"{type(here).__name__} parent={parent} nsfw={nsfw} option={channel.name}"
    )


class ChannelBot(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(where)

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def test_threads_age_restricted_channels_and_channel_options(fake_discord: FakeDiscord) -> None:
    lounge = fake_discord.add_channel("lounge", nsfw=True)
    thread = fake_discord.add_thread(lounge, "after hours")
    bot = ChannelBot()
    async with run_client(fake_discord, bot):
        cached = bot.get_channel(int(thread["id"]))
        assert isinstance(cached, discord.Thread) and cached.parent_id == int(lounge["id"])

        answers = []
        for channel in (fake_discord.channel, lounge, thread):
            it = await fake_discord.slash("where", {"channel": lounge}, channel=channel)
            answers.append((await fake_discord.wait_for("callback", it.owns)).json["data"]["content"])
    assert answers == [
        "TextChannel parent=None nsfw=False option=lounge",
        "TextChannel parent=None nsfw=True option=lounge",
        f"Thread parent={lounge['id']} nsfw=True option=lounge",
    ]
