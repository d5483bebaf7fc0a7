"""``/history``, ``/show``, ``/queue`` and ``/cancel``: a member's view of their jobs.

Everything is read from the database and the queue when the command runs. The history's paging buttons
carry their owner and page in the custom id (``HistoryPage``), so they work after a restart too.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Self, cast

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.delivery.render import post_result, result_message, status_text
from bot.errors import BotError
from bot.options import MAX_CHOICES
from bot.queue.events import DoneEvent, QueuedEvent, StartedEvent, final_event
from bot.replies import defer_privately, guarded
from bot.rules import can_view, check_channel
from bot.store import jobs
from bot.store.models import LIVE_STATUSES, ImageRole, Job, JobStatus
from bot.ui.buttons import handlers
from bot.uploads import FittedFile

if TYPE_CHECKING:
    from bot.client import InpaintBot

PER_PAGE = 10
QUEUE_LISTED = 10  # of a member's own jobs in /queue: twelve lines of ~150 characters fit in 2000
JobId = Range[int, 1, 2**31 - 1]  # PostgreSQL's integer ids: a larger number would fail the query
# Of each job's prompt and error in the history: ten lines of at most ~360 characters stay within
# the 4096 of an embed's description.
PROMPT_CHARS = 80
ERROR_CHARS = 100
STATUS_MARKS = {
    JobStatus.QUEUED: "⏳ queued",
    JobStatus.RUNNING: "🎨 running",
    JobStatus.DONE: "✅ done",
    JobStatus.FAILED: "❌ failed",
    JobStatus.CANCELLED: "✖ cancelled",
}
FINISHED = {
    JobStatus.DONE: "is already done",
    JobStatus.FAILED: "has already failed",
    JobStatus.CANCELLED: "was already cancelled",
}


def job_link(job: Job) -> str | None:
    """The message that shows the job (its result, once there is one), if it was recorded."""
    if job.channel_id is None or job.message_id is None:
        return None
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.message_id}"


def history_line(job: Job) -> str:
    s = job.inpaint_settings()
    seeds = s.seeds()
    seed = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    status = STATUS_MARKS[job.status]
    if (link := job_link(job)) is not None:
        status = f"[{status}]({link})"
    if job.status is JobStatus.FAILED and job.error:
        status += f": {_short(job.error, ERROR_CHARS)}"
    prompt = _short(s.prompt, PROMPT_CHARS) if s.prompt else "(no prompt)"
    when = discord.utils.format_dt(job.created_at, "f")
    outpaint = f" · outpaint {s.outpaint_text}" if s.outpaints else ""
    return f"**Job {job.id}** · {when} · {seed}{outpaint} · {status}\n> {prompt}"


def _short(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters, markdown escaped (escapes count)."""
    text = discord.utils.escape_markdown(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HistoryPage(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"history:(?P<user_id>[0-9]+):(?P<page>[0-9]+)",
):
    """◀ or ▶ under a ``/history`` page: shows page ``page`` of ``user_id``'s history to them only."""

    def __init__(self, user_id: int, page: int, *, emoji: str = "▶", disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"history:{user_id}:{page}",
                disabled=disabled,
            )
        )
        self.user_id = user_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
    ) -> Self:
        return cls(int(match["user_id"]), int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        pages = handlers(interaction).history_pages
        if pages is None:
            raise RuntimeError("no cog handles the pages of /history")
        await pages.on_page(interaction, self.user_id, self.page)


class Jobs(commands.Cog):
    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.handlers.history_pages = self

    async def cog_unload(self) -> None:
        self.bot.handlers.history_pages = None
        self.bot.remove_dynamic_items(HistoryPage)

    # -- /history -----------------------------------------------------------------------------------

    @app_commands.command(description="Your jobs, newest first")
    @app_commands.describe(page=f"Which page of {PER_PAGE} jobs (1 = the newest)")
    async def history(self, interaction: discord.Interaction, page: Range[int, 1] = 1) -> None:
        embed, view = await self._history_page(interaction.user.id, page)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    async def on_page(self, interaction: discord.Interaction, user_id: int, page: int) -> None:
        """Called by ``HistoryPage``."""

        async def work() -> None:
            if interaction.user.id != user_id:
                raise BotError(
                    "These buttons page through someone else's history; use /history for yours."
                )
            embed, view = await self._history_page(user_id, page)
            await interaction.response.edit_message(embed=embed, view=view)

        await guarded(interaction, work)

    async def _history_page(self, user_id: int, page: int) -> tuple[discord.Embed, discord.ui.View]:
        """The page's embed and its ◀ ▶ buttons (none when there is only one page)."""
        if page < 1:
            raise BotError(f"The page must be 1 or more (got {page}).")
        rows, total = await jobs.history_page(
            self.bot.store, user_id, offset=(page - 1) * PER_PAGE, limit=PER_PAGE
        )
        if total == 0:
            raise BotError("You have no jobs yet. Start one with /inpaint!")
        pages = math.ceil(total / PER_PAGE)
        if page > pages:
            raise BotError(
                f"There is no page {page}: your history has {pages} page{'s' if pages != 1 else ''}."
            )
        embed = discord.Embed(
            title="Your jobs", description="\n".join(history_line(row) for row in rows)
        )
        embed.set_footer(text=f"Page {page} of {pages} · {total} job{'s' if total != 1 else ''}")
        view = discord.ui.View(timeout=None)
        if pages == 1:
            return embed, view
        view.add_item(HistoryPage(user_id, page - 1, emoji="◀", disabled=page == 1))
        view.add_item(HistoryPage(user_id, page + 1, emoji="▶", disabled=page == pages))
        return embed, view

    # -- /show --------------------------------------------------------------------------------------

    @app_commands.command(description="Post a job's result again, with its buttons")
    @app_commands.describe(job="The job's number (see /history)")
    async def show(self, interaction: discord.Interaction, job: JobId) -> None:
        await interaction.response.defer(thinking=True)
        await check_channel(
            self.bot, self.bot.store, interaction.guild_id, interaction.channel_id, interaction.channel
        )
        row = await self._job_here(interaction, job)
        await self._check_seen(interaction, row)
        if row.hidden and row.user_id != interaction.user.id:
            raise BotError(
                f"Job {job}'s result was deleted from the channel (🗑), so only the member who "
                "ran it can show it again."
            )
        if row.status in LIVE_STATUSES:
            raise BotError(
                f"Job {job} is still {row.status.value}; its result is posted when it is done."
            )
        if row.status is JobStatus.FAILED:
            reason = f": {row.error}" if row.error else "."
            raise BotError(f"Job {job} failed, so it has no result to show{reason}")
        if row.status is JobStatus.CANCELLED:
            raise BotError(f"Job {job} was cancelled, so it has no result to show.")
        purged = BotError(f"The pictures of job {job} were cleaned up, so it cannot be shown again.")
        if any(link.image.purged_at is not None for link in row.images_with(ImageRole.OUTPUT)):
            raise purged
        try:
            result = await result_message(
                cast(DoneEvent, final_event(self.bot.store, row)),
                interaction.filesize_limit,
                paint=self.bot.config.painter_on,
            )
        except FileNotFoundError:
            raise purged from None

        async def send(
            content: str, files: list[FittedFile], embed: discord.Embed, view: discord.ui.View
        ) -> discord.Message:
            return await interaction.edit_original_response(
                content=content,
                attachments=[f.to_file() for f in files],
                embeds=[embed],
                view=view,
                allowed_mentions=discord.AllowedMentions.none(),
            )

        content = f"Job {job} by <@{row.user_id}>."
        await post_result(self.bot.store, job, result, interaction.channel, content, send)

    async def _job_here(self, interaction: discord.Interaction, job_id: int) -> Job:
        """A job this server may see: one made here, or in direct messages one's own made there."""
        row = await jobs.get_job(self.bot.store, job_id)
        if row is None:
            raise BotError(f"There is no job {job_id}.")
        if interaction.guild_id is None:
            if row.guild_id is not None or row.user_id != interaction.user.id:
                raise BotError(
                    f"Job {job_id} was not made in your direct messages with the bot; "
                    "show it in the server where it was made."
                )
        elif row.guild_id != interaction.guild_id:
            raise BotError(
                f"Job {job_id} was not made in this server; /show only shows this server's jobs."
            )
        return row

    async def _check_seen(self, interaction: discord.Interaction, row: Job) -> None:
        """Only its owner, or a member who can read the channel it was made in, may post a job again:
        job numbers are sequential, and staff channels and private threads have jobs too."""
        if row.user_id == interaction.user.id or row.guild_id is None or row.channel_id is None:
            return
        if not await can_view(self.bot, row.guild_id, row.channel_id, interaction.user):
            raise BotError(
                f"Job {row.id} was made in a channel you cannot view, so you cannot show it here."
            )

    @show.autocomplete("job")
    async def _show_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[int]]:
        rows = await jobs.user_jobs(self.bot.store, interaction.user.id)
        here = [
            row for row in rows if row.status is JobStatus.DONE and row.guild_id == interaction.guild_id
        ]
        return _job_choices(here, current)

    # -- /queue -------------------------------------------------------------------------------------

    @app_commands.command(name="queue", description="Jobs waiting and running, and where yours are")
    async def queue_status(self, interaction: discord.Interaction) -> None:
        snapshot = await self.bot.queue.snapshot()
        user_id = interaction.user.id
        running, waiting = len(snapshot.running), len(snapshot.waiting)
        lines = [f"**{running}** running, **{waiting}** waiting."]
        mine = {row.id: row for row in await jobs.live_user_jobs(self.bot.store, user_id)}
        statuses = [
            (entry.job_id, status_text(StartedEvent(entry.job_id, user_id, entry.eta)))
            for entry in snapshot.running
            if entry.user_id == user_id
        ] + [
            (entry.job_id, status_text(QueuedEvent(entry.job_id, user_id, position, entry.eta)))
            for position, entry in enumerate(snapshot.waiting, 1)
            if entry.user_id == user_id
        ]
        for job_id, status in statuses[:QUEUE_LISTED]:
            link = job_link(mine[job_id]) if job_id in mine else None
            lines.append(f"[Job {job_id}]({link}): {status}" if link else f"Job {job_id}: {status}")
        if len(statuses) > QUEUE_LISTED:
            lines.append(f"…and {len(statuses) - QUEUE_LISTED} more of yours (see /history).")
        if not statuses:
            lines.append("You have no jobs waiting or running.")
        if snapshot.workers:  # GPU workers through Redis (bot.queue.remote)
            lines.append(f"GPU workers: {', '.join(map(str, snapshot.workers))}.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    # -- /cancel ------------------------------------------------------------------------------------

    @app_commands.command(name="cancel", description="Cancel your latest waiting or running job")
    @app_commands.describe(
        job="The job's number (your latest waiting or running one if empty); "
        "members who may manage the server can cancel anyone's job here"
    )
    async def cancel_job(self, interaction: discord.Interaction, job: JobId | None = None) -> None:
        row = await self._cancellable(interaction, job)
        # Answered first: cancelling waits for the store, which may be busy saving pictures.
        await defer_privately(interaction)
        if not await self.bot.queue.cancel(row.id):
            raise BotError(f"Job {row.id} is no longer waiting or running.")
        # Its delivery replaces the job's status message with "cancelled".
        message = (
            f"Cancelled job {row.id}."
            if row.status is JobStatus.QUEUED
            else f"Stopping job {row.id}; it ends within a step."
        )
        await interaction.followup.send(message, ephemeral=True)

    async def _cancellable(self, interaction: discord.Interaction, job_id: int | None) -> Job:
        """The member's latest live job, or the named one if they may cancel it (their own, or anyone's
        in this server with Manage Server, checked at run time: command defaults can be changed)."""
        user_id = interaction.user.id
        if job_id is None:
            live = await jobs.live_user_jobs(self.bot.store, user_id)
            if not live:
                raise BotError("You have no job waiting or running to cancel.")
            return live[0]
        row = await jobs.get_job(self.bot.store, job_id)
        if row is None:
            raise BotError(f"There is no job {job_id}.")
        if row.user_id != user_id:
            if not interaction.permissions.manage_guild:
                raise BotError(
                    f"Job {job_id} is someone else's; only members who may manage the server can "
                    "cancel other members' jobs."
                )
            if interaction.guild_id is None or row.guild_id != interaction.guild_id:
                raise BotError(
                    f"Job {job_id} was not made in this server; you can cancel other members' jobs "
                    "only where you manage the server."
                )
        if row.status not in LIVE_STATUSES:
            raise BotError(
                f"Job {job_id} {FINISHED[row.status]}; only waiting or running jobs can be cancelled."
            )
        return row

    @cancel_job.autocomplete("job")
    async def _cancel_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[int]]:
        return _job_choices(await jobs.live_user_jobs(self.bot.store, interaction.user.id), current)


def _job_choices(rows: list[Job], current: object) -> list[Choice[int]]:
    """Autocomplete answers: the jobs whose number or prompt contains what was typed."""
    typed = str(current or "").strip().casefold()
    found = []
    for row in rows:
        prompt = row.inpaint_settings().prompt
        if typed in str(row.id) or typed in prompt.casefold():
            label = f"{row.id} · {row.status.value} · {' '.join(prompt.split()) or '(no prompt)'}"
            found.append(Choice(name=label[:100], value=row.id))
    return found[:MAX_CHOICES]


async def setup(bot: InpaintBot) -> None:
    bot.add_dynamic_items(HistoryPage)
    await bot.add_cog(Jobs(bot))
