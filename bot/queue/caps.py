"""The caps on pending jobs: per member (the bot's, or a server's lower one) and in all."""

from __future__ import annotations

from bot.errors import QueueFullError


def check_caps(*, mine: int, per_user: int, everyone: int, total: int) -> None:
    """Refuse one more job when the member already has ``per_user`` pending, or everyone ``total``."""
    if mine >= per_user:
        raise QueueFullError(
            f"You already have {mine} job{'s' if mine != 1 else ''} waiting or running, the most "
            f"one person may have at a time ({per_user}). Wait for one to finish, or cancel one.",
            cap="per-user",
            limit=per_user,
        )
    if everyone >= total:
        raise QueueFullError(
            f"The queue is full: {everyone} jobs are waiting or running, the most this bot takes "
            f"at a time ({total}). Try again in a few minutes.",
            cap="total",
            limit=total,
        )
