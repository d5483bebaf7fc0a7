"""The mask preview of ``/inpaint preview_mask``: the picture with the mask tinted, privately, and
buttons to adjust the mask before anything is queued.

✅ Paint it queues the job with the mask as adjusted (through the cog's ``paint``, which admits it like
any other job); ➕ ➖ change ``mask_grow`` by ``GROW_STEP``, 🔄 toggles ``invert_mask``, ⏭ steps
``mask_pick`` through the matches (only when the source found several), ✖ drops it. Each adjustment is
drawn again by ``redraw`` (the queue's ``mask_preview``, off the event loop and beside the GPU).

The state (the uploaded bytes and the settings) lives in this view only: it ends after
``PREVIEW_SECONDS`` (the buttons are then replaced by a note) or with the process (a click is then
answered by ``bot.client.InpaintBot.on_interaction``, through the ``mem:`` ids).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord

from bot.ui.presets import OwnedView
from engine.job import InpaintRequest
from engine.mask_preview import MaskPreview
from engine.settings import InpaintSettings

# Under the 15 minutes the interaction token lives, so the expired message can still be edited.
PREVIEW_SECONDS = 600.0
GROW_STEP = 8  # px per ➕ / ➖
MAX_GROW = 64  # InpaintSettings' limit for mask_grow
FILENAME = "mask-preview.png"
EXPIRED = "This preview expired, so nothing was painted. Start again with /inpaint."
CANCELLED = "Cancelled: nothing was painted."
QUEUED = "Painting it: your job is in the queue (see below)."

Redraw = Callable[[InpaintRequest], Awaitable[MaskPreview]]
Paint = Callable[[discord.Interaction, InpaintRequest], Awaitable[None]]


def preview_file(preview: MaskPreview) -> discord.File:
    buffer = io.BytesIO()
    preview.overlay.save(buffer, format="PNG")
    buffer.seek(0)
    return discord.File(buffer, filename=FILENAME)


def caption(preview: MaskPreview, settings: InpaintSettings) -> str:
    """What the member is looking at, and what each button will do."""
    parts = [f"the {preview.source.value}"]
    if settings.mask_grow:
        parts.append(f"{'grown' if settings.mask_grow > 0 else 'shrunk'} {abs(settings.mask_grow)} px")
    if settings.invert_mask:
        parts.append("inverted")
    if preview.matches > 1:
        parts.append(
            f"match {preview.shown} of {preview.matches}"
            if preview.shown
            else f"all {preview.matches} matches"
        )
    return (
        f"Red is what will be repainted ({', '.join(parts)}). "
        "✅ paints it; adjust it first with the other buttons."
    )


class PreviewView(OwnedView):
    """The buttons under a mask preview; only the member who asked may press them."""

    def __init__(
        self,
        interaction: discord.Interaction,
        request: InpaintRequest,
        preview: MaskPreview,
        *,
        redraw: Redraw,
        paint: Paint,
    ) -> None:
        super().__init__(interaction)
        self.timeout = PREVIEW_SECONDS
        self.request, self.preview = request, preview
        self.redraw, self.paint = redraw, paint
        self.message: discord.WebhookMessage | None = None  # the preview, once sent
        self.painting = False
        if preview.matches < 2:
            self.remove_item(self.next_button)

    async def show(self) -> None:
        """Send the preview privately, as the answer to the command (its "thinking" note goes)."""
        with contextlib.suppress(discord.NotFound):
            await self.interaction.delete_original_response()
        self.message = await self.interaction.followup.send(
            caption(self.preview, self.request.settings),
            file=preview_file(self.preview),
            view=self,
            ephemeral=True,
            wait=True,
        )

    async def _adjust(self, interaction: discord.Interaction, **changes: Any) -> None:
        """Draw the mask again with ``changes``; a change that cannot be shown (shrunk to nothing)
        is refused and the preview stays as it was."""
        await interaction.response.defer()
        settings = self.request.settings.model_copy(update=changes)
        adjusted = InpaintSettings.parse(**settings.model_dump(exclude_unset=True))
        request = replace(self.request, settings=adjusted)
        self.preview = await self.redraw(request)
        self.request = request
        await interaction.edit_original_response(
            content=caption(self.preview, request.settings),
            attachments=[preview_file(self.preview)],
            view=self,
        )

    @discord.ui.button(label="Paint it", emoji="✅", style=discord.ButtonStyle.success)
    async def paint_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[PreviewView]
    ) -> None:
        if self.painting:  # a second click while the first is being queued
            await interaction.response.defer()
            return
        self.painting = True
        try:
            await self.paint(interaction, self.request)
        finally:
            self.painting = False
        self.stop()
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(content=QUEUED, view=None)

    @discord.ui.button(label="Grow", emoji="➕", style=discord.ButtonStyle.secondary)
    async def grow_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[PreviewView]
    ) -> None:
        grow = min(self.request.settings.mask_grow + GROW_STEP, MAX_GROW)
        await self._adjust(interaction, mask_grow=grow)

    @discord.ui.button(label="Shrink", emoji="➖", style=discord.ButtonStyle.secondary)
    async def shrink_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[PreviewView]
    ) -> None:
        grow = max(self.request.settings.mask_grow - GROW_STEP, -MAX_GROW)
        await self._adjust(interaction, mask_grow=grow)

    @discord.ui.button(label="Invert", emoji="🔄", style=discord.ButtonStyle.secondary)
    async def invert_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[PreviewView]
    ) -> None:
        await self._adjust(interaction, invert_mask=not self.request.settings.invert_mask)

    @discord.ui.button(label="Next match", emoji="⏭", style=discord.ButtonStyle.secondary)
    async def next_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[PreviewView]
    ) -> None:
        """All matches, then each in turn, then all again."""
        following = (self.preview.shown + 1) % (self.preview.matches + 1)
        await self._adjust(interaction, mask_pick=str(following) if following else "all")

    @discord.ui.button(label="Cancel", emoji="✖", style=discord.ButtonStyle.danger)
    async def cancel_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[PreviewView]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content=CANCELLED, attachments=[], view=None)

    async def on_timeout(self) -> None:
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(content=EXPIRED, attachments=[], view=None)
