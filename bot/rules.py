"""Who may do what, where: the one admission function every way of starting a job goes through, and
the checks that Discord's own permissions leave to the bot.

``/inpaint``, the result buttons, the Edit form, 🔁 reactions and the painter page ask
``Rules.admit`` before they read a picture. Discord applies a command's permissions to slash
commands only: a button, a form or a reaction reaches the bot whatever they say, so the bot applies
them itself, with the member's permissions in the channel and the server's rules.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import discord

from bot.config import BotConfig
from bot.errors import BotError
from bot.guards import age_restricted, screen
from bot.queue.base import JobQueue, JobSubmission
from bot.store.database import Store
from bot.store.guilds import get_guild_settings
from bot.store.models import GuildSettings, Job, NsfwPolicy
from engine.job import InpaintRequest

log = logging.getLogger(__name__)

COMMAND = "inpaint"  # the command whose permissions every way of starting a job follows
# How long a server's command permissions are kept; a change is also announced by the gateway.
COMMAND_PERMISSIONS_SECONDS = 300.0
ROLE, USER, CHANNEL = 1, 2, 3  # application command permission types


class Via(StrEnum):
    """How a job was asked for. Discord has checked the command's permissions only for ``COMMAND``."""

    COMMAND = "command"
    BUTTON = "button"
    FORM = "form"
    REACTION = "reaction"
    PAGE = "page"  # the mask painter's web page (``bot.web``)


@dataclass(frozen=True)
class Asker:
    """Who asks for a job, where, and what they may do there (their permissions in the channel)."""

    user_id: int
    guild_id: int | None
    channel_id: int | None
    channel: object  # the channel object when known: threads and age restriction are read from it
    permissions: discord.Permissions
    role_ids: frozenset[int]
    via: Via

    @classmethod
    def of(cls, interaction: discord.Interaction, via: Via) -> Asker:
        """Discord sends the member's permissions in the interaction's channel with it."""
        user = interaction.user
        roles = frozenset(role.id for role in user.roles) if isinstance(user, discord.Member) else None
        return cls(
            user.id,
            interaction.guild_id,
            interaction.channel_id,
            interaction.channel,
            interaction.permissions,
            roles or frozenset(),
            via,
        )

    @classmethod
    def reacting(cls, client: discord.Client, payload: discord.RawReactionActionEvent) -> Asker:
        """A reaction carries no permissions: they are computed from the client's cache."""
        member = payload.member
        guild = client.get_guild(payload.guild_id) if payload.guild_id else None
        channel = guild.get_channel_or_thread(payload.channel_id) if guild else None
        permissions = discord.Permissions.none()
        if member is not None and channel is not None:
            permissions = channel.permissions_for(member)
        return cls(
            payload.user_id,
            payload.guild_id,
            payload.channel_id,
            channel,
            permissions,
            frozenset(role.id for role in member.roles) if member else frozenset(),
            Via.REACTION,
        )


async def page_asker(
    client: discord.Client, user_id: int, guild_id: int | None, channel_id: int
) -> Asker:
    """A submission from the painter page carries nothing from Discord: the member's permissions in
    the channel are read now (a member who left, or a channel that is gone, has none)."""
    permissions, roles = discord.Permissions.none(), frozenset[int]()
    guild = client.get_guild(guild_id) if guild_id is not None else None
    if guild is None:  # a direct message, or a server the bot is no longer in
        channel: object = client.get_channel(channel_id) if guild_id is None else None
        return Asker(user_id, guild_id, channel_id, channel, permissions, roles, Via.PAGE)
    in_guild = guild.get_channel_or_thread(channel_id)
    if in_guild is None:
        with contextlib.suppress(discord.HTTPException):
            in_guild = await guild.fetch_channel(channel_id)
    member = guild.get_member(user_id)
    if member is None:
        with contextlib.suppress(discord.HTTPException):
            member = await guild.fetch_member(user_id)
    if member is not None and in_guild is not None:
        permissions = in_guild.permissions_for(member)
        roles = frozenset(role.id for role in member.roles)
    return Asker(user_id, guild_id, channel_id, in_guild, permissions, roles, Via.PAGE)


@dataclass(frozen=True)
class Admission:
    """A job may start: the rules it was admitted under, which the queue applies too."""

    asker: Asker
    guild: GuildSettings | None  # the server's settings; ``None`` in direct messages
    hide_previews: bool  # a preview is never checked: none where flagged pictures are hidden

    def submission(
        self, request: InpaintRequest, *, parent_id: int | None = None, previews: bool = False
    ) -> JobSubmission:
        asker = self.asker
        return JobSubmission(
            user_id=asker.user_id,
            request=request,
            guild_id=asker.guild_id,
            channel_id=asker.channel_id,
            parent_id=parent_id,
            max_pending=self.guild.max_jobs_per_user if self.guild else None,
            previews=previews and not self.hide_previews,
        )


