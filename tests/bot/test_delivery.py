"""Fitting results to Discord's upload limit, and a delivery's shutdown."""

import asyncio
import io
from types import SimpleNamespace
from typing import cast

import discord
import pytest
from PIL import Image

from bot.delivery import DEFAULT_UPLOAD_LIMIT, Delivery, fit_image
from bot.queue.base import FailedEvent, JobQueue
from bot.store.database import Store
from tests.pictures import photo, png_bytes


def test_a_png_that_fits_is_sent_as_is() -> None:
    png = png_bytes(photo(64, 48))
    fitted = fit_image(png, "out", len(png))
    assert (fitted.data, fitted.filename) == (png, "out.png")


def test_a_large_png_becomes_webp_at_full_size() -> None:
    png = png_bytes(photo(256, 192))
    fitted = fit_image(png, "out", len(png) // 3)
    assert fitted.filename == "out.webp" and len(fitted.data) <= len(png) // 3
    assert Image.open(io.BytesIO(fitted.data)).size == (256, 192)


def test_when_no_format_fits_the_picture_is_downscaled() -> None:
    png = png_bytes(photo(256, 192))
    fitted = fit_image(png, "out", 1500)
    width, height = Image.open(io.BytesIO(fitted.data)).size
    assert len(fitted.data) <= 1500 and width < 256 and abs(width / height - 256 / 192) < 0.1


def test_an_impossible_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fit in 10 bytes"):
        fit_image(png_bytes(photo(32, 32)), "out", 10)


class SlowInteraction:
    """An interaction whose result edit waits until the test lets it through."""

    filesize_limit = DEFAULT_UPLOAD_LIMIT

    def __init__(self) -> None:
        self.editing = asyncio.Event()
        self.release = asyncio.Event()

    def is_expired(self) -> bool:
        return False

    async def edit_original_response(self, **fields: object) -> SimpleNamespace:
        self.editing.set()
        await self.release.wait()
        return SimpleNamespace(id=77, channel=SimpleNamespace(id=5))


class RecordingQueue:
    def __init__(self) -> None:
        self.acknowledged: list[int] = []

    async def acknowledge(self, job_id: int) -> None:
        self.acknowledged.append(job_id)


async def test_closing_lets_a_result_being_posted_reach_its_acknowledgement(store: Store) -> None:
    """Cancelled between posting and acknowledging, the result would be posted again after a restart."""
    interaction, queue = SlowInteraction(), RecordingQueue()
    delivery = Delivery(
        cast(discord.Client, None),
        cast(JobQueue, queue),
        job_id=3,
        user_id=1,
        interaction=cast(discord.Interaction, interaction),
        channel_id=5,
        store=store,
    )
    delivery.start(on_done=lambda: None)
    delivery.push(FailedEvent(job_id=3, user_id=1, message="The mask is empty."))
    await interaction.editing.wait()
    closing = asyncio.create_task(delivery.close())
    interaction.release.set()
    await closing
    assert queue.acknowledged == [3]
    assert delivery.message_id == 77
