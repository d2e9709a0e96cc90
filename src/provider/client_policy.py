"""Client mode's decisions, sans-I/O: the connection's states, why a connect failed and
whether retrying can help, the outbound buffer, and what a frame from the server is.

`client.OutboundClient` carries these out over a socket; nothing here imports asyncio,
websockets or nats, so every rule is tested without a connection (tests/unit/).

A connection is in one of the `ClientState`s; `TRANSITIONS` says which may follow which, and
`transition` is the only way to change it (an illegal change raises `IllegalClientTransition`:
a bug, never the server's doing)::

    CONNECTING ──► CONNECTED ──► WAITING ──► CONNECTING ...   (reconnect with backoff)
        │  │           │  │         │
        │  └──► WAITING │  └──► FAILED (lost, RECONNECT=false)
        └──► FAILED (401/403, untrusted certificate, bad URI; or RECONNECT=false)
    any state ──► CLOSED (link deleted, reconfigured, provider shutting down)

The delay before the next attempt is `backoff.Backoff` (exponential, full jitter).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from wasmcloud_provider_sdk.messaging import BrokerMessage

from . import frames
from .errors import FrameError, IllegalStateChange
from .settings import ClientSettings

#: Upgrade answers no retry can change: the server refused our credentials.
PERMANENT_HTTP_STATUSES = frozenset({401, 403})


class ClientState(enum.Enum):
    """Where an outbound connection is in its life cycle."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # backing off before the next attempt
    FAILED = "failed"  # permanent error: no more attempts
    CLOSED = "closed"


C = ClientState

#: Every legal change of state: `TRANSITIONS[current]` are the states that may follow.
TRANSITIONS: Mapping[ClientState, frozenset[ClientState]] = {
    # the upgrade succeeded; it failed (wait, or give up); the link went away meanwhile.
    C.CONNECTING: frozenset({C.CONNECTED, C.WAITING, C.FAILED, C.CLOSED}),
    # the connection was lost (wait, or give up with RECONNECT=false); the link went away.
    C.CONNECTED: frozenset({C.WAITING, C.FAILED, C.CLOSED}),
    # the delay is over; the link went away meanwhile.
    C.WAITING: frozenset({C.CONNECTING, C.CLOSED}),
    C.FAILED: frozenset({C.CLOSED}),
    C.CLOSED: frozenset(),
}


class IllegalClientTransition(IllegalStateChange):
    """A connection was asked to change to a state that may not follow its current one."""

    def __init__(self, current: ClientState, target: ClientState) -> None:
        super().__init__("a client connection", current, target, TRANSITIONS[current])


class HasClientState(Protocol):
    """Anything with a client connection state (an `OutboundClient`)."""

    state: ClientState


def transition(holder: HasClientState, target: ClientState) -> None:
    """Change `holder.state` to `target`; raises IllegalClientTransition if it may not follow."""
    current = holder.state
    if target not in TRANSITIONS[current]:
        raise IllegalClientTransition(current, target)
    holder.state = target


def listed_state(state: ClientState, connects: int) -> str:
    """The `state` `list_ws_clients` shows: `connecting` before the first connect,
    `reconnecting` after one, else the state's own name."""
    if state is C.CONNECTED or state is C.FAILED or state is C.CLOSED:
        return str(state.value)
    return "reconnecting" if connects else "connecting"


def describe(name: str, state: ClientState, last_error: str) -> str:
    """One line for health and logs; the error only while it matters (waiting, failed)."""
    text = f"{name}: {state.value}"
    if (state is C.WAITING or state is C.FAILED) and last_error:
        text += f" ({last_error})"
    return text


# --- connecting -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """Why an attempt to connect failed, and whether another attempt can help."""

    message: str
    #: Retrying cannot help (credentials refused, untrusted certificate, bad URI).
    permanent: bool = False


def upgrade_refused(status: int) -> ConnectFailure:
    """The server answered the upgrade with HTTP `status` instead of 101."""
    if status in PERMANENT_HTTP_STATUSES:
        return ConnectFailure(f"the server refused the upgrade with HTTP {status}", True)
    return ConnectFailure(f"the server answered the upgrade with HTTP {status}")


def certificate_refused(verify_message: str) -> ConnectFailure:
    """The server's TLS certificate did not verify (permanent: say how to trust it)."""
    return ConnectFailure(
        f"TLS certificate verification failed: {verify_message} "
        "(trust a private CA with TLS_CA or TLS_CA_FILE)",
        True,
    )


def invalid_uri(safe_uri: str) -> ConnectFailure:
    """The URI cannot be connected to at all."""
    return ConnectFailure(f"invalid URI {safe_uri}", True)


def handshake_timeout(connect_timeout: float) -> ConnectFailure:
    """No completed opening handshake within CONNECT_TIMEOUT_SEC."""
    return ConnectFailure(f"no completed opening handshake within {connect_timeout:g}s")


def transport_failure(text: str, type_name: str) -> ConnectFailure:
    """A socket or handshake error: worth another attempt."""
    return ConnectFailure(text or type_name)


