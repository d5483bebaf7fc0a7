"""Showing one job's life in Discord: queue position, progress, then the result.

Progress edits are coalesced (Discord's edit limits are unpublished; one per ~2 s per message is safe),
and a result that outlives the 15-minute interaction token goes to the channel as a reply instead.
Every message that shows a job is recorded in the database, so its buttons and 🔁 reactions find the
job after a restart.

A result is acknowledged to the queue once shown, or once Discord refuses it for good (the channel is
gone, the bot may not post there). One that fails for a passing reason (Discord's 5xx, a lost
connection) is posted again a few times, further and further apart; if Discord is still down then, it
is posted again after the next restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp
import discord

from bot.delivery.render import post_result, result_message, status_text
from bot.queue.base import JobQueue
from bot.queue.events import (
    CancelledEvent,
    DoneEvent,
    FailedEvent,
    JobEvent,
    ProgressEvent,
    QueuedEvent,
    StartedEvent,
)
from bot.store import jobs
from bot.store.database import Store
from bot.ui.buttons import status_view
from bot.uploads import DEFAULT_UPLOAD_LIMIT, FittedFile, preview_file

log = logging.getLogger(__name__)

EDIT_INTERVAL = 2.0
RETRY_DELAY = 5.0  # seconds before posting an outcome again; each further wait is four times longer
RETRIES = 3  # 5, 20 and 80 s: a short outage passes, a long one is left for the next restart


class UndeliverableError(Exception):
    """The job has no channel that takes messages: posting again later cannot help."""


def is_permanent(error: Exception) -> bool:
    """Whether a failed post would fail the same way after a restart: Discord's 4xx (403 Missing
    Permissions, 404 Unknown Channel, ...) but not 429, which discord.py retries itself."""
    if isinstance(error, UndeliverableError):
        return True
    return isinstance(error, discord.HTTPException) and 400 <= error.status < 500 and error.status != 429


def is_passing(error: Exception) -> bool:
    """Whether a failed post may well pass if tried again soon: Discord's 5xx that discord.py does not
    retry itself (503), a dropped connection, a timeout."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500
    return isinstance(error, OSError | aiohttp.ClientError | TimeoutError)


