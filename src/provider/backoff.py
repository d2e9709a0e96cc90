"""Reconnection delays: exponential backoff with full jitter. Sans-I/O.

attempt n (from 0) waits a random time in [0, min(max, min * 2**n)] ("full jitter": spreads
reconnecting clients over the whole window, so a restarted server is not hit by all of them at
once). `jitter="none"` waits exactly the cap (useful to reason about, and to test).
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Yields the next delay; `reset()` after a connection proved stable."""

    def __init__(
        self,
        minimum: float,
        maximum: float,
        jitter: str = "full",
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.jitter = jitter
        self.attempt = 0
        self._rand = rand

    def cap(self, attempt: int) -> float:
        """The largest delay attempt `attempt` may wait."""
        return float(min(self.maximum, self.minimum * (2 ** min(attempt, 62))))

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        cap = self.cap(self.attempt)
        self.attempt += 1
        if self.jitter == "none":
            return cap
        return cap * self._rand()

    def reset(self) -> None:
        """Back to the first step."""
        self.attempt = 0
