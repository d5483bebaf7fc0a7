"""Who may do what, where: the checks that Discord's own permissions leave to the bot.

Discord applies a command's permissions to slash commands only, and knows nothing of the bot's jobs;
what a member may see of a job, and may start from one, is decided here, from the member's
permissions in the job's channel as the client's cache computes them.
"""

from __future__ import annotations

import discord

from bot.errors import BotError
from bot.guards import screen
from bot.store.database import Store
from bot.store.models import Job


def may_manage(user_id: int, permissions: discord.Permissions, job: Job) -> bool:
    """The job's owner, or a member who may manage messages in the channel (a moderator). Checked at
    run time: ``default_permissions`` are only a default that admins can change."""
    return user_id == job.user_id or permissions.manage_messages


async def check_resubmit(
    store: Store,
    job: Job,
    *,
    user_id: int,
    permissions: discord.Permissions,
    channel: object,
    changes_settings: bool,
) -> None:
    """Whether a member may start a job from someone else's: the rule every re-submission follows.

    Only the owner and moderators may change the settings (✏️ Edit): strength 0, say, posts the
    owner's upload as it is, the part they masked out included. Others may run it again as it is
    (🔁, and 🎭 Fix faces, which repaints only the faces of the posted result), but not when the
    server's NSFW policy withheld its pictures: a second pass would put them before the checker
    again. Saving someone else's settings as a preset (💾) reveals nothing that the result's
    settings do not show, and needs no check.
    """
    if may_manage(user_id, permissions, job):
        return
    if changes_settings:
        raise BotError(
            f"Only the person who ran job {job.id} or someone who may manage messages can edit it; "
            "re-roll it (🔁) to get your own version."
        )
    if (await screen(store, job.id, channel)).withheld:
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
