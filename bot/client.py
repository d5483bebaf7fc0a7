"""The discord.py client: loads the feature extensions, syncs the slash commands, answers stale
components. It holds what the cogs share (config, queue, store, the delivery router) and does no job
work itself; ``bot.runner`` builds it on a real engine, tests on a fake engine and a fake Discord.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.config import BotConfig
from bot.delivery.delivery import EDIT_INTERVAL, RETRY_DELAY
from bot.delivery.router import DeliveryRouter
from bot.queue.base import JobQueue
from bot.replies import error_message, refuse
from bot.rules import COMMAND, Rules
from bot.store.database import Store
from bot.ui.buttons import EXPIRED_MESSAGE, Handlers, MemoryIds
from bot.web.painter import Painter

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.cogs.inpaint",
    "bot.cogs.results",
    "bot.cogs.jobs",
    "bot.cogs.presets",
    "bot.cogs.server",
    "bot.cogs.painter",
)
# Loaded once the queue has started: the first clean-up runs after the queue recovered its jobs.
MAINTENANCE = "bot.cogs.maintenance"
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
    """Holds the config, the queue, the store and the router that shows each job's messages."""

    def __init__(
        self,
        config: BotConfig,
        queue: JobQueue,
        store: Store,
        *,
        guild_ready_timeout: float = 2.0,
        edit_interval: float = EDIT_INTERVAL,
        retry_delay: float = RETRY_DELAY,
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
        self.rules = Rules(self, store, config, queue)
        self.router = DeliveryRouter(
            self, queue, store, config, edit_interval=edit_interval, retry_delay=retry_delay
        )
        self.memory_ids = MemoryIds()  # custom ids of in-memory views and modals
        self.handlers = Handlers()  # the cogs that do persistent components' work
        # The mask painter's web server and links, when members can reach it (INPAINTBOT_PUBLIC_URL).
        self.painter = (
            Painter(self, config, store, self.rules, self.router) if config.painter_on else None
        )

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self._sync_commands()
        await self.router.start()
        if self.painter is not None:
            await self.painter.start()
        await self.load_extension(MAINTENANCE)

    async def _sync_commands(self) -> None:
        """Register the slash commands globally, or only in ``guild_ids`` (instantly there). Then the
        global set is emptied, or members would see every command twice after a switch to guilds; a
        listed server that refuses (the bot is not in it, or lacks the applications.commands scope)
        is logged and skipped, so one typo does not stop the bot."""
        if not self.config.guild_ids:
            self._know(None, await self.tree.sync())
            return
        for guild_id in self.config.guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            try:
                self._know(guild_id, await self.tree.sync(guild=guild))
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

    async def on_ready(self) -> None:
        for guild in self.guilds:
            await self._leave_unless_served(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._leave_unless_served(guild)

    async def _leave_unless_served(self, guild: discord.Guild) -> None:
        """A bot anyone can invite would let any server use the operator's GPU."""
        if self.config.serves(guild.id):
            return
        log.warning(
            "leaving server %s (%s): it is not in INPAINTBOT_ALLOWED_GUILDS", guild.id, guild.name
        )
        try:
            await guild.leave()
        except discord.HTTPException:
            log.exception("could not leave server %s", guild.id)

    def _know(self, guild_id: int | None, commands: list[app_commands.AppCommand]) -> None:
        """Remember /inpaint's id: its permission overrides apply to its buttons and 🔁 too."""
        for command in commands:
            if command.name == COMMAND:
                self.rules.command_ids[guild_id] = command.id

    async def on_raw_app_command_permissions_update(
        self, payload: discord.RawAppCommandPermissionsUpdateEvent
    ) -> None:
        self.rules.forget_command_permissions(payload.guild.id)

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

    async def close(self) -> None:
        # The periodic loops stop first, then job events; discord.py may call close twice.
        with contextlib.suppress(commands.ExtensionNotLoaded):
            await self.unload_extension(MAINTENANCE)
        if self.painter is not None:
            await self.painter.close()
        await self.router.close()
        await super().close()
