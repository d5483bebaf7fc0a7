"""The painter as the rest of the bot sees it: the web server, and a private link offered to a member.

``InpaintBot`` holds one while ``INPAINTBOT_PUBLIC_URL`` is set; the cogs offer links through it (🖌
Paint under a result, ``/paint``, ``/inpaint`` without a mask).
"""

from __future__ import annotations

import discord

from bot.config import BotConfig
from bot.delivery.router import DeliveryRouter
from bot.replies import refuse
from bot.rules import Rules
from bot.store.database import Store
from bot.web.app import MASK_SOURCES, PainterServer
from bot.web.links import Links, load_secret
from engine.settings import InpaintSettings


class Painter:
    def __init__(
        self,
        client: discord.Client,
        config: BotConfig,
        store: Store,
        rules: Rules,
        router: DeliveryRouter,
    ) -> None:
        if config.public_url is None:
            raise ValueError("the painter needs INPAINTBOT_PUBLIC_URL")
        self.links = Links(store, load_secret(config), config.public_url)
        self.server = PainterServer(client, config, store, rules, router, self.links)

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    async def offer(
        self,
        interaction: discord.Interaction,
        image: bytes,
        settings: InpaintSettings,
        *,
        job_id: int | None = None,
        note: str = "",
    ) -> None:
        """Answer ``interaction`` privately with a link to paint on ``image``, starting from
        ``settings``; the link is the member's alone, for this channel (``refuse`` answers privately
        whatever the deferral was)."""
        channel_id = interaction.channel_id
        if channel_id is None:
            raise RuntimeError("an interaction without a channel cannot open the painter")
        values = settings.model_dump(mode="json")
        for name in MASK_SOURCES:
            values.pop(name, None)
        url, expires = await self.links.issue(
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=channel_id,
            image=image,
            settings=values,
            job_id=job_id,
        )
        text = (
            f"{note}Paint the area to repaint in your browser; the result is posted here. "
            f"The link is yours alone, works once, and expires <t:{expires}:R>."
        ).strip()
        await refuse(interaction, text, view=link_view(url))


def link_view(url: str) -> discord.ui.View:
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="Open the painter", emoji="🖌", url=url))
    return view
