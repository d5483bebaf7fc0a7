"""Pictures in and out of Discord: uploads downloaded once, with their size and type checked first;
results under the upload limit, as fresh ``discord.File`` objects.

The full-size PNG stays in the store; only the copy shown in Discord is reduced.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import discord
from PIL import Image

from bot.errors import BotError

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
LOSSY_QUALITY = 90
DOWNSCALE_MARGIN = 0.9  # aim a little below the limit: sizes do not scale exactly with pixels
PREVIEW_FILENAME = "preview.jpg"

# Larger than any picture worth inpainting; refuses huge files before they are read into memory.
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024
PICTURE_TYPES = "PNG, JPEG, WebP, GIF, BMP or TIFF"


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


@dataclass(frozen=True)
class FittedFile:
    data: bytes
    filename: str
    spoiler: bool = False  # a server's NSFW policy hides it (``bot.guards.Screening``)

    def to_file(self) -> discord.File:
        """A fresh ``discord.File`` each time: one is consumed by the request that sends it."""
        return discord.File(io.BytesIO(self.data), self.filename, spoiler=self.spoiler)


def fit_image(png: bytes, stem: str, limit: int) -> FittedFile:
    """The PNG when it fits the upload limit, else WebP, else JPEG, else smaller until one fits."""
    if len(png) <= limit:
        return FittedFile(png, f"{stem}.png")
    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    while True:
        smallest = None
        for fmt, suffix in (("WEBP", "webp"), ("JPEG", "jpg")):
            try:
                data = _encode(image, fmt)
            except (OSError, ValueError):  # WebP refuses sides over 16383 px
                continue
            if len(data) <= limit:
                return FittedFile(data, f"{stem}.{suffix}")
            smallest = min(smallest or len(data), len(data))
        if image.width == 1 and image.height == 1:
            raise ValueError(f"the picture cannot fit in {limit} bytes")
        scale = (
            min(math.sqrt(limit / smallest) * DOWNSCALE_MARGIN, DOWNSCALE_MARGIN) if smallest else 0.5
        )
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)


def preview_file(preview: Image.Image) -> discord.File:
    """The picture as it is being painted: a small JPEG, cheap to upload every couple of seconds."""
    return discord.File(io.BytesIO(_encode(preview.convert("RGB"), "JPEG")), PREVIEW_FILENAME)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=LOSSY_QUALITY)
    return buffer.getvalue()
