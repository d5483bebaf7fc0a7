"""What the bot and its GPU workers say to each other through Redis: key names and message formats.

Keys, under the prefix (``INPAINTBOT_REDIS_PREFIX``):

- ``workers``: the set of worker names; ``worker:NAME``: one's announcement (``WorkerInfo``), with a TTL
  of three heartbeats, so a worker that stops is gone from it by itself.
- ``jobs:NAME``: the stream of jobs the bot gave to worker NAME, read by the consumer group ``workers``.
  Its pending-entries list holds what the worker took; the worker renews its claim while it runs
  (``XCLAIM ... JUSTID``) and the bot takes back entries idle past the lease (``XAUTOCLAIM``).
- ``job:ID:input``: the job's input pictures (a hash with a TTL); ``job:ID:events``: what the worker
  reports (progress, then the outcome), each message with the attempt id of its delivery;
  ``job:ID:cancel:ATTEMPT``: set when the attempt must stop.
- ``inflight``: job id -> the delivery the bot is waiting for (``Flight``), so a restarted bot
  adopts the jobs still running on workers; ``wake``: a one-entry stream the bot writes to end its own
  blocking read of the jobs' event streams when it sends a job out.

Nothing here outlives a job: the bot deletes a job's keys once its outcome is stored.
"""

from __future__ import annotations

import io
import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError
from redis.asyncio import Redis

from engine.job import GeneratedImage, InpaintResult, MaskSource
from engine.settings import InpaintSettings

log = logging.getLogger(__name__)

GROUP = "workers"  # the consumer group on each worker's job stream
RECLAIMER = "bot"  # the consumer the bot claims abandoned entries as
EVENTS_MAXLEN = 100  # progress messages kept per job (approximately; the outcome is last)
Fields = dict[bytes, bytes]
# Longest blocking read: well under redis-py's socket timeout (5 s by default), which would otherwise
# end a read that is only waiting as if the connection were lost.
MAX_BLOCK = 1.0


