"""A thin test client over `websockets` that speaks the frame format as a user would."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


class Client:
    """One WebSocket session: JSON frames in and out."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any] | None) -> None:
        self.ws = ws
        self.welcome = welcome

    @property
    def session_id(self) -> str:
        assert self.welcome is not None
        sid: str = self.welcome["session_id"]
        return sid

    @classmethod
    async def open(cls, url: str, *, welcome: bool = True, **kw: Any) -> Client:
        ws = await connect(url, open_timeout=10, **kw)
        first = json.loads(await ws.recv()) if welcome else None
        if welcome:
            assert first is not None and first["type"] == "welcome", first
        return cls(ws, first)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    async def message(
        self, subject: str, body: Any = "", reply_to: str | None = None, **extra: Any
    ) -> None:
        frame: dict[str, Any] = {"subject": subject, "body": body, **extra}
        if reply_to is not None:
            frame["reply_to"] = reply_to
        await self.send(frame)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        import asyncio

        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def close(self) -> None:
        await self.ws.close()
