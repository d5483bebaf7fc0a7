"""``/inpaint`` and ``/outpaint``: take the upload and the settings, queue the job, and hand its
messages to a ``Delivery``.

The command defers before anything slow (downloads, the database, the engine's checks): Discord drops
an interaction that is not answered within 3 seconds.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.options import (
    check_model,
    given_settings,
    model_choices,
    preset_choices,
    settings_options,
)
from bot.rules import Admission, Asker, Via
from bot.store.presets import resolve_settings, visible_presets
from bot.ui.preview import PreviewView
from bot.uploads import download
from engine.errors import NoMaskError
from engine.job import InpaintRequest
from engine.outpaint import require_border
from engine.settings import MASK_ONLY, InpaintSettings

if TYPE_CHECKING:
    from bot.client import InpaintBot


class Inpaint(commands.Cog):
    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot

    @app_commands.command(description="Repaint the marked part of a picture")
    @settings_options("inpaint")
    @app_commands.describe(
        image="The picture to change; its transparent pixels are repainted if there is no mask",
        mask="White (or opaque strokes) = repaint, black = keep",
        preset="One of your or this server's presets; options you set here win",
    )
    async def inpaint(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        mask: discord.Attachment | None = None,
        preset: Range[str, 1, 100] | None = None,
        **options: Any,
    ) -> None:
        admission, settings = await self._admitted(interaction, preset, options)
        request = InpaintRequest(
            image=await download(image, "image"),
            mask=await download(mask, "mask") if mask else None,
            settings=settings,
        )
        try:
            if settings.shows_preview:
                preview = await self.bot.queue.mask_preview(request)
                redraw, paint = self.bot.queue.mask_preview, self._paint
                await PreviewView(interaction, request, preview, redraw=redraw, paint=paint).show()
                return
            await self.bot.router.submit(admission, request, interaction)
        except NoMaskError:
            if self.bot.painter is None:
                raise
            # Nothing says where to repaint: the painter is the way to say it.
            note = "Nothing says where to repaint. "
            await self.bot.painter.offer(interaction, request.image, settings, note=note)

    async def _admitted(
        self,
        interaction: discord.Interaction,
        preset: str | None,
        options: dict[str, Any],
        leave_out: Collection[str] = (),
    ) -> tuple[Admission, InpaintSettings]:
        """The command's admission and its settings (the preset's, with the options given on top),
        before any download: a job refused here costs nothing."""
        values = given_settings(options)
        await interaction.response.defer(thinking=True)
        admission = await self.bot.rules.admit(Asker.of(interaction, Via.COMMAND))
        settings = await resolve_settings(
            self.bot.store,
            user_id=interaction.user.id,
            guild=admission.guild,
            preset=preset,
            options=values,
            leave_out=leave_out,
        )
        check_model(settings.model, self.bot.config.allowed_models())
        return admission, settings

    async def _paint(self, interaction: discord.Interaction, request: InpaintRequest) -> None:
        """✅ under a mask preview: the job as adjusted, admitted like any job started by a button
        (the member's rights and the queue's caps may have changed since the preview)."""
        await interaction.response.defer(thinking=True)
        admission = await self.bot.rules.admit(Asker.of(interaction, Via.BUTTON))
        check_model(request.settings.model, self.bot.config.allowed_models())
        await self.bot.router.submit(admission, request, interaction)

    @app_commands.command(description="Extend a picture beyond its edges: zoom out, or add pixels")
    @settings_options("outpaint")
    @app_commands.describe(
        image="The picture to extend",
        preset="One of your or this server's presets; options you set here win",
    )
    async def outpaint(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        preset: Range[str, 1, 100] | None = None,
        **options: Any,
    ) -> None:
        """Inpainting of a new border (``engine.outpaint``); the canvas's size is checked when the
        job is prepared, before it is queued."""
        # A preset made for masks still serves: its prompt, sampling, model.
        admission, settings = await self._admitted(interaction, preset, options, leave_out=MASK_ONLY)
        require_border(settings)
        request = InpaintRequest(image=await download(image, "image"), settings=settings)
        await self.bot.router.submit(admission, request, interaction)

    @inpaint.autocomplete("preset")
    @outpaint.autocomplete("preset")
    async def _preset_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        presets = await visible_presets(self.bot.store, interaction.user.id, interaction.guild_id)
        return preset_choices(presets, current)

    @inpaint.autocomplete("model")
    @outpaint.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        return model_choices(self.bot.config.allowed_models(), current)


async def setup(bot: InpaintBot) -> None:
    await bot.add_cog(Inpaint(bot))
