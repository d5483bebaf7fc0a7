"""What the bot reads from Redis, as a broken or hostile worker (or anyone who can write to Redis)
could send it: every bad message is a ``BadReport`` with a reason, never another exception, and no
picture is decoded past its header unless it is known to be small."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image
from redis.asyncio import Redis

from bot.queue import streams
from bot.queue.streams import BadReport, Flight, Keys, WorkerInfo
from engine.job import InpaintResult
from tests.bot.queue.fakes import FakeEngine, FakePrepared, request, tiny_png


def decode(fields: dict[bytes, bytes], images: int = 1) -> tuple[InpaintResult, list[bool | None]]:
    """At most a megapixel a picture, a megabyte in all."""
    return streams.decode_result(fields, images=images, max_pixels=1_000_000, max_bytes=1e6)


def done_fields(count: int = 1) -> dict[bytes, bytes]:
    settings = request("x", count=count).settings.with_seed()
    [result] = FakeEngine().run([FakePrepared(settings)])
    return streams.done_message("a1", result, [False] * count)


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG signature and header that claims ``width`` x ``height``: a few dozen bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + ihdr + tiny_png()[33:]


def test_a_good_result_is_read_back() -> None:
    result, nsfw = decode(done_fields(2), images=2)
    assert isinstance(result, InpaintResult) and len(result.images) == 2
    assert result.images[0].image.size == (8, 8) and nsfw == [False, False]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({b"png0": b"%!PS-Adobe-3.0 EPSF-3.0\n"}, "not a PNG"),  # Pillow would hand EPS to Ghostscript
        ({b"png0": b"GIF89a" + tiny_png()[6:]}, "not a PNG"),
        ({b"png0": huge_png(50_000, 50_000)}, "picture larger than this bot takes"),
        ({b"png0": huge_png(2_000, 1_000)}, "2000x1000 picture"),
        ({b"png0": b"\x89PNG" + b"\0" * 2_000_000}, "larger than this bot takes (1 MB)"),
        ({b"meta": b"not json"}, "cannot read"),
        ({b"meta": b"[]"}, "cannot read"),
        ({b"meta": b'{"seeds": [1]}'}, "cannot read"),
    ],
)
def test_a_bad_result_is_a_bad_report_with_its_reason(change: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(BadReport, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode({**done_fields(), **change})


def test_a_result_with_another_number_of_pictures_is_refused() -> None:
    with pytest.raises(BadReport, match="sent 2 pictures for a job of 1"):
        decode(done_fields(2))
    fields = done_fields(2)
    del fields[b"png1"]
    with pytest.raises(BadReport, match="cannot read"):
        decode(fields, images=2)


@pytest.mark.parametrize("field", ["seconds", "settings", "mask_source", "timings"])
def test_a_result_with_a_bad_field_is_refused(field: str) -> None:
    fields = done_fields()
    meta = json.loads(fields[b"meta"])
    meta[field] = {"seconds": -1, "settings": {"steps": 0}, "mask_source": "x", "timings": 3}[field]
    with pytest.raises(BadReport, match="cannot read"):
        decode({**fields, b"meta": json.dumps(meta).encode()})


def test_progress_is_read_and_a_bad_one_is_a_bad_report() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 2)).save(buffer, "PNG")
    good = streams.progress_message("a1", 2, 4, None) | {b"preview": buffer.getvalue()}
    step, total, preview = streams.decode_progress(good, previews=True)
    assert (step, total) == (2, 4) and preview is not None and preview.size == (4, 2)
    assert streams.decode_progress(good, previews=False)[2] is None
    for bad in (
        {b"step": b"two"},
        {b"total": b""},
        {b"step": b"5"},
        {b"step": b"-1"},
        {b"preview": b"not a png"},
        {b"preview": huge_png(5_000, 5_000)},
        {b"preview": tiny_png()[:40]},  # cut short: the header reads, the pixels do not
    ):
        with pytest.raises(BadReport):
            streams.decode_progress(good | bad, previews=True)


def test_a_failure_reason_is_text_of_a_readable_length() -> None:
    assert streams.decode_failure({b"message": b"Out of memory"}) == "Out of memory"
    assert streams.decode_failure({}) == streams.WORKER_FAILED
    assert streams.decode_failure({b"message": b"\xff\xfe bad"}) == "\ufffd\ufffd bad"
    long = streams.decode_failure({b"message": b"x" * 1_000_000})
    assert len(long) == streams.MAX_FAILURE_CHARS and long.endswith("…")


def test_unreadable_in_flight_records_are_left_out() -> None:
    flight = Flight(7, "gpu-1", "1-0", "a1", 0.0)
    read = streams.decode_flights({b"7": flight.encode(), b"8": b"garbage", b"x": flight.encode()})
    assert read == {7: flight}


async def test_an_unreadable_announcement_hides_only_its_worker(redis_url: str) -> None:
    keys = Keys("t")
    redis = Redis.from_url(redis_url)
    try:
        await redis.set(keys.worker("good"), WorkerInfo("good", 1, 0, (), "v", 0.0).encode())
        await redis.set(keys.worker("bad"), b'{"name": "bad"}')
        await redis.sadd(keys.workers, "good", "bad")
        workers = await streams.connected_workers(redis, keys)
    finally:
        await redis.aclose()
    assert [info.name for info in workers] == ["good"]


class ReadBeforeAnnouncing:
    """A Redis client whose MGET answers as if it ran just before the workers announced themselves
    again: the race between reading the announcements and forgetting the missing ones."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def __getattr__(self, name: str) -> object:
        return getattr(self.redis, name)

    async def mget(self, names: list[str]) -> list[None]:
        return [None for _ in names]


async def test_a_worker_that_announces_again_meanwhile_stays_connected(redis_url: str) -> None:
    keys = Keys("race")
    redis = Redis.from_url(redis_url)
    try:
        await redis.set(keys.worker("back"), WorkerInfo("back", 1, 0, (), "v", 0.0).encode())
        await redis.sadd(keys.workers, "back", "gone")  # "gone" has no announcement: it really is gone
        assert await streams.connected_workers(ReadBeforeAnnouncing(redis), keys) == []  # type: ignore[arg-type]
        assert await redis.smembers(keys.workers) == {b"back"}
        assert [info.name for info in await streams.connected_workers(redis, keys)] == ["back"]
    finally:
        await redis.aclose()
