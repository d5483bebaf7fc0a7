"""The buttons on a job's messages. A custom id carries the action and the job id, so a click after a
restart still finds its job in the database; nothing about a message is kept in memory.

The buttons only route the click to the ``Results`` cog (``bot.cogs.results``), which does the work:
keeping Discord's wiring here lets ``Delivery`` attach them without importing the cog.

Components and modals that do live in memory (a form, ✅ Replace, ◀ ▶ through presets) get their
custom ids from ``MemoryIds``, so a click or submission that outlived them is recognised and answered.
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import TYPE_CHECKING, Self, cast

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.cogs.results import Results


class Action(StrEnum):
    REROLL = "reroll"
    EDIT = "edit"
    FIX_FACES = "faces"
    SAVE_PRESET = "preset"
    DELETE = "delete"
    CANCEL = "cancel"


LOOKS: dict[Action, tuple[str, str, discord.ButtonStyle]] = {
    Action.REROLL: ("🔁", "Re-roll", discord.ButtonStyle.secondary),
    Action.EDIT: ("✏️", "Edit", discord.ButtonStyle.secondary),
    Action.FIX_FACES: ("🎭", "Fix faces", discord.ButtonStyle.secondary),
    Action.SAVE_PRESET: ("💾", "Save preset", discord.ButtonStyle.secondary),
    Action.DELETE: ("🗑", "Delete", discord.ButtonStyle.danger),
    Action.CANCEL: ("✖", "Cancel", discord.ButtonStyle.danger),
}
RESULT_ACTIONS = (Action.REROLL, Action.EDIT, Action.FIX_FACES, Action.SAVE_PRESET, Action.DELETE)
_ACTIONS = "|".join(re.escape(action.value) for action in Action)
MEMORY_PREFIX = "mem:"
EXPIRED_MESSAGE = (
    "This was opened before the bot restarted (or has expired), so it no longer works. "
    "Start again: press the button or run the command once more."
)


class MemoryIds:
    """Custom ids for in-memory components and modals: ``mem:<process tag>:<random>``.

    discord.py drops a click or submission whose view or modal it no longer holds (a restart, a
    timeout) without a word, and the member sees "This interaction failed"; the ``mem:`` prefix lets
    the bot answer those (``InpaintBot.on_interaction``), and the tag tells this process's ids from
    those of one before a restart without remembering each id.
    """

    def __init__(self) -> None:
        self.tag = secrets.token_hex(4)

    def issue(self) -> str:
        return f"{MEMORY_PREFIX}{self.tag}:{secrets.token_hex(8)}"

    def name(self, view: discord.ui.View) -> None:
        """Give each of ``view``'s components an id of this process (call before sending it)."""
        for item in view.children:
            if isinstance(item, discord.ui.Button) and item.url is None:  # links have no id
                item.custom_id = self.issue()

    def is_stale(self, custom_id: str) -> bool:
        """An in-memory component's id that this process did not issue."""
        return custom_id.startswith(MEMORY_PREFIX) and not custom_id.startswith(
            f"{MEMORY_PREFIX}{self.tag}:"
        )


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"job:(?P<action>{_ACTIONS}):(?P<job_id>[0-9]+)",
):
    def __init__(self, action: Action, job_id: int) -> None:
        emoji, label, style = LOOKS[action]
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"job:{action}:{job_id}")
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
    ) -> Self:
        return cls(Action(match["action"]), int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await cast("Results", handler(interaction, "Results")).on_button(
            interaction, self.action, self.job_id
        )


def handler(interaction: discord.Interaction, cog_name: str) -> commands.Cog:
    """The cog that does a persistent button's work. Looked up at click time, not kept: the button
    may outlive a reload of its extension."""
    cog = cast(commands.Bot, interaction.client).get_cog(cog_name)
    if cog is None:
        raise RuntimeError(f"the {cog_name} cog is not loaded")
    return cog


def _view(job_id: int, actions: tuple[Action, ...]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    return _view(job_id, RESULT_ACTIONS)


def status_view(job_id: int) -> discord.ui.View:
    return _view(job_id, (Action.CANCEL,))