class Delivery:
    """One job's messages. Events are pushed in order; a task of its own turns them into edits, so a
    slow Discord call never holds up other jobs' events.

    ``interaction`` is ``None`` for a job recovered after a restart or started by a reaction: its result
    goes to ``channel_id``, as a reply to ``message_id`` when there is one.
    """

    def __init__(
        self,
        client: discord.Client,
        queue: JobQueue,
        job_id: int,
        user_id: int,
        interaction: discord.Interaction | None,
        channel_id: int | None,
        message_id: int | None = None,
        *,
        store: Store,
        edit_interval: float = EDIT_INTERVAL,
        retry_delay: float = RETRY_DELAY,
        status_id: int | None = None,
        paint: bool = False,
    ) -> None:
        self.client = client
        self.queue = queue
        self.store = store
        self.job_id = job_id
        self.user_id = user_id
        self.interaction = interaction
        self.channel_id = channel_id
        self.message_id = message_id
        self.status_id = status_id  # the job's own status message, once there is one
        self.paint = paint  # the painter is on: the result gets its 🖌 button
        self.edit_interval = edit_interval
        self.retry_delay = retry_delay
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._finishing = False
        self._closing = asyncio.Event()  # ends a wait to post again: the next start posts it
        self._recording: asyncio.Task[None] | None = None  # the newest status message's record

    def push(self, event: JobEvent) -> None:
        self._events.put_nowait(event)

    def start(self, on_done: Callable[[], object]) -> None:
        self._task = asyncio.create_task(self._run(), name=f"delivery-{self.job_id}")
        self._task.add_done_callback(lambda _: on_done())

    async def close(self) -> None:
        """Stop showing progress. A result already being posted is let through to its
        acknowledgement: cancelled in between, it would be posted again after a restart. One waiting
        to be posted again is left for the next start."""
        if self._task is None:
            return
        self._closing.set()
        if not self._finishing:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._recorded()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_edit = loop.time()
        status: QueuedEvent | StartedEvent | ProgressEvent | None = None
        while True:
            if status is not None and loop.time() >= next_edit:  # an update is due: shown first
                await self._show_status(status)
                status, next_edit = None, loop.time() + self.edit_interval
            timeout = None if status is None else next_edit - loop.time()
            try:
                # Not ``wait_for``: on Python 3.11 it can swallow ``close``'s cancel when an event
                # arrives at the same moment, and the delivery then waits for events forever.
                async with asyncio.timeout(timeout):
                    event = await self._events.get()
            except TimeoutError:
                continue
            if isinstance(event, QueuedEvent | StartedEvent | ProgressEvent):
                status = event  # replaces an update not shown yet: only the newest matters
                continue
            self._finishing = True
            try:
                await self._finish(event)
            except Exception:
                log.exception("delivering the result of job %s failed", self.job_id)
            return

    async def _show_status(self, event: QueuedEvent | StartedEvent | ProgressEvent) -> None:
        if self.interaction is None or self.interaction.is_expired():
            return
        extra: dict[str, Any] = {}
        if isinstance(event, ProgressEvent) and event.preview is not None:
            extra["attachments"] = [await asyncio.to_thread(preview_file, event.preview)]
        try:
            message = await self.interaction.edit_original_response(
                content=status_text(event), view=status_view(self.job_id), **extra
            )
        except discord.HTTPException as exc:
            log.info("progress edit of job %s refused: %s", self.job_id, exc)
            return
        if message.id != self.message_id:
            self.message_id = self.status_id = message.id
            self._record(partial(jobs.set_job_message, self.store, self.job_id, message_id=message.id))

    def _record(self, write: Callable[[], Awaitable[None]]) -> None:
        """Record a status message in the background, after the ones recorded before it: a database
        busy with a burst of submissions must not hold up this job's next events (its result)."""
        previous = self._recording

        async def record() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await write()
            except Exception:
                log.exception("recording the status message of job %s failed", self.job_id)

        self._recording = asyncio.create_task(record(), name=f"record-{self.job_id}")

    async def _recorded(self) -> None:
        """Wait for the status messages' records: the final message's record must come after them."""
        if self._recording is not None:
            await asyncio.gather(self._recording, return_exceptions=True)

    async def _finish(self, event: JobEvent) -> None:
        """Post the outcome, then acknowledge it. A passing failure (``is_passing``) is tried again
        ``RETRIES`` times with growing waits, then left unacknowledged: it is reported again after a
        restart. One Discord refuses for good (``is_permanent``) is dropped, and its owner told."""
        delays = [self.retry_delay * 4**retry for retry in range(RETRIES)]
        for delay in [*delays, None]:
            try:
                await self._post(event)
                break
            except Exception as exc:
                if is_permanent(exc):
                    log.warning(
                        "job %s: its outcome cannot be posted in channel %s, so it is dropped: %s",
                        self.job_id,
                        self.channel_id,
                        exc,
                    )
                    await self._tell_owner(event)
                    break
                if delay is None or not is_passing(exc):
                    raise
                log.info("posting job %s failed (%s); trying again in %g s", self.job_id, exc, delay)
                if not await self._still_open_after(delay):
                    raise
        await self.queue.acknowledge(self.job_id)

    async def _still_open_after(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the bot closes in the meantime."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _tell_owner(self, event: JobEvent) -> None:
        """By direct message (if they accept them): otherwise they would never hear of the job."""
        where = f"<#{self.channel_id}>" if self.channel_id is not None else "its channel"
        text = (
            f"I could not post the outcome of job {self.job_id} in {where}: I may not send messages "
            "or attach files there, or the channel is gone."
        )
        if isinstance(event, DoneEvent):
            text += f" Use `/show job:{self.job_id}` in another channel of that server to see it."
        elif isinstance(event, FailedEvent):
            text += f" It failed: {event.message}"
        elif isinstance(event, CancelledEvent):
            text += " It was cancelled."
        try:
            channel = await self.client.create_dm(discord.Object(self.user_id))
            await channel.send(text)
        except discord.HTTPException as exc:
            log.info("could not tell user %s about job %s: %s", self.user_id, self.job_id, exc)

    async def _post(self, event: JobEvent) -> None:
        mention = f"<@{self.user_id}>"
        if isinstance(event, DoneEvent):
            limit = self.interaction.filesize_limit if self.interaction else DEFAULT_UPLOAD_LIMIT
            try:
                result = await result_message(event, limit, paint=self.paint)
            except OSError as exc:  # the stored pictures are gone: no later try would find them
                log.warning("job %s: its pictures cannot be read: %s", self.job_id, exc)
                content = (
                    f"{mention} ❌ job {self.job_id} finished, but its pictures can no longer be "
                    "read on the bot's side. Run it again."
                )
                await self._remember(await self._send(content, [], None, None))
                return
            message = await post_result(
                self.store, self.job_id, result, self._where(), f"{mention} done.", self._send
            )
            self.message_id = message.id
        elif isinstance(event, FailedEvent):
            await self._remember(await self._send(f"{mention} ❌ {event.message}", [], None, None))
        elif isinstance(event, CancelledEvent):
            content = f"{mention} job {self.job_id} was cancelled."
            await self._remember(await self._send(content, [], None, None))

    async def _send(
        self,
        content: str,
        files: list[FittedFile],
        embed: discord.Embed | None,
        view: discord.ui.View | None,
    ) -> discord.Message:
        """Edit the original response; when its token is dead, reply in the channel instead, and end
        the status message there (it would show its last step and ✖ Cancel forever).
        ``view=None`` removes the status message's ✖ Cancel button. Returns once the status messages
        are recorded (see ``_record``), so the caller's record of this message comes after them."""
        embeds = [embed] if embed else []
        if self.interaction is not None and not self.interaction.is_expired():
            try:
                edited = await self.interaction.edit_original_response(
                    content=content, attachments=[f.to_file() for f in files], embeds=embeds, view=view
                )
            except discord.HTTPException as exc:
                log.info("result of job %s goes to the channel: %s", self.job_id, exc)
            else:
                await self._recorded()
                return edited
        channel = await self._channel()
        extra: dict[str, Any] = {}
        if self.message_id is not None and self.channel_id is not None:
            extra["reference"] = discord.MessageReference(
                message_id=self.message_id, channel_id=self.channel_id, fail_if_not_exists=False
            )
        if view is not None:
            extra["view"] = view
        message = await channel.send(content, files=[f.to_file() for f in files], embeds=embeds, **extra)
        await self._end_status(message.id)
        await self._recorded()
        return message

    async def _end_status(self, result_id: int) -> None:
        if self.status_id is None or self.status_id == result_id or self.channel_id is None:
            return
        status = self.client.get_partial_messageable(self.channel_id).get_partial_message(self.status_id)
        try:
            await status.edit(content=f"Job {self.job_id} has finished: see the reply below.", view=None)
        except discord.HTTPException as exc:
            log.info("could not end the status message of job %s: %s", self.job_id, exc)

    async def _remember(self, message: discord.Message) -> None:
        """The job's final message, so its buttons and reactions lead back to it."""
        self.message_id = message.id
        await jobs.set_job_message(
            self.store, self.job_id, message_id=message.id, channel_id=message.channel.id
        )

    def _where(self) -> object:
        """The channel the result goes to, as far as it is known without asking Discord."""
        if self.interaction is not None:
            return self.interaction.channel
        return self.client.get_channel(self.channel_id) if self.channel_id is not None else None

    async def _channel(self) -> discord.abc.Messageable:
        channel_id = self.channel_id
        if channel_id is None:
            raise UndeliverableError(f"job {self.job_id} has no channel to deliver to")
        channel = self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise UndeliverableError(f"channel {channel_id} of job {self.job_id} takes no messages")
        return channel
