"""The Discord side of the mask painter: ``/paint`` and the 🖌 Paint button under results.

Both answer privately with a one-use link (``bot.web``) after the same checks as any job: the member
may start jobs here now, and (🖌) may use that result again. The job itself is admitted again when
the page is sent, so rules that changed in between apply. Loaded only while the painter is on.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import BotError
from bot.replies import defer_privately, guarded
from bot.rules import Asker, Via, check_resubmit
from bot.store import jobs
from bot.store.models import ImageRole
from bot.store.presets import resolve_settings
from bot.ui.buttons import Action
from bot.uploads import download
from bot.web.painter import Painter
from engine.images import load_image

if TYPE_CHECKING:
    from bot.client import InpaintBot


class PainterCog(commands.Cog, name="Painter"):
    def __init__(self, bot: InpaintBot, painter: Painter) -> None:
        self.bot = bot
        self.painter = painter

    async def cog_load(self) -> None:
        self.bot.handlers.painter = self

    async def cog_unload(self) -> None:
        self.bot.handlers.painter = None

    @app_commands.command(description="Paint the area to repaint on a picture, in your browser")
    @app_commands.describe(image="The picture to change")
    async def paint(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        await defer_privately(interaction)
        admission = await self.bot.rules.admit(Asker.of(interaction, Via.COMMAND))
        data = await download(image, "image")
        # A picture the engine cannot read is refused now, not after the member painted on it.
        await asyncio.to_thread(load_image, data, max_pixels=self.bot.config.max_pixels)
        settings = await resolve_settings(
            self.bot.store,
            user_id=interaction.user.id,
            guild=admission.guild,
            preset=None,
            options={},
        )
        await self.painter.offer(interaction, data, settings)

    async def on_button(self, interaction: discord.Interaction, action: Action, job_id: int) -> None:
        """🖌 Paint: paint on the result's first picture, starting from the job's settings."""

        async def work() -> None:
            await defer_privately(interaction)
            job = await jobs.get_job(self.bot.store, job_id)
            if job is None:
                raise BotError(f"Job {job_id} is no longer in the bot's history.")
            asker = Asker.of(interaction, Via.BUTTON)
            # Like 🎭 Fix faces, it repaints only what was posted: anyone may, unless it was withheld.
            await check_resubmit(self.bot.store, job, asker, changes_settings=False)
            await self.bot.rules.admit(asker)
            picture = await jobs.job_picture(self.bot.store, job, ImageRole.OUTPUT)
            settings = job.inpaint_settings().model_copy(update={"seed": -1})
            await self.painter.offer(interaction, picture, settings, job_id=job.id)

        await guarded(interaction, work)


async def setup(bot: InpaintBot) -> None:
    if bot.painter is not None:
        await bot.add_cog(PainterCog(bot, bot.painter))
