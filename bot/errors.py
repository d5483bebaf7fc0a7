"""Errors above the engine whose message is shown to the user as is, like ``EngineError``'s.

Not an ``EngineError``: the engine's family stays the engine's, and ``bot.replies.error_message``
names both.
"""

from __future__ import annotations


class BotError(Exception):
    """A request the bot refuses, with a message written for the person who made it."""


class QueueFullError(BotError):
    """A cap on pending jobs is reached; ``cap`` and ``limit`` say which one."""

    def __init__(self, message: str, *, cap: str, limit: int) -> None:
        super().__init__(message)
        self.cap = cap
        self.limit = limit


class QueueClosedError(BotError):
    """The queue is shutting down and takes no new jobs."""

    def __init__(self) -> None:
        super().__init__("The bot is restarting; try again in a minute.")


class PresetError(BotError):
    """A preset cannot be saved or found (bad name, the per-user cap, unknown name)."""
