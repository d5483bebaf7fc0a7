"""The one thread the engine computes in, and the watchdog over it.

Torch computes in this thread only (a second thread with its own OpenMP team makes CPU inference several
times slower). A run past its time limit is asked to stop; one that has not returned ``grace`` seconds
later hangs (in a driver, a download, a deadlock). A stuck Python thread cannot be killed, so the queue
stops running jobs and says why (``stuck``, read by the health check) until the thread comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class GpuStuck(Exception):
    """A run did not stop within its time limit and the watchdog's grace."""

    def __init__(self, run: asyncio.Future[Any], seconds: float) -> None:
        super().__init__(f"the GPU thread did not return within {seconds:g} s")
        self.run = run
        self.seconds = seconds


class GpuThread:
    """The GPU thread: plain calls, watched runs, and whether it hangs."""

    def __init__(self, grace: float) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inpaint-gpu")
        self._grace = grace
        self.stuck: str | None = None  # why no job can run, while the thread hangs

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the thread, unwatched (loading at start-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[[], T], limit: float, stop: Callable[[], None]) -> T:
        """``fn()`` in the thread; past ``limit`` seconds ``stop()`` asks it to stop, and ``GpuStuck``
        is raised when it has not returned ``grace`` seconds later."""
        running = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        if not await _ends_within(running, limit):
            stop()
            if not await _ends_within(running, self._grace):
                raise GpuStuck(running, limit + self._grace)
        try:
            return running.result()
        finally:
            del running  # its failure's traceback holds this frame: no cycle that only gc could free

    async def wait_until_back(self, stuck: GpuStuck, closing: Callable[[], bool]) -> None:
        """Say the thread hangs until the stuck run returns, which may be never. Jobs stay queued in
        the database meanwhile, and the health check turns unhealthy so the bot can be restarted."""
        self.stuck = f"the GPU has been busy on one job for over {stuck.seconds:g} seconds"
        log.error("%s: it hangs; no job runs until it comes back", self.stuck)
        if not closing():
            with contextlib.suppress(Exception):
                await stuck.run  # what a run that ends this late made is not used
            self.stuck = None
            log.warning("the GPU is back; the queue goes on")

    def shutdown(self) -> None:
        self._executor.shutdown(wait=self.stuck is None)  # a hung thread cannot be stopped


async def _ends_within(future: asyncio.Future[Any], seconds: float) -> bool:
    """Whether ``future`` is done within ``seconds``; keeps no reference to it (see ``run``)."""
    await asyncio.wait({future}, timeout=seconds)
    return future.done()
