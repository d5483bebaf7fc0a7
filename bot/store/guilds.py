"""Per-guild settings: where the bot answers, how many jobs a member may queue, defaults, NSFW policy."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from bot.store.database import Store
from bot.store.models import GuildSettings, NsfwPolicy


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET  # "leave as it is"; None means "clear"


async def get_guild_settings(store: Store, guild_id: int) -> GuildSettings:
    async with store.sessions() as session:
        return await session.get(GuildSettings, guild_id) or GuildSettings.defaults(guild_id)


async def update_guild_settings(
    store: Store,
    guild_id: int,
    *,
    allowed_channel_ids: Iterable[int] | _Unset = UNSET,
    max_jobs_per_user: int | _Unset | None = UNSET,
    default_preset_id: int | _Unset | None = UNSET,
    nsfw_policy: NsfwPolicy | _Unset = UNSET,
) -> GuildSettings:
    if isinstance(max_jobs_per_user, int) and max_jobs_per_user < 1:
        raise ValueError("max_jobs_per_user must be at least 1")
    async with store.sessions.begin() as session:
        settings = await session.get(GuildSettings, guild_id)
        if settings is None:
            settings = GuildSettings.defaults(guild_id)
            session.add(settings)
        if not isinstance(allowed_channel_ids, _Unset):
            settings.allowed_channel_ids = sorted(set(allowed_channel_ids))
        if not isinstance(max_jobs_per_user, _Unset):
            settings.max_jobs_per_user = max_jobs_per_user
        if not isinstance(default_preset_id, _Unset):
            settings.default_preset_id = default_preset_id
        if not isinstance(nsfw_policy, _Unset):
            settings.nsfw_policy = nsfw_policy
    return settings
