"""`Wire` over a nats-py client: for library users who hand `WrpcTransport` their own
nats-py connection (the provider's runtime uses the faster `natswire.NatsWire`).

nats-py's publish and subscribe are coroutines: each publish here becomes a task (they run
in the order they were made, and nats-py queues the bytes in its first step, so order on the
wire is kept); each subscription's callback is wrapped in a coroutine. Correct, not fast.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import LatticeUnavailable
from .wire import MsgCallback, WireMsg

log = logging.getLogger(__name__)


class NatsPyWire:
    """`Wire` implemented with nats-py's public API."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._sids = itertools.count(1)
        self._subs: dict[int, Subscription] = {}
        self._dropped: set[int] = set()  # unsubscribed while their SUB was still being made
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    @property
    def is_connected(self) -> bool:
        return self.nc.is_connected

    def new_inbox(self) -> str:
        return self.nc.new_inbox()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("nats-py operation failed: %s", task.exception())

    def publish(
        self,
        subject: str,
        data: bytes,
        reply: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not self.nc.is_connected:
            raise LatticeUnavailable(f"not connected to the lattice NATS: {subject} not sent")
        plain = None if headers is None else dict(headers)  # nats-py takes a dict
        self._spawn(self.nc.publish(subject, data, reply=reply, headers=plain))

    def subscribe(self, subject: str, callback: MsgCallback, queue: str = "") -> int:
        sid = next(self._sids)

        async def deliver(msg: Msg) -> None:
            callback(WireMsg(msg.subject, msg.reply, msg.headers, msg.data))

        async def subscribe() -> None:
            sub = await self.nc.subscribe(
                subject,
                queue=queue,
                cb=deliver,
                pending_msgs_limit=-1,
                pending_bytes_limit=-1,
            )
            if sid in self._dropped:  # unsubscribed before it was made
                self._dropped.discard(sid)
                await sub.unsubscribe()
            else:
                self._subs[sid] = sub

        self._spawn(subscribe())
        return sid

    def unsubscribe(self, sid: int) -> None:
        sub = self._subs.pop(sid, None)
        if sub is not None:
            self._spawn(sub.unsubscribe())
        else:
            self._dropped.add(sid)

    async def flush(self, timeout: float = 2.0) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
        await self.nc.flush(max(1, round(timeout)))

    async def close(self, timeout: float = 2.0) -> None:
        """The nats-py client is the caller's: flush what this wire queued, nothing more."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