class Rules:
    """The bot's and the servers' rules on who may start a job where."""

    def __init__(self, client: discord.Client, store: Store, config: BotConfig, queue: JobQueue) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.queue = queue
        self.command_ids: dict[int | None, int] = {}  # /inpaint's id per server (None: global)
        self._command_permissions: dict[int, tuple[float, Mapping[int, list[Any]]]] = {}

    async def admit(self, asker: Asker) -> Admission:
        """Raise ``BotError`` with a message for the member when they may not start a job here: the
        operator's servers and direct messages, the server's allowed channels, their permission to
        post in the channel and to use /inpaint there, and the queue's caps (the member's, the
        server's, everyone's). Call it before any download: a refusal should cost nothing."""
        if asker.guild_id is None and not self.config.allow_dms:
            raise BotError(
                f"This bot takes no jobs in direct messages; use /{COMMAND} in a server it is in."
            )
        if asker.guild_id is not None and not self.config.serves(asker.guild_id):
            raise BotError("This bot is not set up to serve this server, so it takes no jobs here.")
        guild = await check_channel(
            self.client, self.store, asker.guild_id, asker.channel_id, asker.channel
        )
        if asker.guild_id is not None:
            _check_permissions(asker)
            if asker.via is not Via.COMMAND and not await self._may_use_command(asker):
                raise BotError(
                    f"This server does not let you use /{COMMAND} in this channel, so its buttons "
                    "and 🔁 cannot start jobs for you here either."
                )
        limit = guild.max_jobs_per_user if guild else None
        await self.queue.check_room(asker.user_id, asker.guild_id, limit)
        checked = self.config.safety_checker is not None
        hidden = (
            guild is not None
            and checked
            and guild.nsfw_policy is not NsfwPolicy.OFF
            and not age_restricted(asker.channel)
        )
        return Admission(asker, guild, hide_previews=hidden)

    def forget_command_permissions(self, guild_id: int) -> None:
        """The server changed them (the gateway says so): read them again next time."""
        self._command_permissions.pop(guild_id, None)

    async def _may_use_command(self, asker: Asker) -> bool:
        assert asker.guild_id is not None
        if asker.permissions.administrator:  # Discord lets administrators use every command
            return True
        overrides = await self._overrides(asker.guild_id)
        command_id = self.command_ids.get(asker.guild_id, self.command_ids.get(None))
        levels = [overrides.get(command_id, []) if command_id else [], overrides.get(self._app_id, [])]
        channel_id = getattr(asker.channel, "parent_id", None) or asker.channel_id
        return command_allowed(
            levels,
            guild_id=asker.guild_id,
            channel_id=channel_id,
            user_id=asker.user_id,
            role_ids=asker.role_ids,
        )

    @property
    def _app_id(self) -> int:
        return self.client.application_id or 0

    async def _overrides(self, guild_id: int) -> Mapping[int, list[Any]]:
        """The server's command permission overrides by command id (the application's id: all)."""
        kept = self._command_permissions.get(guild_id)
        if kept is not None and time.monotonic() - kept[0] < COMMAND_PERMISSIONS_SECONDS:
            return kept[1]
        try:
            rows = await self.client.http.get_guild_application_command_permissions(
                self._app_id, guild_id
            )
        except discord.HTTPException:
            log.warning("could not read the command permissions of server %s", guild_id, exc_info=True)
            raise BotError(
                "The bot could not check your permission to start jobs here; try again in a minute."
            ) from None
        overrides = {int(row["id"]): list(row["permissions"]) for row in rows}
        self._command_permissions[guild_id] = (time.monotonic(), overrides)
        return overrides


def command_allowed(
    levels: Sequence[Sequence[Mapping[str, Any]]],
    *,
    guild_id: int,
    channel_id: int | None,
    user_id: int,
    role_ids: frozenset[int],
) -> bool:
    """Discord's rule for a command's permission overrides, the command's own ``levels[0]`` before
    the application-wide ``levels[1]``: a channel override (or one for all channels, the guild's id
    minus 1) may forbid the channel; then the member's own override decides, else their roles' (one
    allowing role is enough), else @everyone's (the guild's id); with none, anyone may."""
    for entries in levels:
        channels = {int(e["id"]): bool(e["permission"]) for e in entries if e["type"] == CHANNEL}
        verdict = channels.get(channel_id or 0, channels.get(guild_id - 1))
        if verdict is not None:
            if not verdict:
                return False
            break
    for entries in levels:
        users = {int(e["id"]): bool(e["permission"]) for e in entries if e["type"] == USER}
        if user_id in users:
            return users[user_id]
        roles = {int(e["id"]): bool(e["permission"]) for e in entries if e["type"] == ROLE}
        own = [allowed for role_id, allowed in roles.items() if role_id in role_ids - {guild_id}]
        if own:
            return any(own)
        if guild_id in roles:
            return roles[guild_id]
    return True


