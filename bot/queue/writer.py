"""The queue's database writes, one at a time and in order, off the GPU's path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Write = Callable[[], Awaitable[object]]


class StoreWriter:
    """Applies database writes one at a time, in the order they were asked for.

    A job's writes (started, re-queued, started again, done) therefore land in the order they happened,
    and nobody waits for them except what must: the event that reports a stored result.
    """

    def __init__(self) -> None:
        self._pending: asyncio.Queue[tuple[Write, asyncio.Future[object]]] = asyncio.Queue()

    def write(self, operation: Write) -> asyncio.Future[object]:
        """Queue ``operation``; await the future for its result, or leave it (failures are logged)."""
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_logged)
        self._pending.put_nowait((operation, done))
        return done

    async def run(self) -> None:
        while True:
            operation, done = await self._pending.get()
            try:
                done.set_result(await operation())
            except Exception as exc:
                log.exception("database write failed")
                done.set_exception(exc)
            finally:
                self._pending.task_done()

    async def drain(self) -> None:
        await self._pending.join()


def _logged(done: asyncio.Future[object]) -> None:
    """A failure nobody awaits is logged by ``run`` already, not again as 'never retrieved'."""
    if not done.cancelled():
        done.exception()
