"""The painter's web server over plain HTTP, as a scripted client could use it: requests that are
wrong or hostile get a page (or text) that says why, with the security headers, and cost little.

The server runs without Discord: everything here is answered before a submission's admission."""

from __future__ import annotations

import asyncio
import html
import struct
import zlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.config import BotConfig
from bot.store.database import Store
from bot.web.app import BUSY_SELECTING, PainterServer
from bot.web.links import Links
from bot.web.pages import CSP
from tests.pictures import photo, png_bytes

WIDTH, HEIGHT = 48, 32


class SlowSelect:
    """The queue's Select: each click waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def select_object(self, image: bytes, point: tuple[float, float]) -> bytes:
        self.calls += 1
        await self.release.wait()
        return png_bytes(Image.new("L", (WIDTH, HEIGHT), 255))


class Painter:
    def __init__(self, client: TestClient, links: Links, queue: SlowSelect) -> None:
        self.client, self.links, self.queue = client, links, queue

    async def link(self, **settings: Any) -> str:
        url, _ = await self.links.issue(
            user_id=11,
            guild_id=22,
            channel_id=33,
            image=png_bytes(photo(WIDTH, HEIGHT)),
            settings=settings,
        )
        return url.removeprefix("http://painter")


@pytest.fixture
async def painter(store: Store, bot_config: BotConfig) -> AsyncIterator[Painter]:
    links = Links(store, b"k" * 32, "http://painter")
    queue = SlowSelect()
    router = cast(Any, SimpleNamespace(queue=queue))
    server = PainterServer(cast(Any, None), bot_config, store, cast(Any, None), router, links)
    async with TestClient(TestServer(server.app())) as client:
        yield Painter(client, links, queue)
    queue.release.set()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def claimed_png(width: int, height: int) -> bytes:
    """A PNG signature and a header that claims ``width`` x ``height``, then no pixels at all."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


async def post_mask(painter: Painter, path: str, mask: bytes) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("prompt", "a hat")
    form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    async with painter.client.post(path, data=form) as response:
        return response.status, await response.text()


async def test_a_mask_of_another_size_is_refused_from_its_header_before_decoding(
    painter: Painter,
) -> None:
    """6000 x 6000 fits the 40 MP limit but is not the picture's size: refused without allocating
    36 MB of pixels (this one has none to decode, so decoding would fail differently)."""
    path = await painter.link()
    status, text = await post_mask(painter, path, claimed_png(6000, 6000))
    assert status == 400
    assert f"The mask is 6000x6000 but the picture is {WIDTH}x{HEIGHT}" in text
    status, text = await post_mask(painter, path, claimed_png(WIDTH, HEIGHT))
    assert status == 400 and "is not a PNG picture" in text


async def test_an_unexpected_error_is_a_page_with_an_error_id_and_the_headers(
    painter: Painter,
) -> None:
    """A link whose stored settings no longer validate (an older version's) is a bug to log, not a
    bare 500 without the Content-Security-Policy."""
    path = await painter.link(from_an_older_version=1)
    async with painter.client.get(path) as response:
        text = html.unescape(await response.text())
    assert response.status == 500
    assert "Something went wrong on the bot's side (error id" in text
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_click_nested_too_deep_to_parse_is_refused(painter: Painter) -> None:
    path = await painter.link()
    body = "[" * 100_000 + "]" * 100_000
    headers = {"Content-Type": "application/json"}
    async with painter.client.post(f"{path}/select", data=body, headers=headers) as response:
        assert (response.status, await response.text()) == (
            400,
            "The click could not be read; try again.",
        )
    assert painter.queue.calls == 0


async def test_a_member_selects_one_thing_at_a_time(painter: Painter) -> None:
    """Each click is a model call in the thread that prepares everyone's jobs: a member's second
    click, even on another link, waits its turn instead of queueing beside the first."""
    first, second = await painter.link(), await painter.link()

    async def select(path: str) -> tuple[int, str]:
        async with painter.client.post(f"{path}/select", json={"x": 4, "y": 4}) as response:
            return response.status, await response.text() if response.status != 200 else ""

    clicked = asyncio.create_task(select(first))
    async with asyncio.timeout(10):
        while painter.queue.calls == 0:
            await asyncio.sleep(0.01)
    async with asyncio.timeout(10):
        assert await select(second) == (429, BUSY_SELECTING)
        assert await select(first) == (429, BUSY_SELECTING)
    painter.queue.release.set()
    async with asyncio.timeout(10):
        assert (await clicked)[0] == 200
        assert (await select(second))[0] == 200
    assert painter.queue.calls == 2
