"""Picking the event loop (`EVENT_LOOP`): the value, the factory, running on it."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

from wasmcloud_provider_sdk.errors import HostDataError
from wasmcloud_provider_sdk.eventloop import event_loop_choice, loop_factory, run

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_event_loop_choice() -> None:
    assert event_loop_choice({}) == "auto"
    assert event_loop_choice({"EVENT_LOOP": "auto"}) == "auto"
    assert event_loop_choice({"EVENT_LOOP": "uvloop"}) == "uvloop"
    assert event_loop_choice({" event_loop ": " AsyncIO "}) == "asyncio"
    for bad in ("fast", "", "uv"):
        with pytest.raises(HostDataError, match=f"invalid provider config EVENT_LOOP={bad!r}"):
            event_loop_choice({"EVENT_LOOP": bad})


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_is_the_standard_loop() -> None:
    factory, name = loop_factory("asyncio")
    assert (factory, name) == (None, "asyncio")
    assert run(_loop_module(), factory).startswith("asyncio")


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed here")
@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_auto_and_uvloop_run_on_uvloop_where_installed(choice: str) -> None:
    factory, name = loop_factory(choice)
    assert factory is not None and name.startswith("uvloop")
    assert run(_loop_module(), factory).startswith("uvloop")


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    factory, name = loop_factory("auto")
    assert factory is None and name == "asyncio (uvloop is not installed)"
    with pytest.raises(HostDataError, match="EVENT_LOOP=uvloop, but uvloop cannot be imported"):
        loop_factory("uvloop")
