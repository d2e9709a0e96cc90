"""Sessions: one per connected WebSocket client (server mode).

A session owns two bounded queues and a task for each:

* outbound: frames for the client, written by a writer task (or at once, when the writer is
  idle and the socket takes data); when the client does not read, the queue fills and the
  slow-consumer policy applies (drop the oldest frame, or close 1008);
* inbound: the client's messages waiting for the component, delivered one at a time by a
  worker task (per-session order kept; a slow component holds back only this session;
  when the queue is full the reader stops reading, i.e. TCP back-pressure on this client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wasmcloud_provider_sdk import BrokerMessage

from .closecodes import CloseCode
from .frames import MessageTemplate
from .history import History
from .lifecycle import ACCEPTS_MESSAGES, SessionState, listed_state, transition
from .ratelimit import SessionLimiter
from .wsadapter import write_now

log = logging.getLogger(__name__)

#: Longest wait for the old holder of a moved session to finish the client's messages.
INBOUND_GATE_TIMEOUT = 60.0


#: Frames always allowed in a send queue whatever their size: a client that reads normally
#: but receives a few messages larger than SEND_QUEUE_BYTES is not a slow consumer.
MIN_QUEUED_FRAMES = 2


def _frame_len(item: str | bytes | tuple[str | bytes, asyncio.Future[None]]) -> int:
    """Bytes of a queued frame (characters for text: close enough for a bound)."""
    return len(item[0] if isinstance(item, tuple) else item)


@dataclass
class Counters:
    """Per-session traffic counters (exposed by `list_ws_clients`)."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_out: int = 0
    errors_sent: int = 0
    rate_limited: int = 0


@dataclass
class SessionInfo:
    """What `list_ws_clients()` returns for one session."""

    session_id: str
    component_id: str
    link_name: str
    remote_addr: str
    connected_at: float
    subscriptions: list[str]
    counters: dict[str, int]
    #: `server` (a client connected to one of our endpoints) or `client` (our outbound
    #: connection of a client-mode link, see client.py).
    mode: str = "server"
    #: `connected`, `detached` (waiting for a resume) or `closing` (server); `connecting`,
    #: `reconnecting`, `failed` (client).
    state: str = "connected"
    #: The last sequence number sent (server mode; message frames carry it).
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "session_id": self.session_id,
            "mode": self.mode,
            "state": self.state,
            "component_id": self.component_id,
            "link_name": self.link_name,
            "remote_addr": self.remote_addr,
            "connected_at": self.connected_at,
            "subscriptions": self.subscriptions,
            "counters": self.counters,
            "seq": self.seq,
        }


InboundItem = tuple[BrokerMessage, str | int | None]  # message, client frame id
Deliver = Callable[["Session", BrokerMessage, str | int | None], Awaitable[None]]