def block_ms(heartbeat: float) -> int:
    """How long a blocking read waits: a heartbeat, at most ``MAX_BLOCK``."""
    return max(int(min(heartbeat, MAX_BLOCK) * 1000), 1)


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.workers = f"{prefix}:workers"
        self.inflight = f"{prefix}:inflight"
        self.wake = f"{prefix}:wake"  # the bot's own: ends its blocking read when a job goes out

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    def jobs(self, worker: str) -> str:
        return f"{self.prefix}:jobs:{worker}"

    def input(self, job_id: int) -> str:
        return f"{self.prefix}:job:{job_id}:input"

    def events(self, job_id: int) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def cancel(self, job_id: int, attempt: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel:{attempt}"


def masked_url(url: str) -> str:
    """The URL with its password replaced, for logs and ``inpaintbot check``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's announcement: its capacity (no slot while its GPU thread hangs) and the models it
    has loaded, most recent last."""

    name: str
    slots: int
    busy: int
    models: tuple[str, ...]
    version: str
    seen: float  # the worker's clock at the announcement

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> WorkerInfo:
        raw = json.loads(data)
        return cls(
            name=str(raw["name"]),
            slots=int(raw["slots"]),
            busy=int(raw["busy"]),
            models=tuple(str(model) for model in raw["models"]),
            version=str(raw["version"]),
            seen=float(raw["seen"]),
        )


# Takes a name out of the set only if its announcement is still missing, in one step on the server: a
# worker that announced itself again after the read above stays (KEYS: the set, then the announcements;
# ARGV: the names, in the same order).
_FORGET_GONE = """
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i - 1]) end
end
"""


async def connected_workers(redis: Redis, keys: Keys) -> list[WorkerInfo]:
    """The workers announced now, by name; names whose announcement expired leave the set."""
    members: Any = await redis.smembers(keys.workers)
    names = sorted(name.decode(errors="replace") for name in members)
    found: Any = await redis.mget([keys.worker(name) for name in names]) if names else []
    gone = [name for name, data in zip(names, found, strict=True) if data is None]
    if gone:
        announcements = [keys.worker(name) for name in gone]
        await redis.eval(_FORGET_GONE, 1 + len(gone), keys.workers, *announcements, *gone)
    workers = []
    for name, data in zip(names, found, strict=True):
        if data is None:
            continue
        try:
            workers.append(WorkerInfo.decode(data))
        except (ValueError, KeyError, TypeError):  # one unreadable announcement hides only its worker
            log.warning("the announcement of worker %r cannot be read; it gets no jobs", name)
    return workers


@dataclass(frozen=True)
class Flight:
    """One delivery of a job to a worker: which stream entry, and its attempt id."""

    job_id: int
    worker: str
    entry: str
    attempt: str
    dispatched: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> Flight:
        raw = json.loads(data)
        return cls(
            job_id=int(raw["job_id"]),
            worker=str(raw["worker"]),
            entry=str(raw["entry"]),
            attempt=str(raw["attempt"]),
            dispatched=float(raw["dispatched"]),
        )


def decode_flights(inflight: dict[bytes, bytes]) -> dict[int, Flight]:
    """The ``inflight`` hash by job id; a record that cannot be read is left out (its job, if live,
    is queued again), so it cannot stop the bot from starting."""
    flights = {}
    for job_id, data in inflight.items():
        try:
            flights[int(job_id)] = Flight.decode(data)
        except (ValueError, KeyError, TypeError):
            log.warning("an in-flight record in Redis cannot be read; its job, if live, runs again")
    return flights


@dataclass(frozen=True)
class Delivery:
    """A job entry as the worker reads it from its stream."""

    job_id: int
    attempt: str
    settings: InpaintSettings
    previews: bool

    def encode(self) -> Fields:
        return {
            b"job": str(self.job_id).encode(),
            b"attempt": self.attempt.encode(),
            b"settings": self.settings.model_dump_json().encode(),
            b"previews": b"1" if self.previews else b"0",
        }

    @classmethod
    def decode(cls, fields: Fields) -> Delivery:
        return cls(
            job_id=int(fields[b"job"]),
            attempt=fields[b"attempt"].decode(),
            settings=InpaintSettings.model_validate_json(fields[b"settings"]),
            previews=fields.get(b"previews") == b"1",
        )


# The kinds of message a worker writes to a job's event stream.
PROGRESS, DONE, FAILED, CANCELLED = b"progress", b"done", b"failed", b"cancelled"


def progress_message(attempt: str, step: int, total: int, preview: Image.Image | None) -> Fields:
    return {
        b"kind": PROGRESS,
        b"attempt": attempt.encode(),
        b"step": str(step).encode(),
        b"total": str(total).encode(),
        b"preview": _png(preview) if preview is not None else b"",
    }


def failed_message(attempt: str, message: str) -> Fields:
    return {b"kind": FAILED, b"attempt": attempt.encode(), b"message": message.encode()}


def cancelled_message(attempt: str) -> Fields:
    return {b"kind": CANCELLED, b"attempt": attempt.encode()}


def done_message(attempt: str, result: InpaintResult, nsfw: list[bool | None]) -> Fields:
    """The result with its PNGs (encoded once, here, with their parameters) and the safety verdicts."""
    meta = {
        "seeds": [output.seed for output in result.images],
        "parameters": [output.parameters for output in result.images],
        "settings": result.settings.model_dump(mode="json"),
        "mask_source": result.mask_source.value,
        "model": result.model,
        "seconds": result.seconds,
        "timings": result.timings,
        "nsfw": nsfw,
    }
    fields = {b"kind": DONE, b"attempt": attempt.encode(), b"meta": json.dumps(meta).encode()}
    for index, output in enumerate(result.images):
        fields[f"png{index}".encode()] = output.png
    return fields


def message_size(fields: Fields) -> int:
    return sum(len(key) + len(value) for key, value in fields.items())


class BadReport(ValueError):
    """A worker's message the bot cannot take (a worker of another version, a bug, or anyone who can
    write to Redis): the message says what was wrong, for the job's owner."""


UNREADABLE_RESULT = "The GPU worker sent a result the bot cannot read, so the job failed."
WORKER_FAILED = "The job failed on a GPU worker."
MAX_FAILURE_CHARS = 1000  # a worker's reason for a failure, as shown to the member
MAX_PREVIEW_PIXELS = 1024 * 1024  # the engine's previews are 256 px on their long side


def decode_result(
    fields: Fields, *, images: int, max_pixels: int, max_bytes: float
) -> tuple[InpaintResult, list[bool | None]]:
    """A done message back into what the store takes; the PNGs are kept as they came (not encoded
    again), and the pictures are opened lazily, header only. Raises ``BadReport`` unless it holds
    exactly ``images`` PNGs of at most ``max_pixels`` each and ``max_bytes`` in all."""
    try:
        meta: dict[str, Any] = json.loads(fields[b"meta"])
        seeds, parameters, nsfw = list(meta["seeds"]), list(meta["parameters"]), list(meta["nsfw"])
        if not len(seeds) == len(parameters) == len(nsfw) == images:
            raise BadReport(
                f"The GPU worker sent {len(seeds)} pictures for a job of {images}, so the job failed."
            )
        pngs = [fields[f"png{index}".encode()] for index in range(images)]
        if sum(map(len, pngs)) > max_bytes:
            raise BadReport(
                f"The GPU worker sent pictures larger than this bot takes ({max_bytes / 1e6:g} MB), "
                "so the job failed."
            )
        outputs = []
        for png, seed, parameter in zip(pngs, seeds, parameters, strict=True):
            output = GeneratedImage(_open_png(png, max_pixels), int(seed), str(parameter))
            output.__dict__["png"] = png  # ``png`` is a cached property: this is its value
            outputs.append(output)
        seconds = float(meta["seconds"])
        timings = {str(key): float(value) for key, value in meta["timings"].items()}
        if not all(math.isfinite(value) and value >= 0 for value in (seconds, *timings.values())):
            raise BadReport(UNREADABLE_RESULT)
        result = InpaintResult(
            images=outputs,
            settings=InpaintSettings.model_validate(meta["settings"]),
            mask_source=MaskSource(meta["mask_source"]),
            model=str(meta["model"]),
            seconds=seconds,
            timings=timings,
        )
    except BadReport:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as exc:
        raise BadReport(UNREADABLE_RESULT) from exc
    return result, [None if flag is None else bool(flag) for flag in nsfw]


def decode_progress(fields: Fields, *, previews: bool) -> tuple[int, int, Image.Image | None]:
    """A progress message's step, total and (``previews``) preview; ``BadReport`` when unreadable."""
    try:
        step, total = int(fields[b"step"]), int(fields[b"total"])
        data = fields.get(b"preview") if previews else None
        preview = _open_png(data, MAX_PREVIEW_PIXELS) if data else None
        if preview is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                preview.load()
    except (KeyError, ValueError, OSError, SyntaxError, EOFError, Warning) as exc:
        raise BadReport("unreadable progress") from exc
    if not 0 <= step <= total:
        raise BadReport(f"step {step} of {total}")
    return step, total, preview


def decode_failure(fields: Fields) -> str:
    """A failed message's reason, as the member will read it: text, and not a page of it."""
    message = fields.get(b"message", b"").decode(errors="replace").strip()
    if len(message) > MAX_FAILURE_CHARS:
        message = message[: MAX_FAILURE_CHARS - 1] + "…"
    return message or WORKER_FAILED


def _open_png(data: bytes, max_pixels: int) -> Image.Image:
    """A PNG from a worker, header only, once its size is known to be at most ``max_pixels``: no other
    format (no other decoder runs on what Redis holds), no decompression bomb."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = Image.open(io.BytesIO(data), formats=["PNG"])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            picture = None
        except (UnidentifiedImageError, OSError) as exc:
            raise BadReport(
                "The GPU worker sent a picture that is not a PNG, so the job failed."
            ) from exc
    if picture is None or picture.width * picture.height > max_pixels:
        size = "" if picture is None else f"{picture.width}x{picture.height} "
        raise BadReport(
            f"The GPU worker sent a {size}picture larger than this bot takes, so the job failed."
        )
    return picture


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
