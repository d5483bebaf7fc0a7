"""What the fake saw, in order, and a way to wait for the next thing without polling."""

import asyncio
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web


@dataclass(frozen=True)
class UploadedFile:
    field: str  # the multipart field, e.g. "files[0]"
    filename: str
    data: bytes


@dataclass(frozen=True)
class Body:
    json: Any  # the JSON body, or a multipart request's payload_json; None without a body
    files: tuple[UploadedFile, ...]


@dataclass(frozen=True)
class Recorded:
    """One request to the fake (or one frame the bot sent on the gateway, with kind "gateway")."""

    seq: int  # position in the record; requests are recorded when answered
    at: float  # time.monotonic() when the request arrived, comparable with FakeInteraction.at
    kind: str  # the route's name, e.g. "callback", "followup", "post_message"; see rest.ROUTES
    method: str
    path: str  # without the /api/v10 prefix
    params: Mapping[str, str]  # the route's placeholders: token, channel_id, message_id, ...
    json: Any  # the JSON body, or a multipart request's payload_json; None without a body
    files: tuple[UploadedFile, ...] = ()
    status: int = 200
    reply: Any = None  # the JSON the fake answered with

    @property
    def error_code(self) -> int | None:
        """Discord's error code (e.g. 40005) when the fake refused the request."""
        return self.reply.get("code") if self.status >= 400 and isinstance(self.reply, dict) else None


Predicate = Callable[[Recorded], bool]


class Recorder:
    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self._changed = asyncio.Condition()

    async def add(self, **fields: Any) -> Recorded:
        record = Recorded(seq=len(self.records), **fields)
        self.records.append(record)
        async with self._changed:
            self._changed.notify_all()
        return record

    def find(
        self,
        kinds: str | Collection[str],
        predicate: Predicate | None = None,
        after: Recorded | None = None,
    ) -> list[Recorded]:
        kinds = {kinds} if isinstance(kinds, str) else set(kinds)
        start = after.seq + 1 if after else 0
        return [
            r for r in self.records[start:] if r.kind in kinds and (predicate is None or predicate(r))
        ]

    async def wait_for(
        self,
        kinds: str | Collection[str],
        predicate: Predicate | None = None,
        *,
        after: Recorded | None = None,
        timeout: float = 5.0,
    ) -> Recorded:
        """The first matching record after `after` (already there or still to come)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while not (found := self.find(kinds, predicate, after)):
                    await self._changed.wait()
        except TimeoutError:
            seen = ", ".join(
                f"{r.kind} {r.status}" for r in self.records[after.seq + 1 if after else 0 :]
            )
            raise AssertionError(
                f"no {kinds} record matched within {timeout}s; seen since: {seen}"
            ) from None
        return found[0]


async def read_body(request: web.Request) -> Body:
    """JSON, or multipart `payload_json` + `files[n]` as discord.py sends attachments."""
    if request.content_type != "multipart/form-data":
        return Body(await request.json() if request.can_read_body else None, ())
    payload: Any = None
    files: list[UploadedFile] = []
    async for part in await request.multipart():
        assert isinstance(part, BodyPartReader), "discord.py never nests multipart bodies"
        if part.name == "payload_json":
            payload = json.loads(await part.text())
        else:
            data = bytes(await part.read())
            files.append(UploadedFile(part.name or "", part.filename or "file", data))
    return Body(payload, tuple(files))
