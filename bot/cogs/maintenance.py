"""The bot's periodic work: the picture retention policy (and forgetting expired painter links), and
the heartbeat for the health check."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from discord.ext import commands, tasks

from bot import health
from bot.store import retention as pictures
from bot.store.models import utcnow
from bot.store.painter import forget_expired_links

if TYPE_CHECKING:
    from bot.client import InpaintBot

log = logging.getLogger(__name__)

RETENTION_INTERVAL_HOURS = 1
PAINTER_LINKS_KEPT = timedelta(days=1)


class Maintenance(commands.Cog):
    def __init__(self, bot: InpaintBot) -> None:
        self.bot = bot
        self._heartbeat_path = health.heartbeat_path(bot.config.data_dir)

    async def cog_load(self) -> None:
        self.retention.start()
        self.heartbeat.start()

    async def cog_unload(self) -> None:
        self.retention.cancel()
        self.heartbeat.cancel()
        health.clear(self._heartbeat_path)

    @tasks.loop(hours=RETENTION_INTERVAL_HOURS)
    async def retention(self) -> None:
        """Apply the picture retention policy at start-up and then every hour, and forget painter
        links a day after they expired (until then, opening one says it expired)."""
        try:
            await forget_expired_links(self.bot.store, utcnow() - PAINTER_LINKS_KEPT)
            policy = pictures.RetentionPolicy.from_config(self.bot.config)
            report = await pictures.clean_up(self.bot.store, policy)
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
        the queue started before the bot connects), and not while the queue's GPU hangs."""
        bot = self.bot
        if bot.is_closed() or bot.ws is None or not bot.ws.open:
            return
        try:
            if (stuck := bot.queue.stuck()) is not None:
                health.unhealthy(self._heartbeat_path, stuck)
            else:
                health.beat(self._heartbeat_path)
        except OSError:
            log.warning("could not write the heartbeat %s", self._heartbeat_path, exc_info=True)

    @heartbeat.before_loop
    async def _until_ready(self) -> None:
        await self.bot.wait_until_ready()


async def setup(bot: InpaintBot) -> None:
    await bot.add_cog(Maintenance(bot))
