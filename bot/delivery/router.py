"""Routes the queue's events to each job's ``Delivery``, and admits the jobs it will show.

A job from before a restart has no delivery when its final event comes: the router makes one that posts
to the job's channel (its interaction is gone).
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.config import BotConfig
from bot.delivery.delivery import EDIT_INTERVAL, RETRY_DELAY, Delivery
from bot.logs import JobLog
from bot.queue.base import JobQueue
from bot.queue.events import CancelledEvent, DoneEvent, EventStream, FailedEvent, JobEvent, QueuedEvent
from bot.rules import Admission
from bot.store import jobs
from bot.store.database import Store
from engine.job import InpaintRequest

log = logging.getLogger(__name__)


class DeliveryRouter:
    """The live deliveries (job id → ``Delivery``) and the task that feeds them the queue's events."""

    def __init__(
        self,
        client: discord.Client,
        queue: JobQueue,
        store: Store,
        config: BotConfig,
        *,
        edit_interval: float = EDIT_INTERVAL,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.client = client
        self.queue = queue
        self.store = store
        self.config = config
        self.edit_interval = edit_interval  # seconds between progress edits of one message
        self.retry_delay = retry_delay  # seconds before a result that failed to post is posted again
        self.deliveries: dict[int, Delivery] = {}
        self._events: EventStream | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._job_log = JobLog()

    async def start(self) -> None:
        """Start the queue with its events routed here: recovered jobs report through them too."""
        self._events = self.queue.subscribe()
        await self.queue.start()
        self._dispatcher = asyncio.create_task(self._dispatch(self._events), name="queue-events")

    async def close(self) -> None:
        # Called again by a second ``close`` of the client: stop routing once.
        events, self._events = self._events, None
        if events is not None:
            self.queue.unsubscribe(events)
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            await dispatcher
        for delivery in list(self.deliveries.values()):
            await delivery.close()

    async def submit(
        self,
        admission: Admission,
        request: InpaintRequest,
        interaction: discord.Interaction | None,
        *,
        parent_id: int | None = None,
        reply_to: int | None = None,
    ) -> QueuedEvent:
        """Queue a job that ``bot.rules.Rules.admit`` admitted (no job is queued without), and show
        its progress and result through ``interaction`` (or in its channel, replying to message
        ``reply_to``)."""
        previews = interaction is not None and self.config.progress_previews  # only in a response
        submission = admission.submission(request, parent_id=parent_id, previews=previews)
        queued = await self.queue.submit(submission)
        # No await between submit and track: the job's first event must find its delivery.
        self.track(
            Delivery(
                self.client,
                self.queue,
                queued.job_id,
                submission.user_id,
                interaction,
                submission.channel_id,
                reply_to,
                store=self.store,
                edit_interval=self.edit_interval,
                retry_delay=self.retry_delay,
                paint=self.config.painter_on,
            )
        )
        return queued

    def track(self, delivery: Delivery) -> None:
        """Route the job's events to ``delivery``; call it right after ``submit`` returns, before any
        ``await``, so not even the first event goes past it."""
        self.deliveries[delivery.job_id] = delivery
        delivery.start(on_done=lambda: self.deliveries.pop(delivery.job_id, None))

    async def _dispatch(self, events: EventStream) -> None:
        async for event in events:
            try:
                await self._route(event)
            except Exception:
                log.exception("routing %s failed", event)

    async def _route(self, event: JobEvent) -> None:
        self._job_log.record(event)
        delivery = self.deliveries.get(event.job_id)
        if delivery is None and isinstance(event, DoneEvent | FailedEvent | CancelledEvent):
            # A job from before a restart: its interaction is gone, so it goes to its channel.
            row = await jobs.get_job(self.store, event.job_id)
            if row is None or row.channel_id is None:
                # Nowhere to post it, now or after another restart: do not report it again.
                log.warning("job %s finished but has no channel to report to", event.job_id)
                await self.queue.acknowledge(event.job_id)
                return
            delivery = Delivery(
                self.client,
                self.queue,
                event.job_id,
                event.user_id,
                None,
                row.channel_id,
                row.message_id,
                store=self.store,
                retry_delay=self.retry_delay,
                status_id=row.message_id,  # its status message, never replaced by a result yet
                paint=self.config.painter_on,
            )
            self.track(delivery)
        if delivery is not None:
            delivery.push(event)
