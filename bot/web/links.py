"""Signed one-use links to the painter.

A link is ``<public url>/paint/<id>.<expiry>.<signature>``. The signature is an HMAC-SHA256, under a
secret only the bot knows, of the link's id and expiry and of what its row in the database binds it
to: the member, the server, the channel and the picture's SHA-256. Every request checks it, so a
changed id, expiry or row is refused, and the row records when the link was used. Nothing about a
link is kept in memory or in cookies.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import MIN_SECRET_CHARS, BotConfig
from bot.errors import BotError
from bot.logs import PAINTER_TOKEN
from bot.store.database import Store
from bot.store.models import PainterLink
from bot.store.painter import create_link, get_link

log = logging.getLogger(__name__)

LINK_SECONDS = 15 * 60
SECRET_FILE = "painter-secret"  # in the data directory, unless INPAINTBOT_PAINTER_SECRET is set
Clock = Callable[[], float]


class PageError(BotError):
    """A request the painter refuses: the message is the page the member sees, ``status`` its HTTP
    status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class LinkError(PageError):
    """A link that opens nothing (403: not a link of this bot's; 410: expired or used)."""


def load_secret(config: BotConfig) -> bytes:
    """The operator's secret, or one made on first use and kept (readable by the bot only) in the
    data directory, so links stay valid across restarts. Never logged."""
    if config.painter_secret is not None:
        return config.painter_secret.get_secret_value().encode()
    path = config.data_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: no process ever reads it half made,
    # and a crash leaves no empty key behind.
    draft = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(8)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs is used
            os.link(draft, path)
    finally:
        draft.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise BotError(
            f"{path} holds no key (or one shorter than {MIN_SECRET_CHARS} characters); delete it "
            "and the bot makes a new one (painter links given out so far stop working)."
        )
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users of this machine: chmod 600 it", path)
    return secret.encode()


@dataclass
class Links:
    """Issues and opens painter links; ``clock`` (seconds since the epoch) decides expiry."""

    store: Store
    secret: bytes
    public_url: str
    clock: Clock = time.time

    async def issue(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        image: bytes,
        settings: dict[str, Any],
        job_id: int | None = None,
    ) -> tuple[str, int]:
        """A new link for the member in that channel, to paint on ``image``: its URL and expiry
        (seconds since the epoch)."""
        expires = int(self.clock()) + LINK_SECONDS
        link = await create_link(
            self.store,
            link_id=secrets.token_hex(16),
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            image=image,
            settings=settings,
            expires_at=datetime.fromtimestamp(expires, UTC),
            job_id=job_id,
        )
        return f"{self.public_url.rstrip('/')}/paint/{self.token(link)}", expires

    def token(self, link: PainterLink) -> str:
        expires = int(link.expires_at.timestamp())
        return f"{link.id}.{expires}.{self._signature(link, expires)}"

    async def open(self, token: str) -> PainterLink:
        """The link's row, once its signature and expiry are checked (not whether it was used: the
        submission claims it). Raises ``LinkError`` with what the member should do."""
        match = PAINTER_TOKEN.fullmatch(token)
        link = await get_link(self.store, match["id"]) if match else None
        if match is None or link is None:
            raise LinkError(NOT_VALID, 403)
        expires = int(match["expires"])
        expected = self._signature(link, expires)
        if not hmac.compare_digest(expected, match["signature"]):
            raise LinkError(NOT_VALID, 403)
        if expires != int(link.expires_at.timestamp()):  # signed, so only a bug would get here
            raise LinkError(NOT_VALID, 403)
        if self.clock() >= expires:
            raise LinkError(EXPIRED, 410)
        return link

    def _signature(self, link: PainterLink, expires: int) -> str:
        guild = "" if link.guild_id is None else str(link.guild_id)
        message = f"v1|{link.id}|{expires}|{link.user_id}|{guild}|{link.channel_id}|{link.image_sha256}"
        digest = hmac.new(self.secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


NOT_VALID = (
    "This painter link is not valid. Open the painter again from Discord (🖌 Paint under a result, "
    "or /paint)."
)
EXPIRED = (
    f"This painter link has expired (links last {LINK_SECONDS // 60} minutes). Open the painter "
    "again from Discord."
)
USED = (
    "This painter link was used already: each link queues one job. Open the painter again from "
    "Discord to paint another."
)