@dataclass(eq=False)
class Session:
    """One connected client."""

    id: str
    ws: ServerConnection | None
    component_id: str
    link_name: str
    remote_addr: str
    binary: bool
    send_queue_limit: int
    slow_consumer: str
    inbound_limit: int
    #: Bytes of queued frames before the slow-consumer policy applies (see ServerSettings).
    send_queue_bytes: int = 4 * 1024 * 1024
    connected_at: float = field(default_factory=time.time)
    state: SessionState = SessionState.OPEN
    subscriptions: set[str] = field(default_factory=set)
    counters: Counters = field(default_factory=Counters)
    pending_requests: dict[str, asyncio.Future[BrokerMessage]] = field(default_factory=dict)
    close_code: int | None = None
    close_reason: str = ""
    limiter: SessionLimiter | None = None
    #: The last sequence number sent (message frames carry 1, 2, 3, …).
    seq: int = 0
    history: History | None = None
    #: (messages, bytes, max age) when the endpoint offers resume: the history is made on
    #: the first message (an idle session pays nothing for it).
    history_limits: tuple[int, int, float] | None = None
    #: SHA-256 of the current resume token's secret (None: the endpoint offers no resume).
    resume_hash: bytes | None = None
    #: Who authenticated (JWT `sub`/token identity); a resume must present the same.
    identity_key: str | None = None
    #: True when the connection ends in a way that keeps the session for a resume (the
    #: client dropped, or the provider is shutting down), False for a final close.
    resumable: bool = False
    detached_at: float | None = None
    #: History and state also kept in JetStream (resume from another process).
    persist: bool = False
    #: While MOVING_OUT: set when the move is over (done or given up); while MOVING_OUT or
    #: MOVING_IN: the fan-out messages that arrived meanwhile (for the new holder / to
    #: deliver once the old holder let go).
    moved: asyncio.Event | None = None
    moving_buffer: list[MessageTemplate] = field(default_factory=list)
    #: Moving in from a live instance, before the client's connection is served: how to claim
    #: the session from its old holder (the answer is what reached it meanwhile).
    pending_claim: Callable[[asyncio.Event], Awaitable[list[MessageTemplate] | None]] | None = None
    #: Moving in: set when the old holder delivered what the client sent it; until then the
    #: inbound worker waits (per-session order for the component across a move).
    inbound_gate: asyncio.Event | None = None
    #: Moved in from a live instance: answers to requests made there go back there.
    moved_in: bool = False
    expiry: asyncio.TimerHandle | None = None
    _out: deque[str | bytes | tuple[str | bytes, asyncio.Future[None]]] = field(
        default_factory=deque
    )
    #: Bytes of the frames in `_out`, bounded by `send_queue_bytes`.
    _out_bytes: int = 0
    _out_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _in: asyncio.Queue[InboundItem | None] = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _writer_idle: bool = False

    def __post_init__(self) -> None:
        self._in = asyncio.Queue(self.inbound_limit)

    # --- outbound ---------------------------------------------------------------------------

    def ensure_history(self) -> History | None:
        """The session's history (made now if the endpoint offers resume), or None."""
        if self.history is None and self.history_limits is not None:
            self.history = History(*self.history_limits)
        return self.history

    @property
    def accepts_messages(self) -> bool:
        """Open, detached and waiting for a resume, or moving in from another instance."""
        return self.state in ACCEPTS_MESSAGES

    def deliver(
        self, message: MessageTemplate, persisted: asyncio.Future[None] | None = None
    ) -> bool:
        """Send a message frame with the next `seq` (kept in the history when the endpoint
        offers resume). `persisted`: the frame is not written before it resolves (history
        stored elsewhere first, so a crash cannot lose what the client already saw).
        A detached session keeps the message for its resume. False when closed."""
        state = self.state
        if state is SessionState.OPEN or state is SessionState.DETACHED:
            self.seq += 1
            history = self.history
            if history is None and self.history_limits is not None:
                history = self.ensure_history()
            if history is not None:
                history.append(self.seq, message, time.monotonic())
            if state is SessionState.DETACHED:
                return True
            frame = message.render(self.seq, self.binary)
            return self.send(frame if persisted is None else (frame, persisted))
        return False

    def send(self, frame: str | bytes | tuple[str | bytes, asyncio.Future[None]]) -> bool:
        """Queue a frame for the client; False if the session is closed or was just closed
        by the slow-consumer policy."""
        if self.state is not SessionState.OPEN:
            return False
        # The writer is idle and nothing is queued: write at once when the socket takes data
        # (the usual case, e.g. a broadcast to idle clients): no writer wake-up and no
        # coroutine per frame (bench: broadcast, round trip). Otherwise the writer task sends
        # it, with back-pressure and the slow-consumer policy.
        ws = self.ws
        if (
            not self._out
            and self._writer_idle
            and not isinstance(frame, tuple)
            and ws is not None
            and write_now(ws, frame)
        ):
            self.counters.messages_out += 1
            self.counters.bytes_out += len(frame)
            return True
        size = _frame_len(frame)
        out = self._out
        if len(out) >= self.send_queue_limit or (
            len(out) >= MIN_QUEUED_FRAMES and self._out_bytes + size > self.send_queue_bytes
        ):
            if self.slow_consumer == "drop_oldest":
                while out and (
                    len(out) >= self.send_queue_limit
                    or (
                        len(out) >= MIN_QUEUED_FRAMES
                        and self._out_bytes + size > self.send_queue_bytes
                    )
                ):
                    self._out_bytes -= _frame_len(out.popleft())
                    self.counters.dropped_out += 1
            else:
                log.info(
                    "session %s closed: slow consumer (%d frames, %d bytes queued)",
                    self.id,
                    len(out),
                    self._out_bytes,
                    extra=self.log_fields,
                )
                self.close(CloseCode.POLICY, "slow consumer")
                return False
        out.append(frame)
        self._out_bytes += size
        self._out_ready.set()
        self._drained.clear()
        return True

    @property
    def queued_out(self) -> int:
        """Frames waiting to be written."""
        return len(self._out)

    async def _writer(self) -> None:
        try:
            while True:
                while not self._out:
                    self._out_ready.clear()
                    self._writer_idle = True
                    try:
                        await self._out_ready.wait()
                    finally:
                        self._writer_idle = False
                item = self._out.popleft()
                self._out_bytes -= _frame_len(item)
                if isinstance(item, tuple):
                    frame, persisted = item
                    if not persisted.done():
                        await asyncio.wait([persisted])
                else:
                    frame = item
                assert self.ws is not None
                await self.ws.send(frame)
                self.counters.messages_out += 1
                self.counters.bytes_out += len(frame)
                if not self._out:
                    self._drained.set()
        except ConnectionClosed:
            pass

    async def flush(self, timeout: float) -> None:
        """Wait (bounded) until queued frames are written."""
        if self._out and self.state is SessionState.OPEN:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)

    # --- inbound ----------------------------------------------------------------------------

    async def put_inbound(self, msg: BrokerMessage, frame_id: str | int | None) -> None:
        """Queue a message for the component; waits while the queue is full."""
        await self._in.put((msg, frame_id))

    def offer_inbound(self, msg: BrokerMessage, frame_id: str | int | None) -> bool:
        """Queue a message for the component unless the queue is full (then False)."""
        try:
            self._in.put_nowait((msg, frame_id))
        except asyncio.QueueFull:
            return False
        return True

    def start(self, deliver: Deliver) -> None:
        """Start the writer and the inbound worker."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._writer()))
        self._tasks.append(loop.create_task(self._inbound_worker(deliver)))

    def detach(self) -> None:
        """The connection is gone: stop writing, keep everything else for a resume (queued
        frames are in the history; the inbound worker still delivers what the client sent)."""
        transition(self, SessionState.DETACHED)
        self.ws = None
        self.stop_writer()

    def stop_writer(self) -> None:
        """Stop writing to the client (a detached session has none) and drop queued frames."""
        self.detached_at = time.monotonic()
        self._tasks[0].cancel()
        self._out.clear()
        self._out_bytes = 0
        self._drained.set()

    def attach(self, ws: ServerConnection, binary: bool, remote_addr: str) -> None:
        """A resuming client's connection takes over the session (writer restarted)."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.ws, self.binary, self.remote_addr = ws, binary, remote_addr
        transition(self, SessionState.OPEN)
        self.detached_at = None
        self.close_code, self.close_reason, self.resumable = None, "", False
        self._out.clear()
        self._out_bytes = 0
        self._tasks[0] = asyncio.get_running_loop().create_task(self._writer())

    async def _inbound_worker(self, deliver: Deliver) -> None:
        gate = self.inbound_gate
        if gate is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), INBOUND_GATE_TIMEOUT)
            self.inbound_gate = None
        while True:
            item = await self._in.get()
            if item is None:
                return
            msg, frame_id = item
            try:
                await deliver(self, msg, frame_id)
            except Exception:
                log.exception("delivery for session %s failed", self.id, extra=self.log_fields)

    async def finish_inbound(self, final: BrokerMessage | None, timeout: float) -> None:
        """Deliver what is queued, then `final` (e.g. the disconnect event), then stop the
        worker; all within `timeout` (after it, the worker is cancelled)."""
        if len(self._tasks) < 2:
            return
        worker = self._tasks[1]

        async def drain() -> None:
            if final is not None:
                await self._in.put((final, None))
            await self._in.put(None)
            await worker

        try:
            await asyncio.wait_for(drain(), timeout)
        except TimeoutError:
            worker.cancel()

    # --- life cycle -------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start closing with `code` (idempotent); the connection handler finishes the job."""
        if self.state is not SessionState.OPEN:
            return
        transition(self, SessionState.CLOSING)
        self.close_code, self.close_reason = code, reason
        asyncio.get_running_loop().create_task(self._close_ws(code, reason))

    async def _close_ws(self, code: int, reason: str) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)

    def fail_pending(self, reason: str) -> None:
        """Fail every request waiting for this client's answer."""
        for future in self.pending_requests.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        self.pending_requests.clear()

    def cancel_tasks(self) -> None:
        """Stop the writer (and the worker, if still running)."""
        for task in self._tasks:
            task.cancel()

    @property
    def log_fields(self) -> dict[str, str]:
        """`extra=` for log lines about this session (JSON logs carry them as fields)."""
        return {
            "session_id": self.id,
            "component_id": self.component_id,
            "link_name": self.link_name,
        }

    def info(self) -> SessionInfo:
        """A snapshot for `list_ws_clients`."""
        c = self.counters
        return SessionInfo(
            session_id=self.id,
            component_id=self.component_id,
            link_name=self.link_name,
            remote_addr=self.remote_addr,
            connected_at=self.connected_at,
            subscriptions=sorted(self.subscriptions),
            state=listed_state(self.state),
            seq=self.seq,
            counters={
                "messages_in": c.messages_in,
                "messages_out": c.messages_out,
                "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out,
                "dropped_out": c.dropped_out,
                "errors_sent": c.errors_sent,
                "rate_limited": c.rate_limited,
            },
        )
