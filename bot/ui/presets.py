"""What members see of presets, shared by ``/preset`` and a result's 💾: short summaries, and saving
that never overwrites silently (a taken name gets ✅ Replace / ✖ Keep buttons).

The buttons are in-memory views on ephemeral messages, which only the asker sees and which are short
lived anyway: they stop after ``VIEW_TIMEOUT`` (the buttons are then removed) or a restart (a click
is then answered with a note to start again: their ids come from ``bot.ui.buttons.MemoryIds``). Nothing
about them is kept in the database.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import discord
from discord.utils import escape_markdown

from bot.config import BotConfig
from bot.options import model_name
from bot.replies import error_message, refuse
from bot.store.database import Store
from bot.store.models import Preset
from bot.store.presets import PresetExistsError, save_preset
from bot.ui.buttons import component_client
from engine.settings import InpaintSettings

# Under the 15 minutes an interaction token lives, so the expired buttons can still be removed.
VIEW_TIMEOUT = 600.0
SUMMARY_CHARS = 100


class PresetHost(Protocol):
    """Where presets are saved, and the cap on them (``bot.client.InpaintBot``)."""

    store: Store
    config: BotConfig


def clip(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (cut ones end in …)."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def value_text(value: Any) -> str:
    """A setting's value as a member would type it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_text(key: str, value: object) -> str:
    """A preset's value as members see it: a model by its name, never its path."""
    return value_text(model_name(value) if key == "model" and isinstance(value, str) else value)


def summary(settings: Mapping[str, Any], limit: int = SUMMARY_CHARS) -> str:
    """What a preset sets, on one line: ``prompt "a red scarf" · steps 40 · sampler "ddim"``."""
    text = " · ".join(f"{key} {setting_text(key, value)}" for key, value in settings.items())
    return clip(escape_markdown(text), limit) if text else "nothing"


def label(preset: Preset) -> str:
    """``preset **name**`` or ``server preset **name**``, for messages."""
    kind = "server preset" if preset.guild_id is not None else "preset"
    return f"{kind} **{escape_markdown(preset.name)}**"


def saved_message(preset: Preset, verb: str = "Saved") -> str:
    who = "everyone here can" if preset.guild_id is not None else "you can"
    return f"{verb} {label(preset)}: {who} use it with `/inpaint preset:{preset.name}`."


class OwnedView(discord.ui.View):
    """Buttons on the response to ``interaction`` that only its member may press."""

    def __init__(self, interaction: discord.Interaction) -> None:
        super().__init__(timeout=VIEW_TIMEOUT)
        self.interaction = interaction
        component_client(interaction).memory_ids.name(self)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.interaction.user.id:
            return True
        await refuse(interaction, "Only the person who asked can use these buttons.")
        return False

    async def on_timeout(self) -> None:
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.edit_original_response(view=None)

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await refuse(interaction, error_message(error))


class ReplaceView(OwnedView):
    """✅ Replace saves over ``existing`` with ``replace``; ✖ Keep leaves it as it is."""

    def __init__(
        self,
        interaction: discord.Interaction,
        existing: Preset,
        replace: Callable[[], Awaitable[Preset]],
    ) -> None:
        super().__init__(interaction)
        self.existing, self.replace = existing, replace

    @discord.ui.button(label="Replace", emoji="✅", style=discord.ButtonStyle.success)
    async def replace_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[ReplaceView]
    ) -> None:
        preset = await self.replace()
        self.stop()
        await interaction.response.edit_message(content=saved_message(preset, "Replaced"), view=None)

    @discord.ui.button(label="Keep", emoji="✖", style=discord.ButtonStyle.secondary)
    async def keep_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[ReplaceView]
    ) -> None:
        self.stop()
        kept = f"Kept {label(self.existing)} as it was ({summary(self.existing.settings)})."
        await interaction.response.edit_message(content=kept, view=None)


async def save_or_ask(
    interaction: discord.Interaction,
    bot: PresetHost,
    name: str,
    settings: InpaintSettings,
    *,
    guild_id: int | None = None,
) -> None:
    """Save the member's preset (or, with ``guild_id``, the server's) and say so, ephemerally; if the
    name is taken, ask whether to replace that preset instead."""

    async def save(replace: bool = False) -> Preset:
        return await save_preset(
            bot.store,
            interaction.user.id,
            name,
            settings,
            max_per_user=bot.config.max_presets_per_user,
            guild_id=guild_id,
            replace=replace,
        )

    try:
        preset = await save()
    except PresetExistsError as exc:
        existing = exc.preset
        owner = "This server already has" if existing.guild_id is not None else "You already have"
        new = summary(settings.model_dump(mode="json", exclude_unset=True))
        await interaction.response.send_message(
            f"{owner} a {label(existing)} ({summary(existing.settings)}). "
            f"Replace it with the new settings ({new})?",
            view=ReplaceView(interaction, existing, lambda: save(replace=True)),
            ephemeral=True,
        )
        return
    await interaction.response.send_message(saved_message(preset), ephemeral=True)
