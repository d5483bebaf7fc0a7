"""How the bot answers an interaction it cannot serve: privately, to the asker only.

A leaf every cog and view may import: it knows Discord and the error types, nothing of the bot's wiring.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot.errors import BotError
from engine.errors import EngineError

log = logging.getLogger(__name__)

PRIVATE = "deferred_privately"  # ``Interaction.extras`` key set by ``defer_privately``


async def defer_privately(interaction: discord.Interaction) -> None:
    """An ephemeral "thinking" answer, for work that may take longer than Discord's 3 seconds; the
    first followup replaces it."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    interaction.extras[PRIVATE] = True


async def refuse(
    interaction: discord.Interaction, message: str, *, view: discord.ui.View | None = None
) -> None:
    """Tell only the person who asked (with ``view``'s buttons, e.g. a private link). After a public
    "thinking" deferral that message is removed first, or the first followup would replace it and be
    public. After a button's deferral the original response is the message the button is on (a
    result, a status): it stays."""
    buttons = view if view is not None else discord.utils.MISSING
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(message, ephemeral=True, view=buttons)
            return
        thinking = interaction.response.type is discord.InteractionResponseType.deferred_channel_message
        if thinking and not interaction.extras.get(PRIVATE):
            with contextlib.suppress(discord.NotFound):
                await interaction.delete_original_response()
        await interaction.followup.send(message, ephemeral=True, view=buttons)
    except discord.HTTPException:
        log.warning("could not tell user %s: %s", interaction.user.id, message, exc_info=True)


def error_message(cause: Exception) -> str:
    """What the user is told: their own mistake said as is, anything else as a short note with an
    error id that is in the log."""
    if isinstance(cause, EngineError | BotError):
        return str(cause)
    if isinstance(cause, app_commands.TransformerError):
        return f"{cause.value!r} is not a valid value here."
    if isinstance(cause, app_commands.CheckFailure):  # e.g. not allowed to use it: written for them
        return str(cause)
    error_id = secrets.token_hex(4)
    log.error("command failed, error id %s", error_id, exc_info=cause)
    return f"Something went wrong on the bot's side (error id `{error_id}`). Try again later."


async def guarded(interaction: discord.Interaction, work: Callable[[], Awaitable[None]]) -> None:
    """Run a button's or modal's work; any failure ends in an ephemeral message (views and modals
    would only log it)."""
    try:
        await work()
    except Exception as exc:
        await refuse(interaction, error_message(exc))


class Quiet:
    """Answers each member at most once per ``seconds``: a refusal nobody asked for privately (a 🔁
    reaction's, posted in the channel) must not let one member make the bot spam a channel."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[int, float] = {}

    def may_answer(self, user_id: int) -> bool:
        now = time.monotonic()
        self._last = {user: at for user, at in self._last.items() if now - at < self.seconds}
        if user_id in self._last:
            return False
        self._last[user_id] = now
        return True
