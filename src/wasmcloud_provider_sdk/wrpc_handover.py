"""Handing a served invocation over to another process of the same provider. Sans-I/O.

With several instances of one provider (worker processes, or hosts), an export's
invocation lands on any of them (the queue group), but sometimes only one of them can
serve it (e.g. it holds the WebSocket session the call names). Instead of serving it by
asking the other instance and relaying its answer, the receiving instance hands the raw
invocation over: it re-publishes the invocation's data and headers, unchanged, to a
subject of the instance that can serve it, with two headers added (the export it was sent
to, and the caller's reply inbox). That instance serves it as if the caller had sent it
there: the handshake and the results go straight to the caller, and the receiving
instance does nothing more.

The handover is published with a reply subject of the receiving instance: when nobody
subscribes the target subject, nats-server answers there with status 503 (no responders),
and an instance that cannot take a handover answers there too; either way the receiving
instance then serves the invocation itself. An instance that takes it sends nothing there,
so the receiving instance forgets its pending handovers after `HANDOVER_MEMORY` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .wire import WireMsg

#: Added to a handed-over invocation: the export subject it was sent to...
EXPORT_HEADER = "wrpc-handover-export"
#: ...and the caller's reply inbox (the handover's own reply is the receiving instance's).
REPLY_HEADER = "wrpc-handover-reply"
#: A no-responders status comes back within one round trip to nats-server; a pending
#: handover is remembered this long for it.
HANDOVER_MEMORY = 5.0


@dataclass(frozen=True, slots=True)
class Invocation:
    """An invocation as it reached an export: its subject, data, headers, reply inbox."""

    subject: str
    data: bytes
    headers: Mapping[str, str] | None
    reply: str


def handover_headers(invocation: Invocation) -> dict[str, str]:
    """The headers of the handover of `invocation` (its own, plus the two markers)."""
    headers = dict(invocation.headers or {})
    headers[EXPORT_HEADER] = invocation.subject
    headers[REPLY_HEADER] = invocation.reply
    return headers


def is_handover(headers: Mapping[str, str] | None) -> bool:
    """Does a message with these headers carry a handed-over invocation?"""
    return headers is not None and EXPORT_HEADER in headers


def handed_over(data: bytes, headers: Mapping[str, str]) -> Invocation:
    """The invocation a handover carries, as the caller sent it (markers removed)."""
    rest = {k: v for k, v in headers.items() if k not in (EXPORT_HEADER, REPLY_HEADER)}
    return Invocation(headers[EXPORT_HEADER], data, rest or None, headers[REPLY_HEADER])


def handed_over_msg(data: bytes, headers: Mapping[str, str]) -> WireMsg:
    """`handed_over` as the message its caller sent (what the export is served from),
    built in one step: the taking instance's hot path."""
    rest = {k: v for k, v in headers.items() if k != EXPORT_HEADER and k != REPLY_HEADER}
    return WireMsg(headers[EXPORT_HEADER], headers[REPLY_HEADER], rest or None, data)


class PendingHandovers:
    """Handovers published and not yet known to be taken, by reply key, each with what is
    needed to serve it here after all. Forgotten `memory` seconds after they were made
    (expired entries are dropped when a new one is added)."""

    __slots__ = ("_entries", "memory")

    def __init__(self, memory: float = HANDOVER_MEMORY) -> None:
        self.memory = memory
        #: key -> (forget at, what to serve); insertion order is age order.
        self._entries: dict[str, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, entry: Any, now: float) -> None:
        """Remember `entry` under `key` from `now` on."""
        entries = self._entries
        while entries:
            oldest, (when, _) = next(iter(entries.items()))
            if when > now:
                break
            del entries[oldest]
        entries[key] = (now + self.memory, entry)

    def take(self, key: str) -> Any:
        """The entry of `key` (None if unknown or forgotten), forgetting it."""
        found = self._entries.pop(key, None)
        return None if found is None else found[1]
