"""Who may do what, where: the checks that Discord's own permissions leave to the bot.

Discord applies a command's permissions to slash commands only, and knows nothing of the bot's jobs;
what a member may see of a job, and may start from one, is decided here, from the member's
permissions in the job's channel as the client's cache computes them.
"""

from __future__ import annotations

import discord


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
