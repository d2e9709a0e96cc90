"""wRPC over NATS, sans-I/O: subjects, sizes, chunking, the handshake rule, abandoned calls.

docs/PROTOCOL.md, section 4. Everything here decides; nothing here sends, waits or reads a
clock (callers pass `now`). `wrpc_serve` and `wrpc_invoke` carry the decisions out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import NotServedError, TransportError
from .later import Deferred, Later

PROTOCOL = "wrpc.0.0.1"
TRACE_HEADERS = ("traceparent", "tracestate")
STATUS_HEADER = "Status"
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_RESULT_TIMEOUT = 60.0
DEFAULT_PARAMS_TIMEOUT = 10.0
#: Largest parameter or result stream accepted (a peer declaring a 4 GiB list must not make
#: us buffer it). 64 MiB is far above any sensible message.
DEFAULT_MAX_STREAM_BYTES = 64 * 1024 * 1024
#: How long an invocation we gave up on is remembered for a late handshake. A wasmCloud
#: host's default execution limit for a component call is 10 minutes.
ABANDONED_MEMORY = 600.0
#: At most this many are remembered (the oldest go first); ~100 bytes each.
ABANDONED_MAX = 100_000


def invocation_subject(prefix: str, instance: str, function: str) -> str:
    """`{prefix}.wrpc.0.0.1.{instance}.{function}` (the instance segment omitted when empty)."""
    if instance:
        return f"{prefix}.{PROTOCOL}.{instance}.{function}"
    return f"{prefix}.{PROTOCOL}.{function}"


def span_name(subject: str) -> str:
    """`wasmcloud:messaging/consumer@0.2.0.publish` from an invocation subject."""
    return subject.partition(f".{PROTOCOL}.")[2] or subject


def header_block_len(headers: Mapping[str, str] | None) -> int:
    """Bytes of the NATS header block nats-py writes for `headers` (0 for None)."""
    if headers is None:
        return 0
    size = len(b"NATS/1.0\r\n") + 2
    for key, value in headers.items():
        size += len(key.strip().encode()) + 2 + len(value.strip().encode()) + 2
    return size


def split_chunks(data: bytes, first: int, rest: int) -> list[bytes]:
    """Split `data` into a first chunk of at most `first` bytes, then chunks of `rest`.

    Raises `TransportError` when either size is below one byte (the headers alone fill
    `max_payload`).
    """
    if first < 1 or rest < 1:
        raise TransportError("max_payload is too small for the headers of this message")
    chunks = [data[:first]]
    for start in range(first, len(data), rest):
        chunks.append(data[start : start + rest])
    return chunks


def handshake_reply(subject: str, msg_subject: str, status: str | None, reply: str | None) -> str:
    """The server inbox `Rs` named by the first answer to an invocation of `subject`.

    `msg_subject`, `status` (the NATS `Status` header, if any) and `reply` are that answer's.
    Raises `NotServedError` for status 503 (no responders), `TransportError` for any other
    non-200 status, results before a handshake, or a handshake without a reply subject.
    """
    if status == "503":
        raise NotServedError(f"nobody serves {subject} (no responders)")
    if status is not None and status != "200":
        raise TransportError(f"NATS status {status} for {subject}")
    if msg_subject.endswith(".results"):
        raise TransportError(f"{subject} sent results before its handshake")
    if not reply:
        raise TransportError(f"handshake from {subject} has no reply subject")
    return reply


@dataclass(frozen=True)
class InvocationContext:
    """What a served function learns about its caller (from the invocation headers)."""

    source_id: str
    link_name: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def trace_headers(self) -> dict[str, str]:
        """The W3C trace headers of the call, to pass on to calls made while serving it."""
        return {k: v for k, v in self.headers.items() if k.lower() in TRACE_HEADERS}


class ParamsDecoder(Protocol):
    """Decodes a complete parameter buffer, raising `NeedMoreBytes` while it is incomplete."""

    def __call__(self, buf: bytes, /) -> Any: ...


#: A served function: the encoded result tuple, or, when it has to wait, a `Later` or
#: `Deferred` of it (sent from the callback that sets it) or an awaitable of it.
Handler = Callable[
    [InvocationContext, Any], bytes | Later[bytes] | Deferred[bytes] | Awaitable[bytes]
]


class AbandonedCalls:
    """Invocations given up before their handshake, remembered for a late one.

    A key is remembered for `memory` seconds, and at most `limit` keys are (the oldest go
    first). Expired keys are dropped when a new one is remembered, so `take` may still find
    a key past its time: answering a late handshake then is harmless.
    """

    __slots__ = ("_forget_at", "limit", "memory")

    def __init__(self, memory: float = ABANDONED_MEMORY, limit: int = ABANDONED_MAX) -> None:
        self.memory = memory
        self.limit = limit
        #: key -> when to forget it; insertion order is age order.
        self._forget_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._forget_at)

    def __contains__(self, key: object) -> bool:
        return key in self._forget_at

    def remember(self, key: str, now: float) -> None:
        """Remember `key` from `now` on, first forgetting the expired and the oldest over
        the limit."""
        forget_at = self._forget_at
        while forget_at:
            oldest, when = next(iter(forget_at.items()))
            if when > now and len(forget_at) < self.limit:
                break
            del forget_at[oldest]
        forget_at[key] = now + self.memory

    def take(self, key: str) -> bool:
        """Forget `key`; whether it was remembered (its late handshake is then answered)."""
        return self._forget_at.pop(key, None) is not None