def unexpected_failure(type_name: str) -> ConnectFailure:
    """Anything else (e.g. a host name IDNA cannot encode): retried, and logged in full."""
    return ConnectFailure(f"unexpected error: {type_name}")


def connect_headers(settings: ClientSettings) -> list[tuple[str, str]]:
    """The upgrade request's extra headers: HEADERS, then the AUTH_TOKEN as a bearer token."""
    headers = list(settings.headers)
    if settings.auth_token:
        headers.append(("Authorization", f"Bearer {settings.auth_token}"))
    return headers


def gave_up_reason(last_error: str) -> str:
    """Why a connection with RECONNECT=false is FAILED after its one attempt ended."""
    return last_error or "disconnected (RECONNECT=false)"


# --- outbound -------------------------------------------------------------------------------


def refusal(state: ClientState, last_error: str, safe_uri: str) -> str | None:
    """Why nothing can be queued in `state` (a failed or closed connection), else None."""
    if state is C.FAILED:
        return f"connection to {safe_uri} failed: {last_error}"
    if state is C.CLOSED:
        return f"connection to {safe_uri} is closed"
    return None


Frame = str | bytes


class OutboundBuffer:
    """The frames for the server, in order: written while connected, kept while not.

    Bounded by OUTBOUND_BUFFER (messages; 0: nothing kept while disconnected) and
    OUTBOUND_BUFFER_BYTES. When full, OUTBOUND_OVERFLOW says what gives: `error` refuses the
    new frame, `drop_oldest` drops queued ones (counted in `dropped`). A frame leaves only
    once written (`written`), so one the connection dropped under is sent after reconnect.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.frames: deque[Frame] = deque()
        self.bytes = 0
        #: Frames dropped to make room (OUTBOUND_OVERFLOW=drop_oldest).
        self.dropped = 0
        self._limit = settings.outbound_buffer
        self._limit_bytes = settings.outbound_buffer_bytes
        self._drop_oldest = settings.outbound_overflow == "drop_oldest"
        self._uri = settings.safe_uri

    def __len__(self) -> int:
        return len(self.frames)

    def offer(self, frame: Frame, connected: bool) -> str | None:
        """Queue `frame`; None when kept, else why not (the component's `Err`)."""
        limit = self._limit
        if not connected and limit == 0:
            return f"not connected to {self._uri} (OUTBOUND_BUFFER=0)"
        size = len(frame)
        if size > self._limit_bytes:
            return f"message of {size} bytes exceeds OUTBOUND_BUFFER_BYTES"
        queue = self.frames
        while len(queue) >= max(limit, 1) or (queue and self.bytes + size > self._limit_bytes):
            if not self._drop_oldest:
                why = "while disconnected from" if not connected else "; not read fast enough by"
                return f"outbound buffer full ({limit} messages) {why} {self._uri}"
            self.bytes -= len(queue.popleft())
            self.dropped += 1
        queue.append(frame)
        self.bytes += size
        return None

    def adopt(self, old: OutboundBuffer) -> None:
        """Take over `old`'s unsent frames, after these (the connection this one replaces)."""
        self.frames.extend(old.frames)
        self.bytes += old.bytes
        old.frames.clear()
        old.bytes = 0

    def written(self, frame: Frame) -> None:
        """`frame`, the head, was written: it leaves (unless discarded meanwhile)."""
        if self.frames and self.frames[0] is frame:
            self.frames.popleft()
            self.bytes -= len(frame)

    def discard(self, frame: Frame, writing: bool) -> None:
        """Take back `frame` (this very object) if not sent yet; the head stays while
        `writing` (it may be on its way right now)."""
        for index, queued in enumerate(self.frames):
            if queued is frame:
                if index == 0 and writing:
                    return
                del self.frames[index]
                self.bytes -= len(frame)
                return


def encode_outbound(
    settings: ClientSettings, subject: str, body: bytes, reply_to: str | None
) -> Frame:
    """A publish as a frame: the envelope, or with FORMAT=raw the body itself (a text frame
    when it is UTF-8, unless RAW_BINARY)."""
    if settings.format == "raw":
        if not settings.raw_binary:
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return body
    return frames.encode_message(subject, body, reply_to)


# --- inbound --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ignored:
    """A frame that is not for the component, and not wrong (a control frame, an ack)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame from the server that cannot be read (counted and logged, then dropped)."""

    code: str
    message: str


def decode_inbound(
    settings: ClientSettings, raw: bytes, binary: bool
) -> BrokerMessage | Ignored | BadFrame:
    """What a frame from the server is: a message (for the component, or the answer to a
    request: its subject is the reply token), something to ignore, or a bad frame."""
    if settings.format == "raw":
        return BrokerMessage(settings.subject, raw, None)
    try:
        frame = frames.decode_frame(
            raw, binary, allow_reserved=True, max_body=settings.max_message_bytes
        )
    except FrameError as exc:
        if exc.code == frames.UNKNOWN_TYPE:
            return Ignored(exc.message)
        return BadFrame(exc.code, exc.message)
    if not isinstance(frame, frames.InboundMessage):
        return Ignored()
    return BrokerMessage(frame.subject, frame.body, frame.reply_to)
