"""The session table's bookkeeping, without I/O: sessions per client address, how many
detached sessions an endpoint keeps, and how long ended session ids are remembered.

`session_table.SessionTable` applies these; they are plain data so they are tested alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

#: How long, and how many, ids of sessions that ended here are remembered, so a publish to
#: one is refused at once ("no such session") without asking the other instances, and a
#: closed session is never moved in again from the store.
ENDED_MEMORY = 600.0
ENDED_MAX = 20_000

S = TypeVar("S")


def address_of(remote_addr: str) -> str:
    """The client address of a `host:port` peer name (`[v6]:port` too); "" when unknown."""
    return remote_addr.rpartition(":")[0].strip("[]")


class AddressCounts:
    """Sessions per client address on one endpoint (connected or detached), for
    MAX_SESSIONS_PER_IP; each session is counted once, under the address it came from."""

    def __init__(self) -> None:
        #: Address -> how many sessions it has here (absent: none).
        self.per_ip: dict[str, int] = {}
        self._ip_of: dict[str, str] = {}

    def count(self, session_id: str, ip: str) -> None:
        """Count `session_id` under `ip` (no-op for an unknown address or a counted id)."""
        if ip and session_id not in self._ip_of:
            self._ip_of[session_id] = ip
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def uncount(self, session_id: str) -> None:
        """The session no longer counts (no-op when it did not)."""
        ip = self._ip_of.pop(session_id, None)
        if ip is not None:
            left = self.per_ip.get(ip, 1) - 1
            if left > 0:
                self.per_ip[ip] = left
            else:
                self.per_ip.pop(ip, None)

    def ip_of(self, session_id: str) -> str | None:
        """The address `session_id` is counted under (None: not counted)."""
        return self._ip_of.get(session_id)

    def of(self, ip: str) -> int:
        """How many sessions `ip` has."""
        return self.per_ip.get(ip, 0)


def beyond_bound(detached: dict[str, S], bound: int) -> list[S]:
    """Take the oldest entries out of `detached` (insertion order) until at most `bound`
    are left; returns them, oldest first (MAX_DETACHED_SESSIONS)."""
    out: list[S] = []
    while len(detached) > bound:
        oldest = next(iter(detached))
        out.append(detached.pop(oldest))
    return out


def remember_ended(ended: dict[str, float], session_id: str, now: float) -> None:
    """Add `session_id` to `ended` (id -> when, oldest first), first dropping ids older than
    ENDED_MEMORY, and the oldest while ENDED_MAX are kept."""
    while ended:
        oldest, at = next(iter(ended.items()))
        if now - at < ENDED_MEMORY and len(ended) < ENDED_MAX:
            break
        del ended[oldest]
    ended[session_id] = now


def first_detached_of(
    detached: dict[str, S],
    ip: str,
    ip_of: Callable[[str], str | None],
    waiting: Callable[[S], bool],
) -> S | None:
    """The oldest detached session counted under `ip` that is still waiting for its client
    (not being moved or resumed); None when `ip` has none."""
    for sid, session in detached.items():
        if ip_of(sid) == ip and waiting(session):
            return session
    return None
