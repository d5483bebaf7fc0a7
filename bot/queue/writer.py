"""The queue's database writes, one at a time and in order, off the GPU's path."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")
Write = Callable[[], Awaitable[R]]

_QUEUED_JOBS, _NEW_JOBS = 0, 1  # which writes go first


class StoreWriter:
    """Applies database writes one at a time: the writes of queued jobs in the order they were asked
    for, then new jobs (submissions), in theirs.

    A job's writes (started, re-queued, started again, done) therefore land in the order they happened,
    and nobody waits for them except what must: the event that reports a stored result. Its creation
    comes first too: it is done before the job is queued, so before any other write of it is asked for.
    New jobs yield to the others because a burst of submissions (each a picture written to disk and a
    commit) would otherwise hold up the results of the jobs already running, every one of them waiting
    for the whole burst.
    """

    def __init__(self) -> None:
        self._pending: asyncio.PriorityQueue[tuple[int, int, Write[Any], asyncio.Future[Any]]] = (
            asyncio.PriorityQueue()
        )
        self._order = itertools.count()  # first asked, first applied, within each kind

    def write(self, operation: Write[R], *, new_job: bool = False) -> asyncio.Future[R]:
        """Queue ``operation`` (``new_job``: a submission's, after the queued jobs' writes); await the
        future for its result, or leave it (failures are logged)."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_logged)
        kind = _NEW_JOBS if new_job else _QUEUED_JOBS
        self._pending.put_nowait((kind, next(self._order), operation, done))
        return done

    async def run(self) -> None:
        while True:
            _, _, operation, done = await self._pending.get()
            try:
                done.set_result(await operation())
            except Exception as exc:
                log.exception("database write failed")
                done.set_exception(exc)
            finally:
                self._pending.task_done()

    async def drain(self) -> None:
        await self._pending.join()


def _logged(done: asyncio.Future[Any]) -> None:
    """A failure nobody awaits is logged by ``run`` already, not again as 'never retrieved'."""
    if not done.cancelled():
        done.exception()
