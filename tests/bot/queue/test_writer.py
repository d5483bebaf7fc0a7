"""The store writer's order: queued jobs' writes as asked, new jobs' after them."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bot.queue.writer import StoreWriter


def recording(
    log: list[str], name: str, gate: asyncio.Event | None = None
) -> Callable[[], Awaitable[str]]:
    async def write() -> str:
        log.append(name)
        if gate is not None:
            await gate.wait()
        return name

    return write


async def test_new_jobs_are_written_after_the_queued_jobs_writes_each_kind_in_order() -> None:
    writer, applied, gate = StoreWriter(), [], asyncio.Event()
    running = asyncio.create_task(writer.run())
    try:
        first = writer.write(recording(applied, "new 1", gate), new_job=True)
        await asyncio.sleep(0.01)  # being applied: the writes asked for now wait for it
        results = [
            writer.write(recording(applied, "new 2"), new_job=True),
            writer.write(recording(applied, "start 1")),
            writer.write(recording(applied, "new 3"), new_job=True),
            writer.write(recording(applied, "done 1")),
        ]
        gate.set()
        await asyncio.wait_for(writer.drain(), 5)
        assert applied == ["new 1", "start 1", "done 1", "new 2", "new 3"]
        assert [await first, *[await result for result in results]] == [
            "new 1",
            "new 2",
            "start 1",
            "new 3",
            "done 1",
        ]
    finally:
        running.cancel()


async def test_a_failed_write_fails_its_future_and_the_writer_goes_on() -> None:
    writer, applied = StoreWriter(), []
    running = asyncio.create_task(writer.run())

    async def refused() -> None:
        raise OSError("disk full")

    try:
        failed = writer.write(refused)
        after = writer.write(recording(applied, "next"))
        with pytest.raises(OSError, match="disk full"):
            await failed
        assert await after == "next"
    finally:
        running.cancel()
