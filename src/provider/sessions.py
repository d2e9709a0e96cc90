"""Sessions: one per connected WebSocket client (server mode).

A session owns two bounded queues and a task for each, both made only while something
waits (an idle session holds no queue and no task: bench idle):

* outbound: frames for the client (`SendQueue`, sendqueue.py: its bounds and the
  slow-consumer policy, drop the oldest frame or close 1008). A frame is written at once
  when nothing waits before it and the socket takes data; otherwise it is queued and a
  writer task runs until the queue is empty;
* inbound: the client's messages waiting for the component (`Inbox`, inbox.py), delivered
  one at a time by a worker task (per-session order kept; when the queue is full the reader
  stops reading, i.e. TCP back-pressure on this client).

It also numbers the message frames it sends (`seq`), keeps them for a resume (`History`,
history.py) and counts its traffic (`Counters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wasmcloud_provider_sdk import BrokerMessage

from .closecodes import CloseCode
from .frames import MessageTemplate
from .history import History
from .inbox import Deliver, Inbox
from .lifecycle import ACCEPTS_MESSAGES, SessionState, listed_state, transition
from .ratelimit import SessionLimiter
from .sendqueue import SendQueue
from .stored import Stored
from .wsadapter import frame_bytes, plain_transport, write_now

log = logging.getLogger(__name__)

#: One fan-out's frames, written as they are: seq (negative: binary) -> (the frame's bytes,
#: its payload's length as `send` counts it).
SharedFrames = dict[int, tuple[bytes, int]]


@dataclass(slots=True)
class Counters:
    """Per-session traffic counters (exposed by `list_ws_clients`)."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_out: int = 0
    errors_sent: int = 0
    rate_limited: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name (as `list_ws_clients` shows them)."""
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "dropped_out": self.dropped_out,
            "errors_sent": self.errors_sent,
            "rate_limited": self.rate_limited,
        }


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


#: Hands one of the client's messages to the component (its frame id for error frames).
CallComponent = Deliver["Session"]


@dataclass(eq=False, slots=True)
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
    #: Frames waiting for the writer (None: none, made when one has to wait).
    _out: SendQueue[Stored] | None = None
    _inbox: Inbox[Session] = field(init=False)
    #: Runs while frames wait (None: the writer is idle, a frame may be written at once).
    _writer_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._inbox = Inbox(self.inbound_limit)

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

    def deliver(self, message: MessageTemplate, persisted: Stored | None = None) -> bool:
        """Send a message frame with the next `seq` (kept in the history when the endpoint
        offers resume). `persisted`: the frame is not written before it resolves (history
        stored elsewhere first, so a crash cannot lose what the client already saw).
        A detached session keeps the message for its resume. False when closed."""
        state = self.state
        if state is SessionState.OPEN or state is SessionState.DETACHED:
            seq = self._next_seq(message)
            if state is SessionState.DETACHED:
                return True
            frame = message.render(seq, self.binary)
            if persisted is None or persisted.done:
                return self.send(frame)
            return self.send((frame, persisted))
        return False

    def deliver_shared(self, message: MessageTemplate, framed: SharedFrames | None) -> bool:
        """`deliver(message)`, writing the frame straight to the transport where it can go
        out at once (open, nothing queued, no extension, the socket takes data). In a
        fan-out its bytes are framed once per seq and format for all the sessions (`framed`:
        one per fan-out; sessions that joined together are at the same seq); None: this
        session's alone."""
        ws = self.ws
        if (
            self.state is not SessionState.OPEN
            or self._out is not None
            or self._writer_task is not None
            or ws is None
        ):
            return self.deliver(message)
        transport = plain_transport(ws)
        if transport is None:
            return self.deliver(message)
        seq = self._next_seq(message)
        binary = self.binary
        key = -seq if binary else seq
        shared = None if framed is None else framed.get(key)
        if shared is None:
            frame = message.render(seq, binary)
            shared = (frame_bytes(frame), len(frame))
            if framed is not None:
                framed[key] = shared
        transport.write(shared[0])
        counters = self.counters
        counters.messages_out += 1
        counters.bytes_out += shared[1]
        return True

    def _next_seq(self, message: MessageTemplate) -> int:
        """Number `message` with the next seq (kept in the history when the endpoint offers
        resume); returns the seq."""
        self.seq += 1
        seq = self.seq
        history = self.history
        if history is None and self.history_limits is not None:
            history = self.ensure_history()
        if history is not None:
            history.append(seq, message, time.monotonic())
        return seq

    def send(self, frame: str | bytes | tuple[str | bytes, Stored]) -> bool:
        """Queue a frame for the client; False if the session is closed or was just closed
        by the slow-consumer policy. A frame with a `Stored` waits for it (and the frames
        after it wait behind)."""
        if self.state is not SessionState.OPEN:
            return False
        # The writer is idle and nothing is queued: write at once when the socket takes data
        # (the usual case, e.g. a broadcast to idle clients): no writer wake-up and no
        # coroutine per frame (bench: broadcast, round trip). Otherwise the frame queues:
        # written when the frames before it are (and its store append is over), from the
        # store's callback while the socket takes data, else by the writer task, with
        # back-pressure and the slow-consumer policy.
        ws = self.ws
        out = self._out
        if (
            out is None
            and self._writer_task is None
            and not isinstance(frame, tuple)
            and ws is not None
            and write_now(ws, frame)
        ):
            self.counters.messages_out += 1
            self.counters.bytes_out += len(frame)
            return True
        if out is None:
            out = self._out = SendQueue(
                self.send_queue_limit,
                self.send_queue_bytes,
                self.slow_consumer == "drop_oldest",
            )
        dropped = out.push(frame)
        if dropped is None:
            log.info(
                "session %s closed: slow consumer (%d frames, %d bytes queued)",
                self.id,
                len(out.frames),
                out.queued_bytes,
                extra=self.log_fields,
            )
            self.close(CloseCode.POLICY, "slow consumer")
            return False
        if dropped:
            self.counters.dropped_out += dropped
        if isinstance(frame, tuple):
            frame[1].then(self._on_stored)
        elif self._writer_task is None:
            self._write_ready(out)
        return True

    def _on_stored(self, _ok: bool) -> None:
        """A queued frame's store append is over: write what is ready."""
        out = self._out
        if out is not None and self._writer_task is None and self.state is SessionState.OPEN:
            self._write_ready(out)

    def _write_ready(self, out: SendQueue[Stored]) -> None:
        """Write the queued frames that are ready, in order, while the socket takes them
        (no task); hand the rest to the writer task when the socket is full."""
        frames, ws, counters = out.frames, self.ws, self.counters
        while frames:
            item = frames[0]
            if isinstance(item, tuple):
                frame, persisted = item
                if not persisted.done:
                    return  # `_on_stored` comes back for it
            else:
                frame = item
            if ws is None or not write_now(ws, frame):
                self._writer_task = asyncio.get_running_loop().create_task(self._writer(out))
                return
            out.pop()
            counters.messages_out += 1
            counters.bytes_out += len(frame)
        if self._out is out:
            self._out = None  # the next frame may be written at once

    @property
    def queued_out(self) -> int:
        """Frames waiting to be written."""
        out = self._out
        return 0 if out is None else len(out.frames)

    async def _writer(self, out: SendQueue[Stored]) -> None:
        """Write the queued frames, in order, then end (and let go of the queue)."""
        try:
            while out.frames:
                item = out.pop()
                if isinstance(item, tuple):
                    frame, persisted = item
                    if not persisted.done:
                        await persisted.wait()
                else:
                    frame = item
                assert self.ws is not None
                # At once when the socket takes it (e.g. a frame that waited for the store),
                # else with the library's flow control.
                if not write_now(self.ws, frame):
                    await self.ws.send(frame)
                self.counters.messages_out += 1
                self.counters.bytes_out += len(frame)
        except ConnectionClosed:
            # This writer stays (done): frames queue behind it until the session detaches
            # or ends, and none is written at once to a connection that is going away.
            return
        # Nothing waits (no await since the check): the next frame may be written at once.
        if self._writer_task is asyncio.current_task():
            self._writer_task = None
            if self._out is out:
                self._out = None

    async def flush(self, timeout: float) -> None:
        """Wait (bounded) until queued frames are written."""
        writer = self._writer_task
        out = self._out
        if writer is None and out is not None and self.state is SessionState.OPEN:
            # Frames waiting for the store: the writer task takes them from here on.
            writer = self._writer_task = asyncio.get_running_loop().create_task(self._writer(out))
        if writer is not None and not writer.done() and self.state is SessionState.OPEN:
            await asyncio.wait((writer,), timeout=timeout)

    # --- inbound ----------------------------------------------------------------------------

    async def put_inbound(self, msg: BrokerMessage, frame_id: str | int | None) -> None:
        """Queue a message for the component; waits while the queue is full."""
        await self._inbox.put(msg, frame_id)

    def offer_inbound(self, msg: BrokerMessage, frame_id: str | int | None) -> bool:
        """Queue a message for the component unless the queue is full (then False)."""
        return self._inbox.offer(msg, frame_id)

    def start(self, call_component: CallComponent) -> None:
        """Hand the client's messages to `call_component` from now on, one at a time (the
        first held back by `inbound_gate`, if set)."""
        self._inbox.start(self, call_component, self.inbound_gate, self.log_fields)

    def detach(self) -> None:
        """The connection is gone: stop writing, keep everything else for a resume (queued
        frames are in the history; the inbound worker still delivers what the client sent)."""
        transition(self, SessionState.DETACHED)
        self.ws = None
        self.stop_writer()

    def stop_writer(self) -> None:
        """Stop writing to the client (a detached session has none) and drop queued frames."""
        self.detached_at = time.monotonic()
        if self._writer_task is not None:
            self._writer_task.cancel()
            self._writer_task = None
        self._out = None

    def attach(self, ws: ServerConnection, binary: bool, remote_addr: str) -> None:
        """A resuming client's connection takes over the session."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.ws, self.binary, self.remote_addr = ws, binary, remote_addr
        transition(self, SessionState.OPEN)
        self.detached_at = None
        self.close_code, self.close_reason, self.resumable = None, "", False
        if self._writer_task is not None:
            self._writer_task.cancel()
            self._writer_task = None
        self._out = None

    async def finish_inbound(self, final: BrokerMessage | None, timeout: float) -> None:
        """Deliver what is queued, then `final` (e.g. the disconnect event), then stop the
        worker; all within `timeout` (after it, the worker is cancelled)."""
        await self._inbox.finish(final, timeout)

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
        if self._writer_task is not None:
            self._writer_task.cancel()
        self._inbox.cancel()

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
        return SessionInfo(
            session_id=self.id,
            component_id=self.component_id,
            link_name=self.link_name,
            remote_addr=self.remote_addr,
            connected_at=self.connected_at,
            subscriptions=sorted(self.subscriptions),
            state=listed_state(self.state),
            seq=self.seq,
            counters=self.counters.as_dict(),
        )
