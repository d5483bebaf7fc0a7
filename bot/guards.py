"""A server's rules (``/server``), applied where jobs come in and where results go out.

In: jobs run only in the server's allowed channels (a thread counts as its parent channel), and the
server's per-member limit goes to the queue with the job. Out: pictures the safety checker flagged are
posted, spoilered or withheld according to the server's NSFW policy; age-restricted channels are exempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import discord

from bot.errors import BotError
from bot.queue.base import JobSubmission
from bot.store import jobs
from bot.store.database import Store
from bot.store.guilds import get_guild_settings
from bot.store.models import GuildSettings, ImageRole, NsfwPolicy
from bot.uploads import FittedFile


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


async def admit(
    client: discord.Client,
    store: Store,
    submission: JobSubmission,
    channel: object = None,
    *,
    checked: bool,
) -> JobSubmission:
    """The job as the queue should take it: refused outside the allowed channels, carrying the
    server's own per-member limit (the queue applies the bot's global one too), and without progress
    previews where flagged pictures are hidden (``checked``: a safety checker looks at results). A
    preview shows the picture before the checker has seen it."""
    settings = await check_channel(client, store, submission.guild_id, submission.channel_id, channel)
    if settings is None:
        return submission
    hidden = checked and settings.nsfw_policy is not NsfwPolicy.OFF and not age_restricted(channel)
    return replace(
        submission,
        max_pending=settings.max_jobs_per_user,
        previews=submission.previews and not hidden,
    )


def age_restricted(channel: object) -> bool:
    """Age-restricted channels (and threads in them) show flagged pictures as they are."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


@dataclass(frozen=True)
class Screening:
    """How a result's pictures are shown, by their position among the job's outputs."""

    spoilered: frozenset[int] = frozenset()
    withheld: frozenset[int] = frozenset()

    def apply(self, files: Sequence[FittedFile]) -> list[FittedFile]:
        """``files`` in output order; the ones to post, spoilers marked."""
        return [
            replace(file, spoiler=True) if position in self.spoilered else file
            for position, file in enumerate(files)
            if position not in self.withheld
        ]

    @property
    def note(self) -> str:
        """A sentence for the result message when pictures were withheld, else empty."""
        count = len(self.withheld)
        if not count:
            return ""
        pictures = "1 picture was" if count == 1 else f"{count} pictures were"
        return f"🔞 {pictures} withheld by this server's NSFW policy."


async def screen(store: Store, job_id: int, channel: object) -> Screening:
    """What the job's server policy makes of its flagged pictures in ``channel``. The policy is read
    now, so a changed policy applies to every later post, re-posts included."""
    if age_restricted(channel):
        return Screening()
    job = await jobs.get_job(store, job_id)
    if job is None or job.guild_id is None:
        return Screening()
    flagged = frozenset(link.position for link in job.images_with(ImageRole.OUTPUT) if link.nsfw)
    if not flagged:
        return Screening()
    policy = (await get_guild_settings(store, job.guild_id)).nsfw_policy
    if policy is NsfwPolicy.SPOILER:
        return Screening(spoilered=flagged)
    if policy is NsfwPolicy.BLOCK:
        return Screening(withheld=flagged)
    return Screening()
