"""A session's inbound side: the client's messages waiting for the component (asyncio).

One worker task delivers them one at a time, so the component sees a session's messages in
the order the client sent them and a slow component holds back only this session. The queue
is bounded (INBOUND_QUEUE_LIMIT): when it is full the reader either waits (TCP back-pressure
on this client) or refuses the message (`overloaded`), as the caller chooses.

An idle session pays for neither: the queue and the worker are made when a message arrives
and let go when the worker has delivered everything (thousands of idle sessions hold no task
and no queue each; bench: idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
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

#: Delivers one message: `call(owner, message, frame id)` (the call to the component).
Call = Callable[[OwnerT, BrokerMessage, str | int | None], Awaitable[None]]


class Inbox(Generic[OwnerT]):
    """The bounded queue of a session's messages for the component and its worker task.

    Both exist only while messages wait or one is being delivered."""

    __slots__ = (
        "_call",
        "_closed",
        "_gate",
        "_gate_deadline",
        "_items",
        "_limit",
        "_log_fields",
        "_owner",
        "_room",
        "_worker",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        #: The messages waiting (None: none, and no worker).
        self._items: deque[InboundItem] | None = None
        #: The worker delivering them (None: nothing to deliver).
        self._worker: asyncio.Task[None] | None = None
        #: Resolved when the worker takes a message out of a full queue (a `put` waits).
        self._room: asyncio.Future[None] | None = None
        self._owner: OwnerT  # set by `start`
        self._call: Call[OwnerT] | None = None
        self._gate: asyncio.Event | None = None
        self._gate_deadline = 0.0
        self._log_fields: Mapping[str, str] = {}
        #: Finished or cancelled: no worker starts any more.
        self._closed = False

    async def put(self, msg: BrokerMessage, frame_id: str | int | None) -> None:
        """Queue a message for the component; waits while the queue is full."""
        while not self.offer(msg, frame_id):
            room = self._room
            if room is None:
                room = self._room = asyncio.get_running_loop().create_future()
            # wait(), not await: a cancelled putter must not cancel the others' future.
            await asyncio.wait((room,))

    def offer(self, msg: BrokerMessage, frame_id: str | int | None) -> bool:
        """Queue a message for the component unless the queue is full (then False)."""
        if self._closed:
            return True  # finished: taken and dropped, as the session is over
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self._limit:
            return False
        items.append((msg, frame_id))
        if self._worker is None and self._call is not None and not self._closed:
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return True

    def start(
        self,
        owner: OwnerT,
        call: Call[OwnerT],
        gate: asyncio.Event | None,
        log_fields: Mapping[str, str],
    ) -> None:
        """From now on deliver each message: `call(owner, message, frame id)`, in order (the
        call to the component), from a worker task that runs while messages wait.

        `gate`: wait (at most INBOUND_GATE_TIMEOUT from now) until it is set before the first
        delivery (a session moving in: the old holder delivers what the client sent it
        first). A delivery that raises is logged and the next one goes on.
        """
        loop = asyncio.get_running_loop()
        self._owner, self._call, self._log_fields = owner, call, log_fields
        self._gate = gate
        self._gate_deadline = loop.time() + INBOUND_GATE_TIMEOUT
        if self._items and self._worker is None and not self._closed:
            self._worker = loop.create_task(self._run())

    async def _run(self) -> None:
        gate = self._gate
        if gate is not None:
            if not gate.is_set():
                remaining = self._gate_deadline - asyncio.get_running_loop().time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), max(remaining, 0.0))
            self._gate = None  # waited once: later workers deliver at once
        owner, call = self._owner, self._call
        assert call is not None
        items = self._items
        while items:
            msg, frame_id = items.popleft()
            room = self._room
            if room is not None:
                self._room = None
                if not room.done():
                    room.set_result(None)
            try:
                await call(owner, msg, frame_id)
            except Exception:
                fields = self._log_fields
                log.exception(
                    "delivery for session %s failed", fields.get("session_id"), extra=fields
                )
        # Everything delivered: let go of the queue and of this task (no await since the
        # check, so a message offered from now on starts a new worker).
        self._items = None
        self._worker = None

    async def finish(self, final: BrokerMessage | None, timeout: float) -> None:
        """Deliver what is queued, then `final` (e.g. the disconnect event), then stop; all
        within `timeout` (after it, the worker is cancelled). Nothing is delivered after
        this (a later message is taken and dropped). Nothing to do when `start` was never
        called."""
        if self._call is None or self._closed:
            return

        async def drain() -> None:
            if final is not None:
                await self.put(final, None)
            self._closed = True
            worker = self._worker
            if worker is not None:
                await worker

        try:
            await asyncio.wait_for(drain(), timeout)
        except TimeoutError:
            self.cancel()
        self._closed = True

    def cancel(self) -> None:
        """Stop the worker, if it runs (what is still queued is not delivered, nor anything
        offered later)."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
