"""The process-wide wRPC inbox: one wildcard subscription, routed to per-invocation queues.

One subscription `{inbox}.>` made at start carries every handshake, result and parameter
chunk addressed to this process; its callback only routes each message to the queue of the
invocation it belongs to (or answers the late handshake of a call given up earlier).
`InboxRouter` is the shared base of `ExportServer` and `Invoker`: one connection, one inbox,
one id counter for both directions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import LatticeUnavailable, TransportError
from .wrpc_wire import DEFAULT_MAX_STREAM_BYTES, AbandonedCalls

log = logging.getLogger(__name__)


class Inbox:
    """Per-invocation queue that the wildcard subscription routes messages to; `None` in it
    means the invocation failed with `error` (the lattice connection was lost)."""

    __slots__ = ("error", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self.error: TransportError | None = None

    def fail(self, error: TransportError) -> None:
        """Wake the waiter with `error`."""
        if self.error is None:
            self.error = error
            self.queue.put_nowait(None)

    async def get(self, timeout: float) -> Msg | None:
        """The next message within `timeout` (None on timeout); raises the failure if any.

        Not `asyncio.wait_for(queue.get(), ...)`: on 3.11 that wraps the get in a new task,
        three times per call on the hot path (bench --profile); a queued message is taken
        without arming a timer at all.
        """
        if self.queue.empty():
            try:
                async with asyncio.timeout(timeout):
                    msg = await self.queue.get()
            except TimeoutError:
                return None
        else:
            msg = self.queue.get_nowait()
        if msg is None:
            assert self.error is not None
            raise self.error
        return msg


class InboxRouter:
    """One NATS connection's wRPC inbox: subscribes `{inbox}.>` and routes what arrives."""

    def __init__(self, nc: NatsClient, *, max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES) -> None:
        self._nc = nc
        self._inbox_prefix = nc.new_inbox()  # subscribed: handshakes, results, our params
        self._ids = itertools.count(1)
        self._inboxes: dict[str, Inbox] = {}
        self._background: set[asyncio.Task[None]] = set()  # stream ends sent late
        self._inbox_sub: Subscription | None = None
        self._abandoned = AbandonedCalls()
        self.max_stream_bytes = max_stream_bytes
        #: An OpenTelemetry tracer (set when the host enables traces): spans per invocation.
        self.tracer: Any = None

    def connection_lost(self) -> None:
        """Fail every invocation waiting for a handshake, parameters or results with
        `LatticeUnavailable`: NATS core does not keep what was published to our inbox while
        we were disconnected, so those answers can never arrive. (The runtime calls this
        from the NATS client's disconnected callback.)"""
        for inbox in self._inboxes.values():
            inbox.fail(LatticeUnavailable("lost the lattice NATS connection during the call"))

    async def start(self) -> None:
        """Subscribe the process-wide inbox wildcard (call once, before serving or invoking)."""
        self._inbox_sub = await self._nc.subscribe(
            f"{self._inbox_prefix}.>",
            cb=self._route,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )

    async def _route(self, msg: Msg) -> None:
        # Handshake arrives on `<prefix>.<id>`, results on `<prefix>.<id>.results`,
        # parameters for our served calls on `<prefix>.s<id>.params`.
        rest = msg.subject[len(self._inbox_prefix) + 1 :]
        key = rest.split(".", 1)[0]
        inbox = self._inboxes.get(key)
        if inbox is not None:
            inbox.queue.put_nowait(msg)
        elif rest == key and msg.reply and msg.data == b"" and key in self._abandoned:
            # Cheap tests first: every call's trailing end-of-results message lands here.
            self._finish_abandoned(key, msg.reply)
        elif key[:1] == "h":
            # The answer to a handover (`wrpc_handover`): nobody took it.
            self._handover_refused(key)

    def _handover_refused(self, key: str) -> None:
        """A handover of ours was not taken (`ExportServer` serves it itself)."""

    @property
    def abandoned(self) -> int:
        """Invocations given up before their handshake, still remembered."""
        return len(self._abandoned)

    def _finish_abandoned(self, key: str, server_inbox: str) -> None:
        """A late handshake: end the parameter stream so the peer's call can finish."""
        self._abandoned.take(key)
        log.info(
            "late wRPC handshake for an invocation given up earlier: parameters ended, "
            "its result will be discarded"
        )
        self._spawn_publish(f"{server_inbox}.params", b"")

    def _spawn_publish(self, subject: str, data: bytes) -> None:
        async def publish() -> None:
            try:
                await self._nc.publish(subject, data)
            except Exception as exc:  # connection gone: nobody waits on this stream any more
                log.debug("could not publish to %s: %s", subject, exc)

        task = asyncio.get_running_loop().create_task(publish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
