"""What a job's buttons and 🔁 reactions do: re-roll, edit, fix faces, save preset, delete, zoom out
and pan (outpainting of the result), and cancel while the job is queued or running.

Every action starts from the job id (in the button's custom id, or the reacted message's row in the
database), so all of it works after a restart. New jobs are re-submitted from the stored pictures
through ``Results.resubmit`` and owned by whoever clicked or reacted: they count against their limits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import discord
from discord.ext import commands

from bot.delivery.render import REROLL_EMOJI
from bot.errors import BotError
from bot.options import check_model
from bot.replies import Quiet, error_message, guarded
from bot.rules import Asker, Via, check_resubmit, may_manage
from bot.store import jobs
from bot.store.models import ImageRole, Job, JobStatus
from bot.store.presets import MAX_NAME_LENGTH
from bot.ui.buttons import Action, JobButton
from bot.ui.presets import save_or_ask
from engine.job import InpaintRequest
from engine.settings import (
    MAX_PROMPT_CHARS,
    OUTPAINT_DEFAULTS,
    OUTPAINT_FIELDS,
    AutoMask,
    InpaintSettings,
)

if TYPE_CHECKING:
    from bot.client import InpaintBot

log = logging.getLogger(__name__)

NOTICE_SECONDS = 60.0  # how long a refused reaction's note stays in the channel
QUIET_SECONDS = 60.0  # after a refused reaction's note, that member's next refusals get none
N = TypeVar("N", int, float)


def reroll_settings(job: Job) -> InpaintSettings:
    return job.inpaint_settings().model_copy(update={"seed": -1})


def face_settings(job: Job) -> InpaintSettings:
    """The job's prompt and sampling on the face mask's own defaults (strength, mask growth)."""
    s = job.inpaint_settings()
    return InpaintSettings.parse(
        prompt=s.prompt,
        negative_prompt=s.negative_prompt,
        steps=s.steps,
        guidance=s.guidance,
        sampler=s.sampler,
        model=s.model,
        auto_mask=AutoMask.FACE,
    )


ZOOMS = {Action.ZOOM_OUT_15: 1.5, Action.ZOOM_OUT_2: 2.0}
PANS = {Action.PAN_LEFT: "left", Action.PAN_RIGHT: "right", Action.PAN_UP: "up", Action.PAN_DOWN: "down"}
# What an outpainting of a result keeps of the job's settings: its prompt, sampling, model, ControlNet
# and how the seam blends; the mask's own settings do not apply to a border.
_KEPT_FOR_OUTPAINT = (
    "prompt",
    "negative_prompt",
    "steps",
    "guidance",
    "sampler",
    "model",
    "resolution",
    "mask_blur",
    "controlnet",
    "control_weight",
    "control_start",
    "control_end",
    "tile_downsample",
)


def outpaint_settings(job: Job, **border: float) -> InpaintSettings:
    """The job's prompt and sampling on a new border (``zoom`` or pixels on a side) of its result.
    From an outpainting its strength and masked content carry on too; from an inpainting they are
    outpainting's defaults, not the mask's."""
    s = job.inpaint_settings()
    kept = (*_KEPT_FOR_OUTPAINT, *OUTPAINT_DEFAULTS) if s.outpaints else _KEPT_FOR_OUTPAINT
    return InpaintSettings.parse(**{name: getattr(s, name) for name in kept}, **border)


def output_size(job: Job) -> tuple[int, int]:
    links = job.images_with(ImageRole.OUTPUT)
    if not links:
        raise BotError(f"Job {job.id} has no result to outpaint yet.")
    return links[0].image.width, links[0].image.height


def _number(text: str, kind: Callable[[str], N], name: str) -> N | None:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise BotError(f"{name} must be a number (got {text!r}).") from None


def _prompt_input(label: str, custom_id: str, default: str) -> discord.ui.TextInput[EditModal]:
    return discord.ui.TextInput(
        label=label,
        custom_id=custom_id,
        style=discord.TextStyle.paragraph,
        default=default,
        required=False,
        max_length=MAX_PROMPT_CHARS,
    )


class EditModal(discord.ui.Modal):
    """Prompt, negative prompt, strength and seed for a new job on the same pictures.

    Modals live in memory only. Without a timeout one is answered however long the member types; one
    from before a restart is answered by ``bot.client.InpaintBot.on_interaction`` (its ``mem:`` id)."""

    def __init__(self, results: Results, job: Job) -> None:
        super().__init__(
            title=f"Edit job {job.id}", custom_id=results.bot.memory_ids.issue(), timeout=None
        )
        self.results, self.job = results, job
        s = job.inpaint_settings()
        self.prompt = _prompt_input("Prompt", "prompt", s.prompt)
        self.negative_prompt = _prompt_input("Negative prompt", "negative_prompt", s.negative_prompt)
        self.strength: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label="Strength (0 to 1)", custom_id="strength", default=f"{s.strength:g}", required=False
        )
        self.seed: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label="Seed (empty for a random one)", custom_id="seed", default=str(s.seed), required=False
        )
        for item in (self.prompt, self.negative_prompt, self.strength, self.seed):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, lambda: self._submit(interaction))

    async def _submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        settings = InpaintSettings.parse(
            **{
                **self.job.settings,
                "prompt": self.prompt.value,
                "negative_prompt": self.negative_prompt.value,
                "strength": _number(self.strength.value, float, "Strength"),
                "seed": _number(self.seed.value, int, "Seed"),
            }
        )
        asker = Asker.of(interaction, Via.FORM)
        await self.results.resubmit(self.job, settings, asker, interaction, changes_settings=True)


class PresetModal(discord.ui.Modal):
    """Saves the job's settings, less its seed (a preset should not pin one), under a name; a taken
    name asks before replacing (``save_or_ask``). In memory like ``EditModal``."""

    def __init__(self, results: Results, job: Job) -> None:
        super().__init__(title="Save as preset", custom_id=results.bot.memory_ids.issue(), timeout=None)
        self.results, self.job = results, job
        self.name: discord.ui.TextInput[PresetModal] = discord.ui.TextInput(
            label="Preset name", custom_id="name", min_length=1, max_length=MAX_NAME_LENGTH
        )
        self.add_item(self.name)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, lambda: self._submit(interaction))

    async def _submit(self, interaction: discord.Interaction) -> None:
        # Like the seed, the outpainting's border is the job's own: /inpaint applies presets too.
        left_out = {"seed", *OUTPAINT_FIELDS}
        settings = InpaintSettings.model_validate(
            {key: value for key, value in self.job.settings.items() if key not in left_out}
        )
        await save_or_ask(interaction, self.results.bot, self.name.value, settings)


class Results(commands.Cog):
    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot
        self.quiet = Quiet(QUIET_SECONDS)

    async def cog_load(self) -> None:
        self.bot.handlers.job_actions = self

    async def cog_unload(self) -> None:
        self.bot.handlers.job_actions = None
        self.bot.remove_dynamic_items(JobButton)

    async def on_button(self, interaction: discord.Interaction, action: Action, job_id: int) -> None:
        """Called by ``JobButton``; the job is read from the database on every click."""

        async def work() -> None:
            job = await jobs.get_job(self.bot.store, job_id)
            if job is None:
                raise BotError(f"Job {job_id} is no longer in the bot's history.")
            await self._actions[action](interaction, job)

        await guarded(interaction, work)

    async def _reroll(self, interaction: discord.Interaction, job: Job) -> None:
        await interaction.response.defer(thinking=True)
        asker = Asker.of(interaction, Via.BUTTON)
        await self.resubmit(job, reroll_settings(job), asker, interaction, changes_settings=False)

    async def _edit(self, interaction: discord.Interaction, job: Job) -> None:
        """Checked before the form opens, so nobody types for nothing, and again when it is sent."""
        asker = Asker.of(interaction, Via.BUTTON)
        await check_resubmit(self.bot.store, job, asker, changes_settings=True)
        await self.bot.rules.admit(asker)
        await interaction.response.send_modal(EditModal(self, job))

    async def _fix_faces(self, interaction: discord.Interaction, job: Job) -> None:
        await interaction.response.defer(thinking=True)
        asker = Asker.of(interaction, Via.BUTTON)
        settings = face_settings(job)
        await self.resubmit(
            job, settings, asker, interaction, changes_settings=False, role=ImageRole.OUTPUT
        )

    async def _zoom_out(self, interaction: discord.Interaction, job: Job, zoom: float) -> None:
        await self._outpaint(interaction, job, outpaint_settings(job, zoom=zoom))

    async def _pan(self, interaction: discord.Interaction, job: Job, side: str) -> None:
        """Half the result's size more on that side."""
        width, height = output_size(job)
        half = max(1, (width if side in ("left", "right") else height) // 2)
        await self._outpaint(interaction, job, outpaint_settings(job, **{side: half}))

    async def _outpaint(
        self, interaction: discord.Interaction, job: Job, settings: InpaintSettings
    ) -> None:
        """A new job on the job's first result, like 🎭 Fix faces: it repaints only a new border."""
        await interaction.response.defer(thinking=True)
        asker = Asker.of(interaction, Via.BUTTON)
        await self.resubmit(
            job, settings, asker, interaction, changes_settings=False, role=ImageRole.OUTPUT
        )

    async def _save_preset(self, interaction: discord.Interaction, job: Job) -> None:
        await interaction.response.send_modal(PresetModal(self, job))

    async def _delete(self, interaction: discord.Interaction, job: Job) -> None:
        if not may_manage(interaction.user.id, interaction.permissions, job):
            raise BotError(
                f"Only the person who ran job {job.id} or someone who may manage messages can delete it."
            )
        if interaction.message is None:
            raise BotError("This message can no longer be deleted.")
        await interaction.response.defer()
        await jobs.hide_job(self.bot.store, job.id)  # /show no longer posts it for others
        with contextlib.suppress(discord.NotFound):  # clicked twice: it is gone already
            await interaction.message.delete()

    async def _cancel(self, interaction: discord.Interaction, job: Job) -> None:
        if not may_manage(interaction.user.id, interaction.permissions, job):
            raise BotError(
                f"Only the person who ran job {job.id} or someone who may manage messages can cancel it."
            )
        # Answered first: cancelling waits for the store, which may be busy saving pictures.
        await interaction.response.defer()  # its delivery replaces the status with "cancelled"
        if not await self.bot.queue.cancel(job.id):
            raise BotError(f"Job {job.id} is no longer queued or running.")

    @property
    def _actions(
        self,
    ) -> dict[Action, Callable[[discord.Interaction, Job], Awaitable[None]]]:
        return {
            Action.REROLL: self._reroll,
            Action.EDIT: self._edit,
            Action.FIX_FACES: self._fix_faces,
            Action.SAVE_PRESET: self._save_preset,
            Action.DELETE: self._delete,
            Action.CANCEL: self._cancel,
            **{action: partial(self._zoom_out, zoom=zoom) for action, zoom in ZOOMS.items()},
            **{action: partial(self._pan, side=side) for action, side in PANS.items()},
        }

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """🔁 on a result by any member: a re-roll owned by them, posted as a reply to the result."""
        if str(payload.emoji) != REROLL_EMOJI:
            return
        user = payload.member or self.bot.get_user(payload.user_id)
        if user is None or user.bot:
            return
        job = await jobs.job_shown_by(self.bot.store, payload.message_id)
        if job is None or job.status is not JobStatus.DONE:
            return
        try:
            await self.resubmit(
                job,
                reroll_settings(job),
                Asker.reacting(self.bot, payload),
                None,
                changes_settings=False,
                reply_to=payload.message_id,
            )
        except Exception as exc:
            if self.quiet.may_answer(payload.user_id):
                await self._notify(payload, error_message(exc))

    async def _notify(self, payload: discord.RawReactionActionEvent, message: str) -> None:
        """A reaction has no interaction to answer privately: a short-lived reply that mentions them."""
        channel = self.bot.get_channel(payload.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        reference = discord.MessageReference(
            message_id=payload.message_id, channel_id=payload.channel_id, fail_if_not_exists=False
        )
        try:
            await channel.send(
                f"<@{payload.user_id}> {message}", reference=reference, delete_after=NOTICE_SECONDS
            )
        except discord.HTTPException:
            log.warning("could not tell user %s: %s", payload.user_id, message, exc_info=True)

    async def resubmit(
        self,
        job: Job,
        settings: InpaintSettings,
        asker: Asker,
        interaction: discord.Interaction | None,
        *,
        changes_settings: bool,
        role: ImageRole = ImageRole.INPUT,
        reply_to: int | None = None,
    ) -> None:
        """Queue ``settings`` on a stored job's pictures for ``asker``: its input and mask, or
        (``role=OUTPUT``) its first result. The one place every re-roll, edit and face fix goes
        through: the rules on re-submitting someone else's job, then those on starting any job."""
        await check_resubmit(self.bot.store, job, asker, changes_settings=changes_settings)
        admission = await self.bot.rules.admit(asker)
        check_model(settings.model, self.bot.config.allowed_models())  # the list may have changed
        store = self.bot.store
        image = await jobs.job_picture(store, job, role)
        # On its input, the job's mask: the uploaded one, or the one its words found (not searched again).
        masks = {}
        for kind in (ImageRole.MASK, ImageRole.FOUND_MASK):
            if role is ImageRole.INPUT and job.images_with(kind):
                masks[kind] = await jobs.job_picture(store, job, kind)
        request = InpaintRequest(
            image=image,
            mask=masks.get(ImageRole.MASK),
            found_mask=masks.get(ImageRole.FOUND_MASK),
            settings=settings,
        )
        await self.bot.router.submit(
            admission, request, interaction, parent_id=job.id, reply_to=reply_to
        )


async def setup(bot: InpaintBot) -> None:
    bot.add_dynamic_items(JobButton)
    await bot.add_cog(Results(bot))
