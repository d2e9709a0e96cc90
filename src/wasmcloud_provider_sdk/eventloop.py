"""The event loop a provider runs on (provider config key `EVENT_LOOP`).

* `asyncio` (the default): the standard loop.
* `uvloop`: uvloop, and refuse to start where it is not installed (it is a dependency of
  this package on Linux and macOS, not on Windows).
* `auto`: uvloop where it is installed, the standard loop where it is not.

uvloop runs the same code with its event loop and transports written in C. Measured here it
takes a few per cent off a round trip's CPU but makes a broadcast to many sessions slower:
its transports write at the end of the loop iteration, so a fan-out's first frame leaves
only once the last one is framed. Hence the standard loop by default, uvloop for those
whose traffic is mostly request and reply. Nothing in the provider depends on which loop
runs it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from .errors import HostDataError

#: The provider config key.
EVENT_LOOP_KEY = "EVENT_LOOP"
AUTO = "auto"
UVLOOP = "uvloop"
ASYNCIO = "asyncio"
CHOICES = (AUTO, UVLOOP, ASYNCIO)
DEFAULT = ASYNCIO

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def event_loop_choice(config: Mapping[str, str]) -> str:
    """`EVENT_LOOP` from `config` (key matched without regard to case): `asyncio` when absent.
    Raises `HostDataError` naming the key and the value when it is none of the three."""
    value = next((v for k, v in config.items() if k.strip().upper() == EVENT_LOOP_KEY), None)
    if value is None:
        return DEFAULT
    choice = str(value).strip().lower()
    if choice not in CHOICES:
        raise HostDataError(
            f"invalid provider config {EVENT_LOOP_KEY}={value!r}: one of {', '.join(CHOICES)}"
        )
    return choice


def loop_factory(choice: str) -> tuple[LoopFactory | None, str]:
    """The factory of the loop `choice` asks for (None: the standard loop) and its name for
    the log. Raises `HostDataError` for `uvloop` where uvloop cannot be imported."""
    if choice == ASYNCIO:
        return None, "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == UVLOOP:
            raise HostDataError(
                f"provider config {EVENT_LOOP_KEY}=uvloop, but uvloop cannot be imported "
                f"here ({exc}); install it, or use {EVENT_LOOP_KEY}=asyncio"
            ) from None
        return None, "asyncio (uvloop is not installed)"
    factory: LoopFactory = uvloop.new_event_loop
    return factory, f"uvloop {getattr(uvloop, '__version__', '')}".rstrip()


def run(main: Coroutine[Any, Any, T], factory: LoopFactory | None) -> T:
    """`asyncio.run(main)` on a loop from `factory` (None: the standard loop)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
