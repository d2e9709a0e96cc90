"""The process-wide wRPC inbox: one wildcard subscription, routed to the calls waiting on it.

One subscription `{inbox}.>` made at start carries every handshake, result and parameter
chunk addressed to this process; its callback hands each message, in the NATS callback
itself, to the call it belongs to (a `Waiting` entry: an invocation we made, or the
parameter stream of a call we serve), or answers the late handshake of a call given up
earlier. No queue, task or future per message.

Time limits are deadlines on the entries, checked by one sweep timer shared by every call
(re-armed every `SWEEP_INTERVAL` while anything waits), not a timer per call: an entry's
`expired` runs at most `SWEEP_INTERVAL` after its deadline.

`InboxRouter` is the shared base of `ExportServer` and `Invoker`: one connection, one
inbox, one id counter for both directions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from .errors import LatticeUnavailable, TransportError
from .wire import Wire, WireMsg
from .wrpc_wire import DEFAULT_MAX_STREAM_BYTES, AbandonedCalls

log = logging.getLogger(__name__)

#: The clock of the calls' deadlines: `time.monotonic`, the standard event loop's `time()`,
#: read directly on the hot path (on Python 3.11 `asyncio.get_running_loop()` makes a
#: `getpid` system call each time: two per round trip before).
clock = time.monotonic

#: How often the deadlines of waiting calls are checked (seconds).
SWEEP_INTERVAL = 0.05


class Waiting:
    """Something waiting for messages on the inbox, under one key, until `deadline`
    (loop time). The router calls exactly one of `expired`/`lost`, or none when the entry
    removes itself (`InboxRouter.done`) first."""

    __slots__ = ("deadline", "key")

    def __init__(self, key: str, deadline: float) -> None:
        self.key = key
        self.deadline = deadline

    def received(self, msg: WireMsg) -> None:
        """A message for this key arrived."""
        raise NotImplementedError

    def expired(self) -> None:
        """The deadline passed (the entry is already removed)."""
        raise NotImplementedError

    def lost(self, error: TransportError) -> None:
        """The lattice connection was lost (the entry is already removed)."""
        raise NotImplementedError


class InboxRouter:
    """One NATS connection's wRPC inbox: subscribes `{inbox}.>` and routes what arrives."""

    def __init__(self, wire: Wire, *, max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES) -> None:
        self._wire = wire
        self._inbox_prefix = wire.new_inbox()  # subscribed: handshakes, results, our params
        self._inbox_cut = len(self._inbox_prefix) + 1
        self._ids = itertools.count(1)
        self._waiting: dict[str, Waiting] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._inbox_sid: int | None = None
        self._abandoned = AbandonedCalls()
        self.max_stream_bytes = max_stream_bytes
        #: An OpenTelemetry tracer (set when the host enables traces): spans per invocation.
        self.tracer: Any = None

    @property
    def wire(self) -> Wire:
        """The NATS connection the calls go over."""
        return self._wire

    def connection_lost(self) -> None:
        """Fail every call waiting for a handshake, parameters or results with
        `LatticeUnavailable`: NATS core does not keep what was published to our inbox while
        we were disconnected, so those answers can never arrive. (The runtime calls this
        from the NATS connection's disconnected callback.)"""
        waiting, self._waiting = self._waiting, {}
        error = LatticeUnavailable("lost the lattice NATS connection during the call")
        for entry in waiting.values():
            try:
                entry.lost(error)
            except Exception:  # one failing outcome must not leave the others waiting
                log.exception("wRPC call failure handling failed")

    async def start(self) -> None:
        """Subscribe the process-wide inbox wildcard (call once, before serving or invoking)."""
        self._inbox_sid = self._wire.subscribe(f"{self._inbox_prefix}.>", self._route)
        await self._wire.flush()

    def wait(self, entry: Waiting) -> None:
        """Route messages for `entry.key` to `entry` until it is `done`, or its deadline."""
        self._waiting[entry.key] = entry
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_at(loop.time() + SWEEP_INTERVAL, self._sweep)

    def done(self, entry: Waiting) -> None:
        """`entry` needs no more messages."""
        if self._waiting.get(entry.key) is entry:
            del self._waiting[entry.key]

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = clock()
        waiting = self._waiting
        expired = [entry for entry in waiting.values() if entry.deadline <= now]
        for entry in expired:
            if waiting.get(entry.key) is entry:
                del waiting[entry.key]
                try:
                    entry.expired()
                except Exception:
                    log.exception("wRPC call timeout handling failed")
        self._sweeper = loop.call_at(now + SWEEP_INTERVAL, self._sweep) if waiting else None

    def _route(self, msg: WireMsg) -> None:
        # Handshake arrives on `<prefix>.<id>`, results on `<prefix>.<id>.results`,
        # parameters for our served calls on `<prefix>.s<id>.params`.
        rest = msg.subject[self._inbox_cut :]
        dot = rest.find(".")
        key = rest if dot < 0 else rest[:dot]
        entry = self._waiting.get(key)
        if entry is not None:
            try:
                entry.received(msg)
            except Exception:
                log.exception("wRPC message handling failed for %s", msg.subject)
        elif dot < 0 and msg.reply and not msg.data and key in self._abandoned:
            # Cheap tests first: every call's trailing end-of-results message lands here.
            self._finish_abandoned(key, msg.reply)
        elif key[:1] == "h":
            # The answer to a handover (`wrpc_handover`): nobody took it.
            self._handover_refused(key)

    def _handover_refused(self, key: str) -> None:
        """A handover of ours was not taken (`ExportServer` serves it itself)."""

    def abandon(self, key: str) -> None:
        """A call given up before its handshake: if the handshake still comes, end the
        parameter stream so the peer's call can finish (a host holds the component's
        invocation permit until then)."""
        self._abandoned.remember(key, asyncio.get_running_loop().time())

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
        self.publish_quietly(f"{server_inbox}.params", b"")

    def publish_quietly(self, subject: str, data: bytes) -> None:
        """Publish, or log at debug when the connection is gone (nobody waits on it then)."""
        try:
            self._wire.publish(subject, data)
        except Exception as exc:
            log.debug("could not publish to %s: %s", subject, exc)
