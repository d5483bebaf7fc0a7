"""``/inpaint``: take the upload and the settings, queue the job, and hand its messages to a ``Delivery``.

The command defers before anything slow (downloads, the database, the engine's checks): Discord drops
an interaction that is not answered within 3 seconds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.errors import BotError
from bot.queue.base import JobSubmission
from bot.store.presets import resolve_settings, visible_presets
from engine.job import InpaintRequest
from engine.settings import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    Area,
    AutoMask,
    MaskedContent,
    Sampler,
)

if TYPE_CHECKING:
    from bot.app import InpaintBot

MAX_CHOICES = 25  # Discord's limit for autocomplete answers

# Larger than any picture worth inpainting; refuses huge files before they are read into memory.
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024
PICTURE_TYPES = "PNG, JPEG, WebP, GIF, BMP or TIFF"

Prompt = Range[str, 1, MAX_PROMPT_CHARS]


def _choices(values: type[StrEnum]) -> list[Choice[str]]:
    return [Choice(name=value.value, value=value.value) for value in values]


async def download(attachment: discord.Attachment, what: str) -> bytes:
    """The original bytes, once (CDN URLs expire); size and type are checked before reading."""
    if attachment.size > MAX_ATTACHMENT_BYTES:
        raise BotError(
            f"The {what} `{attachment.filename}` is {attachment.size / 2**20:.0f} MB; "
            f"the most this bot takes is {MAX_ATTACHMENT_BYTES // 2**20} MB."
        )
    content_type = attachment.content_type or ""
    if content_type and not content_type.startswith("image/"):
        raise BotError(
            f"The {what} `{attachment.filename}` is not a picture: upload a {PICTURE_TYPES} file."
        )
    try:
        return await attachment.read()
    except discord.HTTPException:
        raise BotError(
            f"The {what} `{attachment.filename}` could not be downloaded from Discord; upload it again."
        ) from None


class Inpaint(commands.Cog):
    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot

    @app_commands.command(description="Repaint the marked part of a picture")
    @app_commands.describe(
        image="The picture to change; its transparent pixels are repainted if there is no mask",
        mask="White (or opaque strokes) = repaint, black = keep",
        prompt="What to paint in the masked area",
        negative_prompt="What to avoid",
        auto_mask="Find and repaint faces instead of using a mask",
        preset="One of your or this server's presets; options you set here win",
        strength="Denoising strength: 0 keeps the original, 1 ignores it (0.75; faces 0.4)",
        steps="Sampling steps (25)",
        guidance="CFG scale: how closely to follow the prompt (7)",
        seed="-1 or empty for a random one",
        sampler="Sampling method (euler_a)",
        area="Repaint at full resolution around the mask only, or the whole picture (masked)",
        padding="Pixels of context around the mask when the area is 'masked' (32)",
        masked_content="What the masked area starts from (original)",
        mask_blur="Softens the mask edge, in pixels (4)",
        invert_mask="Repaint what is NOT masked",
        mask_grow="Grow (positive) or shrink (negative) the mask, in pixels (0; faces 4)",
        count="How many pictures (1)",
        model="A model other than the default",
    )
    @app_commands.choices(
        auto_mask=_choices(AutoMask),
        sampler=_choices(Sampler),
        area=_choices(Area),
        masked_content=_choices(MaskedContent),
    )
    async def inpaint(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        mask: discord.Attachment | None = None,
        prompt: Prompt | None = None,
        negative_prompt: Prompt | None = None,
        auto_mask: Choice[str] | None = None,
        preset: Range[str, 1, 100] | None = None,
        strength: Range[float, 0.0, 1.0] | None = None,
        steps: Range[int, 1, 150] | None = None,
        guidance: Range[float, 1.0, 30.0] | None = None,
        seed: Range[int, -1, MAX_SEED] | None = None,
        sampler: Choice[str] | None = None,
        area: Choice[str] | None = None,
        padding: Range[int, 0, 256] | None = None,
        masked_content: Choice[str] | None = None,
        mask_blur: Range[int, 0, 64] | None = None,
        invert_mask: bool | None = None,
        mask_grow: Range[int, -64, 64] | None = None,
        count: Range[int, 1, 4] | None = None,
        model: Range[str, 1, 500] | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        values = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "auto_mask": auto_mask and auto_mask.value,
            "strength": strength,
            "steps": steps,
            "guidance": guidance,
            "seed": seed,
            "sampler": sampler and sampler.value,
            "area": area and area.value,
            "padding": padding,
            "masked_content": masked_content and masked_content.value,
            "mask_blur": mask_blur,
            "invert_mask": invert_mask,
            "mask_grow": mask_grow,
            "count": count,
            "model": model,
        }
        user_id = interaction.user.id
        settings = await resolve_settings(
            self.bot.store,
            user_id=user_id,
            guild_id=interaction.guild_id,
            preset=preset,
            options=values,
        )
        allowed = self.bot.config.allowed_models()
        if settings.model is not None and settings.model not in allowed:
            raise BotError(f"Unknown model {settings.model!r}. This bot offers: {', '.join(allowed)}.")
        request = InpaintRequest(
            image=await download(image, "image"),
            mask=await download(mask, "mask") if mask else None,
            settings=settings,
        )
        submission = JobSubmission(
            user_id=user_id,
            request=request,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )
        await self.bot.submit(submission, interaction)

    @inpaint.autocomplete("preset")
    async def _preset_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        presets = await visible_presets(self.bot.store, interaction.user.id, interaction.guild_id)
        return _matching(
            [preset.name for preset in presets],
            current,
            labels=[f"{p.name} (server)" if p.guild_id else p.name for p in presets],
        )

    @inpaint.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        return _matching(self.bot.config.allowed_models(), current)


def _matching(
    names: list[str], current: str, *, labels: list[str] | None = None
) -> list[Choice[str]]:
    """Autocomplete answers: names containing what was typed, at most Discord's 25 (and 100 chars).
    ``labels`` are what the member sees for each name, if not the name itself."""
    found = [
        Choice(name=label, value=name)
        for name, label in zip(names, labels or names, strict=True)
        if current.casefold() in name.casefold() and len(name) <= 100
    ]
    return found[:MAX_CHOICES]


async def setup(bot: InpaintBot) -> None:
    await bot.add_cog(Inpaint(bot))
