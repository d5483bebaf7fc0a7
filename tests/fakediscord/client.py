"""Running a real discord.py client against the fake for the length of a `with` block."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import discord

from .server import FakeDiscord


@asynccontextmanager
async def run_client(
    fake: FakeDiscord, client: discord.Client, *, timeout: float = 10.0
) -> AsyncIterator[None]:
    """Logs `client` in to `fake`, enters once it is ready, and closes it on exit.

    Build the client with a small `guild_ready_timeout` (e.g. 0.05): discord.py waits that long
    after the last GUILD_CREATE before it is ready (default 2 s). Closing does not wait for the
    bot's running handlers, so wait for their last request (`fake.wait_for`) before leaving the
    block. A crash of the client's connection is re-raised on exit.
    """
    connection: asyncio.Task[None] | None = None
    ready: asyncio.Task[None] | None = None
    try:
        await client.login(fake.token)
        connection = asyncio.create_task(client.connect(reconnect=False))
        ready = asyncio.create_task(client.wait_until_ready())
        await asyncio.wait({connection, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            raise TimeoutError(f"the client was not ready within {timeout}s")
        yield
    finally:
        if ready is not None:
            ready.cancel()
        await client.close()
        if connection is not None:
            await connection
