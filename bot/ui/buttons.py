"""The buttons on a job's messages. A custom id carries the action and the job id, so a click after a
restart still finds its job in the database; nothing about a message is kept in memory.

The buttons only route the click to whoever registered in the client's ``Handlers`` (the ``Results``
cog does the work): keeping Discord's wiring here lets ``Delivery`` attach them without importing a cog.

Components and modals that do live in memory (a form, ✅ Replace, ◀ ▶ through presets) get their
custom ids from ``MemoryIds``, so a click or submission that outlived them is recognised and answered.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, Self, runtime_checkable

import discord

from bot.replies import refuse


class Action(StrEnum):
    REROLL = "reroll"
    EDIT = "edit"
    FIX_FACES = "faces"
    SAVE_PRESET = "preset"
    DELETE = "delete"
    CANCEL = "cancel"
    ZOOM_OUT_15 = "zoom15"
    ZOOM_OUT_2 = "zoom2"
    PAN_LEFT = "pan-left"
    PAN_RIGHT = "pan-right"
    PAN_UP = "pan-up"
    PAN_DOWN = "pan-down"
    PAINT = "paint"


LOOKS: dict[Action, tuple[str, str, discord.ButtonStyle]] = {
    Action.REROLL: ("🔁", "Re-roll", discord.ButtonStyle.secondary),
    Action.EDIT: ("✏️", "Edit", discord.ButtonStyle.secondary),
    Action.FIX_FACES: ("🎭", "Fix faces", discord.ButtonStyle.secondary),
    Action.SAVE_PRESET: ("💾", "Save preset", discord.ButtonStyle.secondary),
    Action.DELETE: ("🗑", "Delete", discord.ButtonStyle.danger),
    Action.CANCEL: ("✖", "Cancel", discord.ButtonStyle.danger),
    Action.ZOOM_OUT_15: ("🔍", "Zoom out 1.5×", discord.ButtonStyle.secondary),
    Action.ZOOM_OUT_2: ("🔍", "Zoom out 2×", discord.ButtonStyle.secondary),
    Action.PAN_LEFT: ("⬅", "", discord.ButtonStyle.secondary),
    Action.PAN_RIGHT: ("➡", "", discord.ButtonStyle.secondary),
    Action.PAN_UP: ("⬆", "", discord.ButtonStyle.secondary),
    Action.PAN_DOWN: ("⬇", "", discord.ButtonStyle.secondary),
    Action.PAINT: ("🖌", "Paint", discord.ButtonStyle.secondary),
}
# In the order shown; 🖌 Paint only while the painter is on (``result_view``).
RESULT_ACTIONS = (
    Action.REROLL,
    Action.EDIT,
    Action.FIX_FACES,
    Action.SAVE_PRESET,
    Action.DELETE,
    Action.PAINT,
    Action.ZOOM_OUT_15,
    Action.ZOOM_OUT_2,
    Action.PAN_LEFT,
    Action.PAN_RIGHT,
    Action.PAN_UP,
    Action.PAN_DOWN,
)
# Discord's rows of buttons (5 a row): the job's own actions first, then painting and outpainting.
ROWS: dict[Action, int] = {
    Action.PAINT: 1,
    Action.ZOOM_OUT_15: 1,
    Action.ZOOM_OUT_2: 1,
    Action.PAN_LEFT: 2,
    Action.PAN_RIGHT: 2,
    Action.PAN_UP: 2,
    Action.PAN_DOWN: 2,
}
_ACTIONS = "|".join(re.escape(action.value) for action in Action)
MEMORY_PREFIX = "mem:"
PAINTER_OFF = "The mask painter is turned off on this bot now; upload a mask with /inpaint instead."
EXPIRED_MESSAGE = (
    "This was opened before the bot restarted (or has expired), so it no longer works. "
    "Start again: press the button or run the command once more."
)


class MemoryIds:
    """Custom ids for in-memory components and modals: ``mem:<process tag>:<random>``.

    discord.py drops a click or submission whose view or modal it no longer holds (a restart, a
    timeout) without a word, and the member sees "This interaction failed"; the ``mem:`` prefix lets
    the bot answer those (``bot.client.InpaintBot.on_interaction``), and the tag tells this process's
    ids from those of one before a restart without remembering each id.
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
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label or None,
            emoji=emoji,
            style=style,
            custom_id=f"job:{action}:{job_id}",
            row=ROWS.get(action, 0),
        )
        super().__init__(button)
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
        known = handlers(interaction)
        actions = known.painter if self.action is Action.PAINT else known.job_actions
        if actions is None and self.action is Action.PAINT:  # turned off since the result was posted
            await refuse(interaction, PAINTER_OFF)
            return
        if actions is None:
            raise RuntimeError(f"no cog handles the {self.action} button of jobs")
        await actions.on_button(interaction, self.action, self.job_id)


class JobActions(Protocol):
    """Does the work of a job's buttons (``bot.cogs.results.Results``; 🖌 Paint:
    ``bot.cogs.painter.Painter``)."""

    async def on_button(self, interaction: discord.Interaction, action: Action, job_id: int) -> None: ...


class HistoryPages(Protocol):
    """Shows a page of a member's ``/history`` (``bot.cogs.jobs.Jobs``)."""

    async def on_page(self, interaction: discord.Interaction, user_id: int, page: int) -> None: ...


@dataclass
class Handlers:
    """Who does the work of a persistent component: its cog registers itself when it loads and leaves
    when it unloads. Looked up at click time, not kept: the component may outlive a reload."""

    job_actions: JobActions | None = None
    painter: JobActions | None = None  # 🖌 Paint, while the painter is on
    history_pages: HistoryPages | None = None


@runtime_checkable
class ComponentClient(Protocol):
    """What components need from the client (``bot.client.InpaintBot``)."""

    handlers: Handlers
    memory_ids: MemoryIds


def component_client(interaction: discord.Interaction) -> ComponentClient:
    client = interaction.client
    if not isinstance(client, ComponentClient):
        raise RuntimeError(f"{type(client).__name__} does not handle the bot's components")
    return client


def handlers(interaction: discord.Interaction) -> Handlers:
    return component_client(interaction).handlers


def _view(job_id: int, actions: tuple[Action, ...]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


def result_view(job_id: int, *, paint: bool = False) -> discord.ui.View:
    """A result's buttons; 🖌 Paint (first on the second row) only while the painter is on."""
    return _view(job_id, tuple(a for a in RESULT_ACTIONS if paint or a is not Action.PAINT))


def status_view(job_id: int) -> discord.ui.View:
    return _view(job_id, (Action.CANCEL,))
