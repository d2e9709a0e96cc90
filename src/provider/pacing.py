"""Spreading bursts of work over event-loop iterations.

When thousands of connections drop at once, their handlers all become ready in the same
loop iteration, and the loop runs every ready callback before it looks at sockets again: a
live session's ping (or message) waits behind all of them. A `Pacer` lets at most
`per_tick` callers through per loop iteration, in arrival order; the others wait on a
future, which costs nothing while they wait.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Pacer:
    """At most `per_tick` callers of `turn()` proceed per event-loop iteration."""

    def __init__(self, per_tick: int) -> None:
        self.per_tick = per_tick
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._passed = 0
        self._ticking = False

    async def turn(self) -> None:
        """Wait until this caller may proceed (at once when the loop is not busy)."""
        if not self._waiting and self._passed < self.per_tick:
            self._passed += 1
            self._tick_later()
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._tick_later()
        await future

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn."""
        return len(self._waiting)

    def _tick_later(self) -> None:
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        # A new iteration: let the next callers through.
        self._ticking = False
        self._passed = 0
        while self._waiting and self._passed < self.per_tick:
            future = self._waiting.popleft()
            if not future.done():  # a cancelled waiter gives its turn away
                future.set_result(None)
                self._passed += 1
        if self._waiting or self._passed:
            self._tick_later()
