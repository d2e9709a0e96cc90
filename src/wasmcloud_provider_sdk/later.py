"""`Later`: a value that comes later, delivered by callback in the same loop step.

A served handler that has to wait for something driven by callbacks (e.g. a store's
acknowledgement arriving on a NATS subscription) can return a `Later` instead of an
awaitable: the wRPC layer sends the result from inside the callback that sets it, so the
answer goes out with the other writes of that loop step. An `asyncio.Future` would cost a
loop wake-up per hop (its callbacks are scheduled, not called), and a coroutine a task.
Sans-I/O, apart from `wait` for the rare caller that has to await one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")


class Later(Generic[T]):
    """A value set once (`set`); the callbacks registered with `then` are called with it at
    that moment, synchronously, in the order registered (at once when it is set already).
    A failing callback is logged; the others still run."""

    __slots__ = ("_callbacks", "_value", "done")

    def __init__(self) -> None:
        self.done = False
        self._value: T | None = None
        self._callbacks: list[Callable[[T], None]] | None = None

    @property
    def value(self) -> T:
        """The value (RuntimeError before it is set)."""
        if not self.done:
            raise RuntimeError("the value is not set yet")
        return self._value  # type: ignore[return-value]

    def then(self, callback: Callable[[T], None]) -> None:
        """Call `callback(value)` when the value is set (now, if it is)."""
        if self.done:
            _call(callback, self._value)  # type: ignore[arg-type]
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def set(self, value: T) -> None:
        """Set the value and run the callbacks (a second `set` is ignored)."""
        if self.done:
            return
        self.done = True
        self._value = value
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            for callback in callbacks:
                try:  # inline, not `_call`: this runs once per waiter on hot paths
                    callback(value)
                except Exception:
                    log.exception("a callback waiting for a value failed")

    def map(self, fn: Callable[[T], U]) -> Later[U]:
        """A `Later` of `fn(value)`, set when this one is."""
        out: Later[U] = Later()
        self.then(lambda value: out.set(fn(value)))
        return out

    def wait(self) -> asyncio.Future[T]:
        """A future of the value, for code that has to await it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def resolve(value: T) -> None:
            if not future.done():
                future.set_result(value)

        self.then(resolve)
        return future


class Deferred(Generic[T]):
    """A value known now, to be used once `gate` is set (whatever the gate's own value):
    e.g. a publish's answer, given once its message is stored. What a `Later` chained to
    the gate would do (`gate.map(lambda _: value)`), without a `Later` and a callback list
    of its own per value: on a hot path where thousands of answers wait for one gate."""

    __slots__ = ("gate", "value")

    def __init__(self, gate: Later[Any], value: T) -> None:
        self.gate = gate
        self.value = value

    def then(self, callback: Callable[[T], None]) -> None:
        """Call `callback(value)` when the gate is set (now, if it is)."""
        value = self.value
        self.gate.then(lambda _gate_value: callback(value))

    def map(self, fn: Callable[[T], U]) -> Deferred[U]:
        """`fn(value)` (computed now), behind the same gate."""
        return Deferred(self.gate, fn(self.value))

    async def wait(self) -> T:
        """The value, once the gate is set."""
        await self.gate.wait()
        return self.value


def _call(callback: Callable[[T], None], value: T) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("a callback waiting for a value failed")
