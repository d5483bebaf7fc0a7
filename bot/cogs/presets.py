"""``/preset``: save, list, show, delete and pick the default of the presets ``/inpaint preset:`` uses.

Every answer is ephemeral: presets are a member's own business. Server presets (``scope:server``) are
seen by every member of that server; changing them needs Manage Server, checked when the command runs
(``default_permissions`` would only be a default that admins can change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands
from discord.utils import escape_markdown

from bot.errors import PresetError
from bot.options import (
    check_model,
    given_settings,
    model_choices,
    preset_choices,
    settings_options,
)
from bot.store.guilds import get_guild_settings
from bot.store.models import Preset
from bot.store.presets import (
    MAX_NAME_LENGTH,
    default_preset,
    delete_preset,
    find_preset,
    get_preset,
    set_default_preset,
    visible_presets,
)
from bot.ui.presets import OwnedView, clip, label, save_or_ask, setting_text, summary
from engine.settings import InpaintSettings

if TYPE_CHECKING:
    from bot.client import InpaintBot

Scope = Literal["user", "server"]
PER_PAGE = 10  # presets per /preset list page: well inside an embed's 4096-character description
PROMPT_CHARS = 2000  # each of the two prompts in /preset show; both fit an embed's description
PROMPTS = ("prompt", "negative_prompt")
SCOPE_TEXT = "Yours (default) or this server's, which every member here can use"


def _bot(interaction: discord.Interaction) -> InpaintBot:
    return cast("InpaintBot", interaction.client)


def _managed_guild(interaction: discord.Interaction, scope: Scope | None, action: str) -> int | None:
    """The server whose presets ``scope`` means (``None``: the member's own), once the member is
    allowed to ``action`` them."""
    if scope != "server":
        return None
    if interaction.guild_id is None:
        raise PresetError("Server presets belong to a server: use this command in one.")
    if not interaction.permissions.manage_guild:
        raise PresetError(f"Only members with the Manage Server permission can {action} server presets.")
    return interaction.guild_id


async def _find(interaction: discord.Interaction, name: str, scope: Scope | None) -> Preset:
    """The preset ``name`` means here: with no scope the member's own first, then the server's."""
    store, user_id, guild_id = _bot(interaction).store, interaction.user.id, interaction.guild_id
    if scope is None:
        return await find_preset(store, user_id, guild_id, name)
    if scope == "server" and guild_id is None:
        raise PresetError("Server presets belong to a server: use this command in one.")
    return await get_preset(store, user_id, name, guild_id=guild_id if scope == "server" else None)


async def _preset_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    """The presets the member can name here, narrowed to a scope once one is picked."""
    presets = await visible_presets(_bot(interaction).store, interaction.user.id, interaction.guild_id)
    scope = interaction.namespace.scope
    if scope in ("user", "server"):
        presets = [p for p in presets if (p.guild_id is not None) == (scope == "server")]
    return preset_choices(presets, current)


async def _model_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    return model_choices(_bot(interaction).config.allowed_models(), current)


def _marks(preset: Preset, user_default: Preset | None, server_default_id: int | None) -> str:
    marks = [" (server)"] if preset.guild_id is not None else []
    if user_default is not None and preset.id == user_default.id:
        marks.append(" · your default")
    if preset.id == server_default_id:
        marks.append(" · server default")
    return "".join(marks)


def _list_pages(lines: list[str], header: str, title: str) -> list[discord.Embed]:
    """``PER_PAGE`` presets per embed, each page starting with ``header``."""
    chunks = [lines[start : start + PER_PAGE] for start in range(0, len(lines), PER_PAGE)]
    pages = []
    for number, chunk in enumerate(chunks, 1):
        embed = discord.Embed(title=title, description="\n".join([header, "", *chunk]))
        if len(chunks) > 1:
            embed.set_footer(text=f"Page {number} of {len(chunks)}")
        pages.append(embed)
    return pages


class ListPages(OwnedView):
    """◀ ▶ through the pages of ``/preset list``."""

    def __init__(self, interaction: discord.Interaction, pages: list[discord.Embed]) -> None:
        super().__init__(interaction)
        self.pages, self.page = pages, 0
        self._enable()

    def _enable(self) -> None:
        self.previous_page.disabled = self.page == 0
        self.next_page.disabled = self.page == len(self.pages) - 1

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.page = min(max(self.page + step, 0), len(self.pages) - 1)
        self._enable()
        await interaction.response.edit_message(embed=self.pages[self.page], view=self)

    @discord.ui.button(label="Previous", emoji="◀", style=discord.ButtonStyle.secondary)
    async def previous_page(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(label="Next", emoji="▶", style=discord.ButtonStyle.secondary)
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await self._turn(interaction, 1)


class Presets(commands.GroupCog, group_name="preset", group_description="Your saved settings"):
    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot

    @app_commands.command(description="Save settings under a name, for /inpaint preset:<name>")
    @settings_options("preset")
    @app_commands.describe(
        name=f"1 to {MAX_NAME_LENGTH} characters; an existing name asks before replacing",
        scope=SCOPE_TEXT + " (needs Manage Server)",
    )
    @app_commands.autocomplete(model=_model_names)
    async def save(
        self,
        interaction: discord.Interaction,
        name: Range[str, 1, MAX_NAME_LENGTH],
        scope: Scope = "user",
        **options: Any,
    ) -> None:
        values = given_settings(options)
        guild_id = _managed_guild(interaction, scope, "save")
        if all(value is None for value in values.values()):
            raise PresetError(
                "A preset needs at least one setting: add the options it should set, "
                "e.g. `steps` or `prompt`."
            )
        settings = InpaintSettings.parse(**values)
        check_model(settings.model, self.bot.config.allowed_models())
        await save_or_ask(interaction, self.bot, name, settings, guild_id=guild_id)

    @app_commands.command(name="list", description="Your presets and this server's, and the defaults")
    async def list_(self, interaction: discord.Interaction) -> None:
        store, user_id, guild_id = self.bot.store, interaction.user.id, interaction.guild_id
        presets = await visible_presets(store, user_id, guild_id)
        if not presets:
            await interaction.response.send_message(
                "There are no presets yet: save one with `/preset save` or 💾 under a result.",
                ephemeral=True,
            )
            return
        user_default = await default_preset(store, user_id)
        server_default_id = None
        if guild_id is not None:
            server_default_id = (await get_guild_settings(store, guild_id)).default_preset_id
        lines = [
            f"**{escape_markdown(p.name)}**{_marks(p, user_default, server_default_id)}: "
            f"{summary(p.settings)}"
            for p in presets
        ]
        own = sum(p.guild_id is None for p in presets)
        header = f"You have {own} of {self.bot.config.max_presets_per_user} presets."
        if user_default is None:
            header += " You have no default preset (`/preset default`)."
        elif user_default.guild_id not in (None, guild_id):
            header += f" Your default, {label(user_default)}, is another server's: not used here."
        title = "Your presets and this server's" if guild_id is not None else "Your presets"
        pages = _list_pages(lines, header, title)
        if len(pages) == 1:
            await interaction.response.send_message(embed=pages[0], ephemeral=True)
        else:
            view = ListPages(interaction, pages)
            await interaction.response.send_message(embed=pages[0], view=view, ephemeral=True)

    @app_commands.command(description="Everything a preset sets")
    @app_commands.describe(
        name="Your preset, or this server's if you have none of that name", scope=SCOPE_TEXT
    )
    @app_commands.autocomplete(name=_preset_names)
    async def show(
        self,
        interaction: discord.Interaction,
        name: Range[str, 1, 100],
        scope: Scope | None = None,
    ) -> None:
        preset = await _find(interaction, name, scope)
        prompts = [
            f"**{key}**\n{clip(escape_markdown(preset.settings[key]), PROMPT_CHARS)}"
            for key in PROMPTS
            if key in preset.settings
        ]
        kind = "Server preset" if preset.guild_id is not None else "Preset"
        title = f"{kind} {escape_markdown(preset.name)}"
        embed = discord.Embed(title=title, description="\n".join(prompts) or None)
        for key, value in preset.settings.items():
            if key not in PROMPTS:
                embed.add_field(name=key, value=escape_markdown(setting_text(key, value)))
        if preset.guild_id is not None:
            embed.add_field(name="saved by", value=f"<@{preset.user_id}>", inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(description="Delete one of your presets, or (Manage Server) a server preset")
    @app_commands.describe(name="The preset to delete", scope=SCOPE_TEXT)
    @app_commands.autocomplete(name=_preset_names)
    async def delete(
        self,
        interaction: discord.Interaction,
        name: Range[str, 1, 100],
        scope: Scope = "user",
    ) -> None:
        guild_id = _managed_guild(interaction, scope, "delete")
        store, user_id = self.bot.store, interaction.user.id
        try:
            preset = await get_preset(store, user_id, name, guild_id=guild_id)
        except PresetError:
            if guild_id is not None or interaction.guild_id is None:
                raise
            await find_preset(store, user_id, interaction.guild_id, name)  # no server's either: says so
            raise PresetError(
                f"You have no preset called {name.strip()!r}; this server has one: "
                "add `scope:server` to delete it."
            ) from None
        user_default = await default_preset(store, user_id)
        server_default_id = None
        if guild_id is not None:
            server_default_id = (await get_guild_settings(store, guild_id)).default_preset_id
        if not await delete_preset(store, user_id, preset.name, guild_id=guild_id):
            raise PresetError(f"The {label(preset)} was deleted meanwhile.")
        message = f"Deleted {label(preset)}."
        if user_default is not None and user_default.id == preset.id:
            message += " It was your default preset, so you have none now."
        if preset.id == server_default_id:
            message += " It was this server's default preset, so the server has none now."
        await interaction.response.send_message(message, ephemeral=True)

    @app_commands.command(description="Pick the preset under all your /inpaint jobs, or none")
    @app_commands.describe(
        name="Your preset, or this server's; leave empty for no default", scope=SCOPE_TEXT
    )
    @app_commands.autocomplete(name=_preset_names)
    async def default(
        self,
        interaction: discord.Interaction,
        name: Range[str, 1, 100] | None = None,
        scope: Scope | None = None,
    ) -> None:
        store, user_id = self.bot.store, interaction.user.id
        if name is None:
            await set_default_preset(store, user_id, None)
            message = "You have no default preset now: `/inpaint` starts from the built-in settings"
            message += " (and the server's default preset, if it has one)."
        else:
            preset = await _find(interaction, name, scope)
            await set_default_preset(store, user_id, preset)
            message = (
                f"Your default preset is now the {label(preset)} ({summary(preset.settings)}). "
                "`/inpaint` applies it first; a `preset:` and the options you set win over it."
            )
        await interaction.response.send_message(message, ephemeral=True)


async def setup(bot: InpaintBot) -> None:
    await bot.add_cog(Presets(bot))
