"""A headless Chromium (Debian's, driven by Playwright) for a test module, in a thread of its own.

Playwright's objects belong to the event loop that made them, and each test has a loop of its own; so
the browser lives in a thread with one loop for the whole module, and a test hands it coroutines with
``await browser.run(steps(browser.browser, ...))`` while the bot keeps running in the test's loop.
"""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from playwright.async_api import Browser, Playwright, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T = TypeVar("T")


class BrowserThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="browser", daemon=True)
        self.thread.start()
        self._playwright: Playwright | None = None
        self.browser: Browser = self._call(self._launch())

    async def _launch(self) -> Browser:
        self._playwright = await async_playwright().start()
        return await self._playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run browser steps in the browser's loop; the caller's loop goes on meanwhile."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def close(self) -> None:
        async def stop() -> None:
            await self.browser.close()
            if self._playwright is not None:
                await self._playwright.stop()

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
