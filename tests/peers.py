"""A scriptable third-party WebSocket server for client-mode tests (the `websockets` library).

It records every upgrade attempt (time, headers), every frame it receives, and lets a test
refuse upgrades with an HTTP status, send frames to the connected provider, and stop and
restart on the same port.
"""

from __future__ import annotations

import asyncio
import http
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from provider.natsserver import free_port


@dataclass
class Attempt:
    at: float
    headers: Headers
    path: str


class PeerServer:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.ssl_context = ssl_context
        self.attempts: list[Attempt] = []
        self.attempt_event = asyncio.Event()
        self.refuse_with: int | None = None
        self.refuse_count: int | None = None  # refuse only the next N attempts
        self.frames: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closes: asyncio.Queue[tuple[int | None, str]] = asyncio.Queue()
        self.connections: list[ServerConnection] = []
        self.connected = asyncio.Event()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        return f"{scheme}://localhost:{self.port}/socket"

    async def start(self) -> PeerServer:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,
            process_request=self._process_request,
            ssl=self.ssl_context,
            compression=None,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.connections.clear()
        self.connected.clear()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts.append(Attempt(time.monotonic(), request.headers, request.path))
        self.attempt_event.set()
        if self.refuse_with is not None and (self.refuse_count is None or self.refuse_count > 0):
            if self.refuse_count is not None:
                self.refuse_count -= 1
            return connection.respond(http.HTTPStatus(self.refuse_with), "refused by test\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.connected.set()
        try:
            async for data in ws:
                await self.frames.put(data)
        except ConnectionClosed:
            pass
        finally:
            await self.closes.put((ws.close_code, ws.close_reason or ""))
            if ws in self.connections:
                self.connections.remove(ws)
            if not self.connections:
                self.connected.clear()

    async def wait_attempts(self, n: int, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while len(self.attempts) < n:
                self.attempt_event.clear()
                await self.attempt_event.wait()

        await asyncio.wait_for(wait(), timeout)

    async def wait_connected(self, timeout: float = 10.0) -> ServerConnection:
        await asyncio.wait_for(self.connected.wait(), timeout)
        return self.connections[-1]

    async def next_frame(self, timeout: float = 10.0) -> str | bytes:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def next_json(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = await self.next_frame(timeout)
        obj: dict[str, Any] = json.loads(frame)
        return obj

    async def send(self, frame: str | bytes | dict[str, Any]) -> None:
        ws = await self.wait_connected()
        await ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)
