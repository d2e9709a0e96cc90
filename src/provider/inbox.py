"""A session's inbound side: the client's messages waiting for the component.

Messages are delivered one at a time, so the component sees a session's messages in the
order the client sent them and a slow component holds back only this session. There is no
worker task: a delivery is started when a message arrives and nothing is in flight, and the
next one when the delivery says it is done (`call(..., done)` calls `done()`, from a NATS
callback on the hot path). A delivery that has to wait may instead return an awaitable;
the inbox then runs it as a task and goes on when it completes. An idle session holds a
deque and a few fields, nothing more.

The queue is bounded (INBOUND_QUEUE_LIMIT; the message being delivered does not count):
when it is full the reader either waits (TCP back-pressure on this client) or refuses the
message (`overloaded`), as the caller chooses.
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

Done = Callable[[], None]
#: Delivers one message: calls `done()` when finished (None returned), or returns an
#: awaitable whose completion means finished (then it must not call `done`).
Deliver = Callable[[OwnerT, BrokerMessage, str | int | None, Done], Awaitable[None] | None]


class Inbox(Generic[OwnerT]):
    """The bounded queue of a session's messages for the component, and their delivery."""

    __slots__ = (
        "_busy",
        "_call",
        "_delivering",
        "_drained",
        "_fields",
        "_items",
        "_limit",
        "_owner",
        "_space",
        "_started",
        "_stopped",
        "_task",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: deque[InboundItem] | None = None  # made when a message waits
        self._owner: OwnerT | None = None
        self._call: Deliver[OwnerT] | None = None
        self._fields: Mapping[str, str] = {}
        self._started = False  # deliveries may run (started, and the gate is open)
        self._busy = False  # a delivery is in flight
        self._delivering = False  # inside the delivery loop (a `done()` from there returns)
        self._stopped = False
        self._space: asyncio.Future[None] | None = None  # a `put` waits for room
        self._drained: asyncio.Future[None] | None = None  # `finish` waits for the end
        self._task: asyncio.Task[None] | None = None  # an awaitable delivery, or the gate

    async def put(self, msg: BrokerMessage, frame_id: str | int | None) -> None:
        """Queue a message for the component; waits while the queue is full."""
        while self._items is not None and len(self._items) >= self._limit and not self._stopped:
            if self._space is None or self._space.done():
                self._space = asyncio.get_running_loop().create_future()
            await self._space
        self._push((msg, frame_id))

    def offer(self, msg: BrokerMessage, frame_id: str | int | None) -> bool:
        """Queue a message for the component unless the queue is full (then False)."""
        if self._items is not None and len(self._items) >= self._limit:
            return False
        self._push((msg, frame_id))
        return True

    def _push(self, item: InboundItem) -> None:
        if self._stopped:
            return
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if self._started and not self._busy and not self._delivering:
            self._deliver()

    def start(
        self,
        owner: OwnerT,
        call: Deliver[OwnerT],
        gate: asyncio.Event | None,
        log_fields: Mapping[str, str],
    ) -> None:
        """Deliver each message with `call(owner, message, frame id, done)`, in order (the
        call to the component).

        `gate`: wait (at most INBOUND_GATE_TIMEOUT) until it is set before the first delivery
        (a session moving in: the old holder delivers what the client sent it first). A
        delivery that raises is logged and the next one goes on.
        """
        self._owner, self._call, self._fields = owner, call, log_fields
        if gate is None or gate.is_set():
            self._open()
        else:
            self._task = asyncio.get_running_loop().create_task(self._wait_gate(gate))

    async def _wait_gate(self, gate: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.wait(), INBOUND_GATE_TIMEOUT)
        self._task = None
        self._open()

    def _open(self) -> None:
        self._started = True
        if self._items and not self._busy:
            self._deliver()
        else:
            self._check_drained()

    def _deliver(self) -> None:
        """Start deliveries until one is in flight or nothing is queued."""
        items = self._items
        call = self._call
        assert call is not None
        if items is None:
            self._check_drained()
            return
        self._delivering = True
        try:
            while items and not self._busy and not self._stopped:
                msg, frame_id = items.popleft()
                if self._space is not None and not self._space.done():
                    self._space.set_result(None)
                self._busy = True
                try:
                    pending = call(self._owner, msg, frame_id, self._done)  # type: ignore[arg-type]
                except Exception:
                    self._failed()
                    self._busy = False
                    continue
                if pending is not None:
                    self._task = asyncio.get_running_loop().create_task(self._await(pending))
        finally:
            self._delivering = False
        if not items and self._items is items:
            self._items = None  # an idle session keeps no deque
        if not self._busy:
            self._check_drained()

    async def _await(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            self._failed()
        finally:
            # Whatever ended it (even a cancellation from elsewhere), the next message must
            # not wait for ever; after `cancel` nothing more is delivered anyway.
            self._task = None
            if not self._stopped:
                self._done()

    def _failed(self) -> None:
        log.exception(
            "delivery for session %s failed", self._fields["session_id"], extra=self._fields
        )

    def _done(self) -> None:
        """The delivery in flight is finished: start the next."""
        self._busy = False
        if self._delivering:
            return  # the delivery loop goes on
        if self._items and not self._stopped:
            self._deliver()
        else:
            self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and not self._items and not self._busy:
            drained.set_result(None)

    async def finish(self, final: BrokerMessage | None, timeout: float) -> None:
        """Deliver what is queued, then `final` (e.g. the disconnect event), then stop; all
        within `timeout` (after it, what is left is dropped and a delivery still waiting is
        cancelled). Nothing to do when delivery was never started."""
        if self._call is None or self._stopped:
            return
        if final is not None:
            if self._items is None:
                self._items = deque()
            self._items.append((final, None))
        self._drained = asyncio.get_running_loop().create_future()
        if self._started and not self._busy and not self._delivering:
            self._deliver()
        else:
            self._check_drained()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._drained), timeout)
        self.cancel()

    def cancel(self) -> None:
        """Stop delivering (what is still queued is not delivered; a delivery running as a
        task is cancelled)."""
        self._stopped = True
        self._items = None
        if self._space is not None and not self._space.done():
            self._space.set_result(None)
        if self._task is not None:
            self._task.cancel()
            self._task = None
