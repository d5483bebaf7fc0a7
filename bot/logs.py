"""What the bot writes to its log: the set-up of ``inpaintbot run`` and one line per job event.

Job lines are ``key=value`` pairs (``job=12 user=345 event=done run=18.30s …``) so an operator can grep
``docker logs`` for a job or a user. They name ids and timings only: no prompts, no pictures, no tokens.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

from bot.queue.events import CancelledEvent, DoneEvent, FailedEvent, JobEvent, QueuedEvent, StartedEvent

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"

log = logging.getLogger("bot.jobs")
# A painter link's token (``bot.web.links``): whoever holds it may queue a job as its member, so it is
# redacted wherever it shows up (discord.py logs the links it sends at DEBUG).
PAINTER_TOKEN = re.compile(
    r"(?P<id>[0-9a-f]{32})\.(?P<expires>[0-9]{1,12})\.(?P<signature>[A-Za-z0-9_-]{43})"
)


class RedactingFormatter(logging.Formatter):
    """Masks the given secrets and painter links in every line, tracebacks included: a safety net
    should any library ever log the token or a link."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(FORMAT)
        self._secrets = [secret for secret in secrets if secret]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return PAINTER_TOKEN.sub(REDACTED, text)


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Timestamped lines on stderr at ``level`` (``INPAINTBOT_LOG_LEVEL``): an operator reads a
    long-running bot's log after the fact."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}s"


class JobLog:
    """One line per job event: queued (once, not on every change of position), started, done,
    failed, cancelled. Per-step progress is left out; it would drown everything else."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._queued_at: dict[int, float] = {}

    def record(self, event: JobEvent) -> None:
        now = self._clock()
        queued_at = self._queued_at.get(event.job_id)
        waited = None if queued_at is None else now - queued_at
        prefix = f"job={event.job_id} user={event.user_id} event="
        match event:
            case QueuedEvent() if queued_at is None:
                self._queued_at[event.job_id] = now
                log.info("%squeued position=%d eta=%s", prefix, event.position, _seconds(event.eta))
            case StartedEvent():
                log.info("%sstarted waited=%s eta=%s", prefix, _seconds(waited), _seconds(event.eta))
            case DoneEvent():
                timings = "".join(f" {name}={value:.2f}s" for name, value in event.timings.items())
                log.info(
                    "%sdone run=%.2fs total=%s images=%d%s model=%s",
                    prefix,
                    event.seconds,
                    _seconds(waited),
                    len(event.images),
                    timings,
                    event.model,
                )
            case FailedEvent():
                log.warning("%sfailed total=%s reason=%r", prefix, _seconds(waited), event.message)
            case CancelledEvent():
                log.info("%scancelled total=%s", prefix, _seconds(waited))
        if isinstance(event, DoneEvent | FailedEvent | CancelledEvent):
            self._queued_at.pop(event.job_id, None)
