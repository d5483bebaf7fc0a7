"""The caps on pending jobs: per member (the bot's, or a server's lower one), per server (so one busy
server cannot take the whole queue from the others) and in all."""

from __future__ import annotations

from bot.errors import QueueFullError


def check_caps(
    *,
    mine: int,
    per_user: int,
    everyone: int,
    total: int,
    ours: int = 0,
    per_guild: int | None = None,
) -> None:
    """Refuse one more job when the member already has ``per_user`` pending, their server (``ours``)
    ``per_guild``, or everyone ``total``."""
    if mine >= per_user:
        raise QueueFullError(
            f"You already have {mine} job{'s' if mine != 1 else ''} waiting or running, the most "
            f"one person may have at a time ({per_user}). Wait for one to finish, or cancel one.",
            cap="per-user",
            limit=per_user,
        )
    if per_guild is not None and ours >= per_guild:
        raise QueueFullError(
            f"This server already has {ours} job{'s' if ours != 1 else ''} waiting or running, the "
            f"most one server may have at a time ({per_guild}), so that other servers get their "
            "turn too. Try again when one has finished.",
            cap="per-guild",
            limit=per_guild,
        )
    if everyone >= total:
        raise QueueFullError(
            f"The queue is full: {everyone} jobs are waiting or running, the most this bot takes "
            f"at a time ({total}). Try again in a few minutes.",
            cap="total",
            limit=total,
        )
