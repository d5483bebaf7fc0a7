"""The gateway websocket: handshake, heartbeats, and the events tests push to the bot."""

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from .payloads import JSON
from .recording import Recorder

# Opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway).
DISPATCH, HEARTBEAT, IDENTIFY, REQUEST_MEMBERS, HELLO, HEARTBEAT_ACK = 0, 1, 2, 8, 10, 11


class Gateway:
    """Serves one bot connection at a time, like a single-shard bot; a reconnect gets a fresh READY."""

    def __init__(
        self,
        recorder: Recorder,
        on_identify: Callable[[], list[tuple[str, JSON]]],
        members: Callable[[], list[JSON]],
    ) -> None:
        self._recorder = recorder
        self._on_identify = on_identify
        self._members = members
        self._open: set[web.WebSocketResponse] = set()
        self._current: web.WebSocketResponse | None = None
        self._seq = 0

    @property
    def connected(self) -> bool:
        return self._current is not None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._open.add(ws)
        self._current, self._seq = ws, 0
        try:
            await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": 41250}}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._receive(ws, json.loads(msg.data))
        finally:
            self._open.discard(ws)
            if self._current is ws:
                self._current = None
        return ws

    async def _receive(self, ws: web.WebSocketResponse, frame: JSON) -> None:
        op = frame["op"]
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
            return
        await self._recorder.add(
            at=time.monotonic(), kind="gateway", method="WS", path="/gateway", params={}, json=frame
        )
        if op == IDENTIFY:
            for event, data in self._on_identify():
                await self.dispatch(event, data)
        elif op == REQUEST_MEMBERS:  # only bots with the members intent ask, before they become ready
            chunk = {"guild_id": frame["d"]["guild_id"], "members": self._members()}
            chunk |= {"chunk_index": 0, "chunk_count": 1, "nonce": frame["d"].get("nonce")}
            await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, data: Any) -> None:
        if self._current is None:
            raise RuntimeError("no bot is connected to the fake gateway")
        self._seq += 1
        await self._current.send_str(json.dumps({"op": DISPATCH, "t": event, "s": self._seq, "d": data}))

    async def close(self) -> None:
        for ws in list(self._open):
            await ws.close()
