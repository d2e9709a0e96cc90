"""The event loop a provider runs on (provider config key `EVENT_LOOP`).

* `auto` (the default): uvloop where it is installed (a dependency of this package on
  Linux and macOS), the standard asyncio loop where it is not (Windows).
* `uvloop`: uvloop, and refuse to start where it is not installed.
* `asyncio`: the standard loop (a way out should uvloop ever misbehave somewhere).

uvloop runs the same code with its event loop and transports written in C: the provider
spends less of each message in the loop's own machinery. Nothing in the provider depends
on which loop runs it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from .errors import HostDataError
from .hostdata import config_value

#: The provider config key.
EVENT_LOOP_KEY = "EVENT_LOOP"
AUTO = "auto"
UVLOOP = "uvloop"
ASYNCIO = "asyncio"
CHOICES = (AUTO, UVLOOP, ASYNCIO)
DEFAULT = AUTO

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def event_loop_choice(config: Mapping[str, str]) -> str:
    """`EVENT_LOOP` from `config` (key matched without regard to case): `auto` when absent.
    Raises `HostDataError` naming the key and the value when it is none of the three."""
    value = config_value(config, EVENT_LOOP_KEY)
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
                f"here ({exc}); install it, or use {EVENT_LOOP_KEY}=auto"
            ) from None
        return None, "asyncio (uvloop is not installed)"
    factory: LoopFactory = uvloop.new_event_loop
    return factory, f"uvloop {getattr(uvloop, '__version__', '')}".rstrip()


def run(main: Coroutine[Any, Any, T], factory: LoopFactory | None) -> T:
    """`asyncio.run(main)` on a loop from `factory` (None: the standard loop)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
