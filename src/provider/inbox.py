"""A session's inbound side: the client's messages waiting for the component (asyncio).

One worker task delivers them one at a time, so the component sees a session's messages in
the order the client sent them and a slow component holds back only this session. The queue
is bounded (INBOUND_QUEUE_LIMIT): when it is full the reader either waits (TCP back-pressure
on this client) or refuses the message (`overloaded`), as the caller chooses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from wasmcloud_provider_sdk import BrokerMessage

log = logging.getLogger(__name__)

#: Longest wait for the old holder of a moved session to finish the client's messages.
INBOUND_GATE_TIMEOUT = 60.0

#: A client's message and the id of its frame (None: an event, not a client frame).
InboundItem = tuple[BrokerMessage, str | int | None]

#: Who the messages are for (the session), passed back to `call`.
OwnerT = TypeVar("OwnerT")


class Inbox(Generic[OwnerT]):
    """The bounded queue of a session's messages for the component and its worker task."""

    __slots__ = ("_queue", "_worker")

    def __init__(self, limit: int) -> None:
        self._queue: asyncio.Queue[InboundItem | None] = asyncio.Queue(limit)
        self._worker: asyncio.Task[None] | None = None

    async def put(self, msg: BrokerMessage, frame_id: str | int | None) -> None:
        """Queue a message for the component; waits while the queue is full."""
        await self._queue.put((msg, frame_id))

    def offer(self, msg: BrokerMessage, frame_id: str | int | None) -> bool:
        """Queue a message for the component unless the queue is full (then False)."""
        try:
            self._queue.put_nowait((msg, frame_id))
        except asyncio.QueueFull:
            return False
        return True

    def start(
        self,
        owner: OwnerT,
        call: Callable[[OwnerT, BrokerMessage, str | int | None], Awaitable[None]],
        gate: asyncio.Event | None,
        log_fields: Mapping[str, str],
    ) -> None:
        """Start the worker: `call(owner, message, frame id)` for each message, in order (the
        call to the component).

        `gate`: wait (at most INBOUND_GATE_TIMEOUT) until it is set before the first delivery
        (a session moving in: the old holder delivers what the client sent it first). A
        delivery that raises is logged and the next one goes on.
        """
        self._worker = asyncio.get_running_loop().create_task(
            self._run(owner, call, gate, log_fields)
        )

    async def _run(
        self,
        owner: OwnerT,
        call: Callable[[OwnerT, BrokerMessage, str | int | None], Awaitable[None]],
        gate: asyncio.Event | None,
        log_fields: Mapping[str, str],
    ) -> None:
        if gate is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), INBOUND_GATE_TIMEOUT)
        queue = self._queue
        while True:
            item = await queue.get()
            if item is None:
                return
            msg, frame_id = item
            try:
                await call(owner, msg, frame_id)
            except Exception:
                log.exception(
                    "delivery for session %s failed", log_fields["session_id"], extra=log_fields
                )

    async def finish(self, final: BrokerMessage | None, timeout: float) -> None:
        """Deliver what is queued, then `final` (e.g. the disconnect event), then stop the
        worker; all within `timeout` (after it, the worker is cancelled). Nothing to do when
        the worker was never started."""
        worker = self._worker
        if worker is None:
            return

        async def drain() -> None:
            if final is not None:
                await self._queue.put((final, None))
            await self._queue.put(None)
            await worker

        try:
            await asyncio.wait_for(drain(), timeout)
        except TimeoutError:
            worker.cancel()

    def cancel(self) -> None:
        """Stop the worker, if it runs (what is still queued is not delivered)."""
        if self._worker is not None:
            self._worker.cancel()