# What a member needs in a channel to start a job there (in a thread, Send Messages in Threads).
NEEDED = ("view_channel", "send_messages", "use_application_commands")


def _check_permissions(asker: Asker) -> None:
    """A job posts in the channel: only members who may post there, and use commands there, start one."""
    in_thread = isinstance(asker.channel, discord.Thread)
    needed = [
        "send_messages_in_threads" if in_thread and name == "send_messages" else name for name in NEEDED
    ]
    missing = [name for name in needed if not getattr(asker.permissions, name)]
    if missing:
        names = " and ".join(name.replace("_", " ").title() for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise BotError(
            f"You cannot start jobs in this channel: you need the {names} permission{plural} here."
        )


def channel_list(channel_ids: Sequence[int]) -> str:
    return ", ".join(f"<#{channel_id}>" for channel_id in channel_ids)


async def check_channel(
    client: discord.Client,
    store: Store,
    guild_id: int | None,
    channel_id: int | None,
    channel: object = None,
) -> GuildSettings | None:
    """The server's settings, once it is clear that jobs may run in this channel; ``None`` outside a
    server. ``channel`` is the channel object when the caller has one (an interaction's)."""
    if guild_id is None:
        return None
    settings = await get_guild_settings(store, guild_id)
    if channel_id is None or settings.allows_channel(channel_id):
        return settings
    parent_id = await _thread_parent(client, channel_id, channel)
    if parent_id is not None and settings.allows_channel(parent_id):
        return settings
    raise BotError(
        "Jobs don't run in this channel on this server. "
        f"Use {channel_list(settings.allowed_channel_ids)} (or a thread in one of them)."
    )


async def _thread_parent(client: discord.Client, channel_id: int, channel: object) -> int | None:
    """The parent channel of a thread; ``None`` for any other channel (or one the bot cannot see)."""
    if channel is None:
        channel = client.get_channel(channel_id)
    if channel is None:
        with contextlib.suppress(discord.HTTPException):
            channel = await client.fetch_channel(channel_id)
    return channel.parent_id if isinstance(channel, discord.Thread) else None


def may_manage(user_id: int, permissions: discord.Permissions, job: Job) -> bool:
    """The job's owner, or a member who may manage messages in the channel (a moderator). Checked at
    run time: ``default_permissions`` are only a default that admins can change."""
    return user_id == job.user_id or permissions.manage_messages


async def check_resubmit(store: Store, job: Job, asker: Asker, *, changes_settings: bool) -> None:
    """Whether a member may start a job from someone else's: the rule every re-submission follows.

    Only the owner and moderators may change the settings (✏️ Edit): strength 0, say, posts the
    owner's upload as it is, the part they masked out included. Others may run it again as it is
    (🔁, and 🎭 Fix faces, which repaints only the faces of the posted result), but not when the
    server's NSFW policy withheld its pictures: a second pass would put them before the checker
    again. Saving someone else's settings as a preset (💾) reveals nothing that the result's
    settings do not show, and needs no check.
    """
    if may_manage(asker.user_id, asker.permissions, job):
        return
    if changes_settings:
        raise BotError(
            f"Only the person who ran job {job.id} or someone who may manage messages can edit it; "
            "re-roll it (🔁) to get your own version."
        )
    if (await screen(store, job.id, asker.channel)).withheld:
        raise BotError(
            f"Job {job.id}'s pictures were withheld by this server's NSFW policy, so only the "
            "person who ran it or someone who may manage messages can use it again."
        )


async def can_view(client: discord.Client, guild_id: int, channel_id: int, member: object) -> bool:
    """Whether ``member`` can read the messages of a channel (or thread) of the guild: View Channel
    and Read Message History there, and for a private thread, being in it or Manage Threads."""
    guild = client.get_guild(guild_id)
    if guild is None or not isinstance(member, discord.Member):
        return False
    channel = guild.get_channel_or_thread(channel_id)
    if channel is None:  # e.g. an archived thread, which the cache does not keep
        try:
            channel = await guild.fetch_channel(channel_id)
        except discord.HTTPException:
            return False
    if isinstance(channel, discord.CategoryChannel | discord.ForumChannel):
        return False
    permissions = channel.permissions_for(member)
    if not (permissions.view_channel and permissions.read_message_history):
        return False
    if isinstance(channel, discord.Thread) and channel.is_private() and not permissions.manage_threads:
        try:
            await channel.fetch_member(member.id)
        except discord.NotFound:
            return False
    return True
