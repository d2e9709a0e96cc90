"""Rate limiting: token buckets. Sans-I/O: the caller passes the time.

A session has up to two buckets (messages/s with a burst, bytes/s); the listener has one per
client IP for new connections. `allow(cost, now)` takes `cost` tokens if they are there.
"""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; starts full."""

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def allow(self, cost: float, now: float) -> bool:
        """Take `cost` tokens if available (a cost above the burst is never allowed)."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now
        if cost <= self._tokens:
            self._tokens -= cost
            return True
        return False


class SessionLimiter:
    """`RATE_LIMIT_MSGS` / `RATE_LIMIT_BURST` / `RATE_LIMIT_BYTES` for one session, and how
    many times in a row it was exceeded (for `RATE_LIMIT_POLICY=close`)."""

    __slots__ = ("_bytes", "_msgs", "strikes")

    def __init__(
        self, msgs: float | None, burst: float | None, bytes_per_s: float | None, now: float
    ) -> None:
        self._msgs = TokenBucket(msgs, burst or 2 * msgs, now) if msgs else None
        # A byte bucket holds one second's worth, at least one maximal message's worth.
        self._bytes = TokenBucket(bytes_per_s, bytes_per_s, now) if bytes_per_s else None
        self.strikes = 0

    def allow(self, size: int, now: float) -> bool:
        """Account one message of `size` bytes; False when it exceeds a limit."""
        ok = True
        if self._msgs is not None and not self._msgs.allow(1, now):
            ok = False
        if ok and self._bytes is not None and not self._bytes.allow(size, now):
            ok = False
        self.strikes = 0 if ok else self.strikes + 1
        return ok


class ConnectionRateLimiter:
    """New connections per client IP (`CONNECT_RATE_LIMIT` per second, burst 2x), for at most
    `max_ips` addresses (least recently seen forgotten first), so memory stays bounded."""

    def __init__(self, rate: float, max_ips: int = 100_000) -> None:
        self.rate = rate
        self.max_ips = max_ips
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, ip: str, now: float) -> bool:
        """May `ip` open one more connection now?"""
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = TokenBucket(self.rate, max(1.0, 2 * self.rate), now)
            self._buckets[ip] = bucket
            if len(self._buckets) > self.max_ips:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(ip)
        return bucket.allow(1, now)
