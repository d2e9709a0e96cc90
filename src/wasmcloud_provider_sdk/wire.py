"""What the wRPC layer needs of a NATS connection: publish and subscribe, with no await.

The wRPC hot path (a handshake, parameter and result streams) is nine NATS messages per
round trip on each side. Each of them must cost little: no task, queue, future or timer per
message. `Wire` is the contract the wRPC layer is written against:

* `publish` queues the message for writing and returns (the bytes go out, coalesced with
  other publishes of the same loop iteration, without the caller awaiting anything);
* a subscription's callback is a plain function called with each `WireMsg` in the order
  the server sent them; it must not block (it may start a task when it has to wait).

`natswire.NatsWire` implements it with a minimal NATS protocol client of our own; a test
double is not needed: tests run it against a real nats-server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

#: The header nats-server sets on a status message (e.g. "503" for no responders).
STATUS = "Status"


class WireMsg:
    """One message delivered to a subscription. `reply` is "" when there is none;
    `headers` is None when the message had no header block; a status message (no
    responders: status "503") has the code in `headers["Status"]` and empty data. The
    headers are read-only (a parser may hand the same mapping to many messages)."""

    __slots__ = ("data", "headers", "reply", "subject")

    def __init__(
        self, subject: str, reply: str, headers: Mapping[str, str] | None, data: bytes
    ) -> None:
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.data = data

    def __repr__(self) -> str:
        return f"WireMsg({self.subject!r}, reply={self.reply!r}, {len(self.data)} bytes)"


MsgCallback = Callable[[WireMsg], None]


class Wire(Protocol):
    """A NATS connection as the wRPC layer uses it (see the module docstring)."""

    @property
    def max_payload(self) -> int:
        """The server's max_payload (header block included)."""
        ...

    @property
    def is_connected(self) -> bool:
        """True while connected (False while reconnecting or after close)."""
        ...

    def new_inbox(self) -> str:
        """A fresh, unguessable inbox subject prefix (`_INBOX.<random>`)."""
        ...

    def publish(
        self,
        subject: str,
        data: bytes,
        reply: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one message; raises `LatticeUnavailable` when not connected."""
        ...

    def subscribe(self, subject: str, callback: MsgCallback, queue: str = "") -> int:
        """Subscribe now (the SUB is queued like a publish); returns the subscription id."""
        ...

    def unsubscribe(self, sid: int) -> None:
        """End a subscription (no further callbacks once this returns)."""
        ...

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until the server has processed everything queued so far (PING/PONG)."""
        ...

    async def close(self, timeout: float = 2.0) -> None:
        """Write what is pending and close (a no-op for a connection the caller owns)."""
        ...
