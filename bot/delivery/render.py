"""What a job's messages say: status lines, the settings embed, and the one way to post a result.

``post_result`` is used by a job's own delivery and by ``/show``, so a result looks and behaves the same
wherever it is posted: pictures fitted to the upload limit, the server's NSFW policy applied at that
moment, the settings embed, the buttons, and 🔁.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import discord
from discord.utils import escape_markdown

from bot.guards import screen
from bot.options import model_name
from bot.queue.events import DoneEvent, ProgressEvent, QueuedEvent, StartedEvent
from bot.store import jobs
from bot.store.database import Store
from bot.ui.buttons import result_view
from bot.uploads import FittedFile, fit_image
from engine.settings import ControlNet

log = logging.getLogger(__name__)

REROLL_EMOJI = "🔁"
# Posts a message (content, pictures, settings embed, buttons) where the result goes.
Send = Callable[[str, list[FittedFile], discord.Embed, discord.ui.View], Awaitable[discord.Message]]


def settings_embed(event: DoneEvent) -> discord.Embed:
    """The settings the job actually used (concrete seeds included), so anyone can reproduce it. The
    prompts are shown as typed: Markdown in them is escaped."""
    s = event.settings
    prompt = escape_markdown(s.prompt) or "(none)"
    embed = discord.Embed(description=f"**Prompt:** {prompt}"[:4096])
    if s.negative_prompt:
        negative = escape_markdown(s.negative_prompt)[:1024]
        embed.add_field(name="Negative prompt", value=negative, inline=False)
    seeds = ", ".join(str(seed) for seed in event.seeds)
    fields = {
        "Seed" if len(event.seeds) == 1 else "Seeds": seeds,
        "Strength": f"{s.strength:g}",
        "Steps": str(s.steps),
        "Guidance": f"{s.guidance:g}",
        "Sampler": s.sampler.value,
        "Area": f"{s.area.value} (padding {s.padding})",
        "Masked content": s.masked_content.value,
        "Mask": f"blur {s.mask_blur}, grow {s.mask_grow}" + (", inverted" if s.invert_mask else ""),
    }
    if s.outpaints:  # painted in windows along the new border, whatever the area says
        del fields["Area"]
        fields["Outpaint"] = s.outpaint_text
    if s.mask_prompt is not None:
        pick = f" (pick: {s.mask_pick})" if s.mask_pick != "all" else ""
        fields["Mask from words"] = escape_markdown(s.mask_prompt)[:900] + pick
    if s.controlnet is not ControlNet.NONE:
        tile = f", downsample {s.tile_downsample:g}" if s.controlnet is ControlNet.TILE else ""
        fields["ControlNet"] = (
            f"{s.controlnet.value}, weight {s.control_weight:g}, "
            f"steps {s.control_start:g}–{s.control_end:g}{tile}"
        )
    for name, value in fields.items():
        embed.add_field(name=name, value=value)
    embed.add_field(name="Model", value=escape_markdown(model_name(event.model))[:1024], inline=False)
    source = f"mask: {event.mask_source.value} · " if event.mask_source else ""
    embed.set_footer(text=f"{source}{event.seconds:.1f} s · job {event.job_id}")
    return embed


def status_text(event: QueuedEvent | StartedEvent | ProgressEvent) -> str:
    if isinstance(event, QueuedEvent):
        return f"⏳ Queued: position {event.position}{_eta(event.eta)}."
    if isinstance(event, StartedEvent):
        return f"🎨 Running{_eta(event.eta)}."
    return f"🎨 Step {event.step}/{event.total}."


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return (
        f", about {math.ceil(seconds)} s" if seconds < 90 else f", about {math.ceil(seconds / 60)} min"
    )


@dataclass(frozen=True)
class ResultMessage:
    """What a result post carries: the pictures fitted to the upload limit, the settings, the buttons."""

    files: list[FittedFile]
    embed: discord.Embed
    view: discord.ui.View


async def result_message(event: DoneEvent, limit: int, *, paint: bool = False) -> ResultMessage:
    """Built the same way for a job's own delivery and for ``/show``, which posts a result again;
    ``paint``: the painter is on (its 🖌 button is shown)."""
    fitted = await asyncio.to_thread(_fit_all, event, limit)
    return ResultMessage(fitted, settings_embed(event), result_view(event.job_id, paint=paint))


async def offer_reroll(message: discord.Message, job_id: int) -> None:
    """The 🔁 reaction on a result, for members to click (see ``Results.on_raw_reaction_add``)."""
    try:
        await message.add_reaction(REROLL_EMOJI)
    except discord.HTTPException as exc:
        log.info("could not add %s to job %s: %s", REROLL_EMOJI, job_id, exc)


def _fit_all(event: DoneEvent, limit: int) -> list[FittedFile]:
    return [
        fit_image(Path(image.path).read_bytes(), f"inpaint-{event.job_id}-{image.seed}", limit)
        for image in event.images
    ]


async def post_result(
    store: Store, job_id: int, result: ResultMessage, where: object, content: str, send: Send
) -> discord.Message:
    """Post ``result`` through ``send`` in ``where`` (the channel, as far as it is known). The posted
    message becomes the job's message: 🔁 on it re-rolls, ``/history`` links to it."""
    shown = await screen(store, job_id, where)  # the server's policy now, re-posts included
    content = f"{content} {shown.note}".rstrip()
    message = await send(content, shown.apply(result.files), result.embed, result.view)
    await jobs.set_job_message(store, job_id, message_id=message.id, channel_id=message.channel.id)
    await offer_reroll(message, job_id)
    return message
