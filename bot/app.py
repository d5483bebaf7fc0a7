"""The Discord client: one ``commands.Bot`` that owns the queue's event stream and routes it per job.

Feature areas live in extensions under ``bot.cogs`` (one per area); this module only wires them to the
queue and the store, so tests can build the same bot on a fake engine and a fake Discord.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping

import discord
import yarl
from discord import app_commands
from discord.ext import commands, tasks

from bot import health
from bot.config import BotConfig
from bot.delivery import EDIT_INTERVAL, Delivery
from bot.guards import admit
from bot.logs import JobLog
from bot.queue.base import JobQueue, JobSubmission
from bot.queue.events import CancelledEvent, DoneEvent, EventStream, FailedEvent, JobEvent, QueuedEvent
from bot.replies import error_message, refuse
from bot.store import jobs
from bot.store.database import Store
from bot.store.retention import RetentionPolicy, clean_up
from bot.ui.buttons import EXPIRED_MESSAGE, Handlers, MemoryIds

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.cogs.inpaint",
    "bot.cogs.results",
    "bot.cogs.jobs",
    "bot.cogs.presets",
    "bot.cogs.server",
)
RETENTION_INTERVAL_HOURS = 1
# What the bot needs in a channel; the invite URL asks for exactly these.
PERMISSIONS = discord.Permissions(
    send_messages=True,
    attach_files=True,
    embed_links=True,
    add_reactions=True,
    read_message_history=True,
)
SCOPES = ("bot", "applications.commands")


def invite_url(application_id: str) -> str:
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope={'+'.join(SCOPES)}&permissions={PERMISSIONS.value}"
    )


def point_at_discord(config: BotConfig) -> None:
    """Send REST calls (interaction callbacks and webhooks included) and the gateway to proxies."""
    if config.discord_api_base:
        discord.http.Route.BASE = config.discord_api_base.rstrip("/")
    if config.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.discord_gateway_url)


class InpaintTree(app_commands.CommandTree["InpaintBot"]):
    """Every failed command ends in an ephemeral message (see ``bot.replies.error_message``)."""

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await refuse(interaction, error_message(cause))


class InpaintBot(commands.Bot):
    """Holds the queue, the store and the live deliveries (job id → ``Delivery``)."""

    def __init__(
        self,
        config: BotConfig,
        queue: JobQueue,
        store: Store,
        *,
        guild_ready_timeout: float = 2.0,
        edit_interval: float = EDIT_INTERVAL,
    ) -> None:
        intents = discord.Intents.default()
        intents.guild_reactions = (
            True  # 🔁 re-roll reactions; in the defaults, stated because we rely on it
        )
        super().__init__(
            commands.when_mentioned,
            intents=intents,
            help_command=None,
            guild_ready_timeout=guild_ready_timeout,
            tree_cls=InpaintTree,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.config = config
        self.queue = queue
        self.store = store
        self.edit_interval = edit_interval  # seconds between progress edits of one message
        self.deliveries: dict[int, Delivery] = {}
        self._events: EventStream | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._job_log = JobLog()
        self._heartbeat_path = health.heartbeat_path(config.data_dir)
        self.memory_ids = MemoryIds()  # custom ids of in-memory views and modals
        self.handlers = Handlers()  # the cogs that do persistent components' work

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self._sync_commands()
        self._events = self.queue.subscribe()  # before start: recovered jobs report through it too
        await self.queue.start()
        self._dispatcher = asyncio.create_task(self._dispatch(self._events), name="queue-events")
        self.retention.start()
        self.heartbeat.start()

    async def _sync_commands(self) -> None:
        """Register the slash commands globally, or only in ``guild_ids`` (instantly there). Then the
        global set is emptied, or members would see every command twice after a switch to guilds; a
        listed server that refuses (the bot is not in it, or lacks the applications.commands scope)
        is logged and skipped, so one typo does not stop the bot."""
        if not self.config.guild_ids:
            await self.tree.sync()
            return
        for guild_id in self.config.guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            try:
                await self.tree.sync(guild=guild)
            except (discord.Forbidden, discord.NotFound) as exc:
                log.error(
                    "could not register the slash commands in server %s from INPAINTBOT_GUILD_IDS "
                    "(%s): the bot is not in that server, or was invited without the "
                    "applications.commands scope; invite it again with %s",
                    guild_id,
                    exc.text or exc.status,
                    invite_url(str(self.application_id)),
                )
        self.tree.clear_commands(guild=None)
        await self.tree.sync()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Answer a click or form of an in-memory view or modal this process no longer knows
        (discord.py drops those silently): see ``bot.ui.buttons.MemoryIds``."""
        if interaction.type not in (
            discord.InteractionType.component,
            discord.InteractionType.modal_submit,
        ):
            return
        data: Mapping[str, object] = interaction.data or {}
        custom_id = data.get("custom_id")
        if isinstance(custom_id, str) and self.memory_ids.is_stale(custom_id):
            await refuse(interaction, EXPIRED_MESSAGE)

    @tasks.loop(hours=RETENTION_INTERVAL_HOURS)
    async def retention(self) -> None:
        """Apply the picture retention policy at start-up and then every hour."""
        try:
            report = await clean_up(self.store, RetentionPolicy.from_config(self.config))
        except Exception:
            log.exception("picture clean-up failed; it is tried again in an hour")
            return
        if report.purged or report.stray_files:
            log.info(
                "clean-up removed %d pictures and %d stray files, %d bytes",
                report.purged,
                report.stray_files,
                report.freed_bytes,
            )

    @tasks.loop(seconds=health.INTERVAL)
    async def heartbeat(self) -> None:
        """Tell the health check the bot is working: only while connected (the model is loaded and
        the queue started before the bot connects)."""
        if self.is_closed() or self.ws is None or not self.ws.open:
            return
        try:
            health.beat(self._heartbeat_path)
        except OSError:
            log.warning("could not write the heartbeat %s", self._heartbeat_path, exc_info=True)

    @heartbeat.before_loop
    async def _until_ready(self) -> None:
        await self.wait_until_ready()

    async def close(self) -> None:
        self.retention.cancel()
        self.heartbeat.cancel()
        health.clear(self._heartbeat_path)
        # discord.py may call close twice (``close`` and the ending ``connect``); stop routing once.
        events, self._events = self._events, None
        if events is not None:
            self.queue.unsubscribe(events)
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            await dispatcher
        for delivery in list(self.deliveries.values()):
            await delivery.close()
        await super().close()

    async def submit(
        self,
        submission: JobSubmission,
        interaction: discord.Interaction | None,
        *,
        reply_to: int | None = None,
    ) -> QueuedEvent:
        """Queue a job, if the server's rules allow it here (``bot.guards.admit``), and show its
        progress and result through ``interaction`` (or in its channel, replying to message
        ``reply_to``)."""
        if interaction is not None and self.config.progress_previews:
            submission = dataclasses.replace(submission, previews=True)  # only shown in a response
        channel = interaction.channel if interaction is not None else None
        checked = self.config.safety_checker is not None
        submission = await admit(self, self.store, submission, channel, checked=checked)
        queued = await self.queue.submit(submission)
        # No await between submit and track: the job's first event must find its delivery.
        self.track(
            Delivery(
                self,
                self.queue,
                queued.job_id,
                submission.user_id,
                interaction,
                submission.channel_id,
                reply_to,
                store=self.store,
                edit_interval=self.edit_interval,
            )
        )
        return queued

    def track(self, delivery: Delivery) -> None:
        """Route the job's events to ``delivery``; call it right after ``submit`` returns, before any
        ``await``, so not even the first event goes past it."""
        self.deliveries[delivery.job_id] = delivery
        delivery.start(on_done=lambda: self.deliveries.pop(delivery.job_id, None))

    async def _dispatch(self, events: EventStream) -> None:
        async for event in events:
            try:
                await self._route(event)
            except Exception:
                log.exception("routing %s failed", event)

    async def _route(self, event: JobEvent) -> None:
        self._job_log.record(event)
        delivery = self.deliveries.get(event.job_id)
        if delivery is None and isinstance(event, DoneEvent | FailedEvent | CancelledEvent):
            # A job from before a restart: its interaction is gone, so it goes to its channel.
            row = await jobs.get_job(self.store, event.job_id)
            if row is None or row.channel_id is None:
                # Nowhere to post it, now or after another restart: do not report it again.
                log.warning("job %s finished but has no channel to report to", event.job_id)
                await self.queue.acknowledge(event.job_id)
                return
            delivery = Delivery(
                self,
                self.queue,
                event.job_id,
                event.user_id,
                None,
                row.channel_id,
                row.message_id,
                store=self.store,
                status_id=row.message_id,  # its status message, never replaced by a result yet
            )
            self.track(delivery)
        if delivery is not None:
            delivery.push(event)


async def build_bot(config: BotConfig, **options: float) -> InpaintBot:
    """Migrate the database, then build the engine, the queue and the bot (the model loads when the
    bot starts, in ``setup_hook``)."""
    from bot.queue.local import LocalJobQueue
    from bot.store.database import open_store
    from engine.engine import Engine
    from engine.safety import safety_checker

    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(config)
    engine = Engine(config)
    safety = safety_checker(config, engine.models.device, engine.models.dtype)
    return InpaintBot(config, LocalJobQueue(engine, store, config, safety=safety), store, **options)


async def run_bot(config: BotConfig) -> None:
    """``inpaintbot run``: until the connection ends or the process is interrupted."""
    if config.discord_token is None:
        raise ValueError("run_bot needs config.discord_token")
    point_at_discord(config)
    bot = await build_bot(config)
    try:
        async with bot:
            await bot.start(config.discord_token.get_secret_value())
    finally:
        await bot.queue.close()
        await bot.store.close()
