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
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image
from redis.asyncio import Redis

from engine.job import GeneratedImage, InpaintResult, MaskSource
from engine.settings import InpaintSettings

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


async def connected_workers(redis: Redis, keys: Keys) -> list[WorkerInfo]:
    """The workers announced now, by name; names whose announcement expired leave the set."""
    members: Any = await redis.smembers(keys.workers)
    names = sorted(name.decode() for name in members)
    found: Any = await redis.mget([keys.worker(name) for name in names]) if names else []
    gone = [name for name, data in zip(names, found, strict=True) if data is None]
    if gone:
        await redis.srem(keys.workers, *gone)
    return [WorkerInfo.decode(data) for data in found if data is not None]


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


def decode_result(fields: Fields) -> tuple[InpaintResult, list[bool | None]]:
    """A done message back into what the store takes; the PNGs are kept as they came (not encoded
    again), and the pictures are opened lazily, header only."""
    meta: dict[str, Any] = json.loads(fields[b"meta"])
    images = []
    for index, (seed, parameters) in enumerate(zip(meta["seeds"], meta["parameters"], strict=True)):
        png = fields[f"png{index}".encode()]
        output = GeneratedImage(Image.open(io.BytesIO(png)), int(seed), str(parameters))
        output.__dict__["png"] = png  # ``png`` is a cached property: this is its value
        images.append(output)
    result = InpaintResult(
        images=images,
        settings=InpaintSettings.model_validate(meta["settings"]),
        mask_source=MaskSource(meta["mask_source"]),
        model=str(meta["model"]),
        seconds=float(meta["seconds"]),
        timings={str(key): float(value) for key, value in meta["timings"].items()},
    )
    return result, [None if flag is None else bool(flag) for flag in meta["nsfw"]]


def decode_preview(fields: Fields) -> Image.Image | None:
    data = fields.get(b"preview")
    if not data:
        return None
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
