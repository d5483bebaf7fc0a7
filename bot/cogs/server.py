"""``/server``: a server's own rules for the bot: where jobs run, how many each member may queue, the
default preset, and what happens to pictures the safety checker flags.

Only for members with Manage Server. ``default_permissions`` hides the group from the others, but admins
can change who sees a command, so every subcommand checks the permission again when it runs. Every
answer is ephemeral. The rules are applied in ``bot.rules`` and ``bot.guards``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands
from discord.utils import escape_markdown

from bot.errors import BotError
from bot.options import preset_choices
from bot.rules import channel_list
from bot.store.guilds import get_guild_settings, update_guild_settings
from bot.store.models import GuildSettings, NsfwPolicy
from bot.store.presets import get_preset, list_presets

if TYPE_CHECKING:
    from bot.client import InpaintBot

MAX_ALLOWED_CHANNELS = 50
# Channels members can talk in (text and announcement, forum, voice chat); threads follow their parent.
JobChannel = discord.TextChannel | discord.ForumChannel | discord.VoiceChannel
POLICY_TEXT = {
    NsfwPolicy.OFF: "off: flagged pictures are posted as they are",
    NsfwPolicy.SPOILER: "spoiler: flagged pictures are posted behind a spoiler",
    NsfwPolicy.BLOCK: "block: flagged pictures are not posted, a note says so",
}
EXEMPT = "Age-restricted channels are exempt: flagged pictures are posted there as they are."


class ManageServerRequired(app_commands.CheckFailure):
    def __init__(self) -> None:
        super().__init__("Only members with the Manage Server permission can change /server settings.")


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:  # guild_only: Discord does not offer the command elsewhere
        raise BotError("These settings belong to a server: use /server in one.")
    return interaction.guild_id


async def _say(interaction: discord.Interaction, message: str) -> None:
    await interaction.response.send_message(message, ephemeral=True)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Server(
    commands.GroupCog,
    name="Server",
    group_name="server",
    group_description="This server's rules for the bot (Manage Server)",
):
    channels = app_commands.Group(name="channels", description="Where members may run jobs")

    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Every subcommand: ``default_permissions`` is only a default that admins can change."""
        if not interaction.permissions.manage_guild:
            raise ManageServerRequired()
        return True

    @channels.command(name="add", description="Let members run jobs in a channel (and its threads)")
    @app_commands.describe(channel="A channel where jobs may run")
    async def channels_add(self, interaction: discord.Interaction, channel: JobChannel) -> None:
        settings = await get_guild_settings(self.bot.store, _guild_id(interaction))
        allowed = settings.allowed_channel_ids
        if channel.id in allowed:
            raise BotError(f"{channel.mention} is already allowed. {self._where(allowed)}")
        if len(allowed) >= MAX_ALLOWED_CHANNELS:
            raise BotError(
                f"This server already allows {len(allowed)} channels, the most it may list "
                f"({MAX_ALLOWED_CHANNELS}). Remove one first, or clear the list to allow every channel."
            )
        settings = await update_guild_settings(
            self.bot.store, settings.guild_id, allowed_channel_ids=[*allowed, channel.id]
        )
        await _say(interaction, f"Added {channel.mention}. {self._where(settings.allowed_channel_ids)}")

    @channels.command(name="remove", description="Stop jobs in a channel")
    @app_commands.describe(channel="A channel on the allowed list")
    async def channels_remove(self, interaction: discord.Interaction, channel: JobChannel) -> None:
        settings = await get_guild_settings(self.bot.store, _guild_id(interaction))
        allowed = settings.allowed_channel_ids
        if channel.id not in allowed:
            raise BotError(f"{channel.mention} is not on the allowed list. {self._where(allowed)}")
        rest = [channel_id for channel_id in allowed if channel_id != channel.id]
        await update_guild_settings(self.bot.store, settings.guild_id, allowed_channel_ids=rest)
        await _say(interaction, f"Removed {channel.mention}. {self._where(rest)}")

    @channels.command(name="clear", description="Let members run jobs in every channel")
    async def channels_clear(self, interaction: discord.Interaction) -> None:
        await update_guild_settings(self.bot.store, _guild_id(interaction), allowed_channel_ids=[])
        await _say(interaction, f"Cleared the list. {self._where([])}")

    @staticmethod
    def _where(allowed: list[int]) -> str:
        if not allowed:
            return "Jobs run in every channel the bot can post in."
        return f"Jobs run only in {channel_list(allowed)} and their threads."

    @app_commands.command(name="limit", description="How many jobs each member may have queued")
    @app_commands.describe(jobs="Jobs waiting or running per member; leave out for the bot's limit")
    async def limit(self, interaction: discord.Interaction, jobs: Range[int, 1] | None = None) -> None:
        most = self.bot.config.queue_max_per_user
        if jobs is not None and jobs > most:
            raise BotError(
                f"This bot lets each member have at most {most} jobs waiting or running "
                f"(its operator's INPAINTBOT_QUEUE_MAX_PER_USER); choose 1 to {most}."
            )
        await update_guild_settings(self.bot.store, _guild_id(interaction), max_jobs_per_user=jobs)
        await _say(interaction, f"Each member may now have {self._limit_text(jobs)}.")

    def _limit_text(self, limit: int | None) -> str:
        most = self.bot.config.queue_max_per_user
        if limit is None:
            return f"up to {most} jobs waiting or running (the bot's own limit)"
        if limit > most:  # set before the operator lowered the bot's limit
            return (
                f"up to {most} jobs waiting or running (this server set {limit}; the bot's limit wins)"
            )
        return f"up to {limit} job{'s' if limit != 1 else ''} waiting or running"

    @app_commands.command(
        name="default-preset", description="The server preset under every job here; leave out to clear"
    )
    @app_commands.describe(name="One of this server's presets (see /preset list)")
    async def default_preset(
        self, interaction: discord.Interaction, name: Range[str, 1, 100] | None = None
    ) -> None:
        guild_id = _guild_id(interaction)
        if name is None:
            await update_guild_settings(self.bot.store, guild_id, default_preset_id=None)
            await _say(interaction, "This server has no default preset now.")
            return
        preset = await get_preset(self.bot.store, interaction.user.id, name, guild_id=guild_id)
        await update_guild_settings(self.bot.store, guild_id, default_preset_id=preset.id)
        await _say(
            interaction,
            f"Every job here now starts from the server preset **{escape_markdown(preset.name)}**; "
            "a member's own default preset, the preset they name and the options they set win over it.",
        )

    @default_preset.autocomplete("name")
    async def _server_presets(self, interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        if interaction.guild_id is None:
            return []
        presets = await list_presets(self.bot.store, interaction.user.id, guild_id=interaction.guild_id)
        return preset_choices(presets, current)

    @app_commands.command(name="nsfw", description="What happens to pictures the safety checker flags")
    @app_commands.describe(policy="off, spoiler or block (the default)")
    @app_commands.choices(
        policy=[Choice(name=text, value=policy.value) for policy, text in POLICY_TEXT.items()]
    )
    async def nsfw(self, interaction: discord.Interaction, policy: Choice[str]) -> None:
        chosen = NsfwPolicy(policy.value)
        await update_guild_settings(self.bot.store, _guild_id(interaction), nsfw_policy=chosen)
        await _say(
            interaction, f"NSFW policy: {POLICY_TEXT[chosen]}. {self._nsfw_notes(chosen)}".strip()
        )

    def _nsfw_notes(self, policy: NsfwPolicy) -> str:
        if self.bot.config.safety_checker is None:
            return (
                "The bot's operator has turned the safety checker off (INPAINTBOT_SAFETY_CHECKER), "
                "so no picture is flagged and the policy has nothing to act on."
            )
        if policy is NsfwPolicy.OFF:
            return ""
        return f"{EXEMPT} Progress previews are shown only there (a preview is not checked)."

    @app_commands.command(name="show", description="This server's current settings for the bot")
    async def show(self, interaction: discord.Interaction) -> None:
        settings = await get_guild_settings(self.bot.store, _guild_id(interaction))
        embed = await self._embed(settings, interaction.user.id)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    async def _embed(self, settings: GuildSettings, user_id: int) -> discord.Embed:
        embed = discord.Embed(title="Bot settings for this server")
        allowed = settings.allowed_channel_ids
        embed.add_field(
            name="Channels", value=channel_list(allowed) if allowed else "every channel", inline=False
        )
        embed.add_field(
            name="Per member", value=self._limit_text(settings.max_jobs_per_user), inline=False
        )
        presets = await list_presets(self.bot.store, user_id, guild_id=settings.guild_id)
        default = next((p.name for p in presets if p.id == settings.default_preset_id), None)
        embed.add_field(
            name="Default preset",
            value=escape_markdown(default) if default else "none",
            inline=False,
        )
        policy = settings.nsfw_policy
        embed.add_field(
            name="NSFW policy",
            value=f"{POLICY_TEXT[policy]}. {self._nsfw_notes(policy)}".strip(),
            inline=False,
        )
        return embed


async def setup(bot: InpaintBot) -> None:
    await bot.add_cog(Server(bot))
