"""`Later` (SDK) and `Stored` (the history store's outcome): callbacks run synchronously,
once, in order; a failing callback does not stop the others."""

from __future__ import annotations

import asyncio
import logging

import pytest

from provider.stored import Stored
from wasmcloud_provider_sdk import Deferred, Later


def test_callbacks_run_in_order_when_set_and_at_once_after() -> None:
    later: Later[int] = Later()
    seen: list[str] = []
    later.then(lambda v: seen.append(f"a{v}"))
    later.then(lambda v: seen.append(f"b{v}"))
    assert seen == [] and not later.done
    later.set(1)
    assert seen == ["a1", "b1"] and later.value == 1
    later.set(2)  # set once
    later.then(lambda v: seen.append(f"c{v}"))
    assert seen == ["a1", "b1", "c1"]


def test_a_failing_callback_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    later: Later[int] = Later()
    seen: list[int] = []

    def boom(_v: int) -> None:
        raise RuntimeError("boom")

    later.then(boom)
    later.then(seen.append)
    with caplog.at_level(logging.ERROR):
        later.set(7)
    assert seen == [7]
    assert "a callback waiting for a value failed" in caplog.text


def test_map_and_value_before_set() -> None:
    later: Later[int] = Later()
    doubled = later.map(lambda v: v * 2)
    with pytest.raises(RuntimeError):
        _ = doubled.value
    later.set(21)
    assert doubled.value == 42


async def test_wait_gives_a_future() -> None:
    later: Later[str] = Later()
    future = later.wait()
    assert not future.done()
    later.set("x")
    assert await asyncio.wait_for(future, 1.0) == "x"


def test_stored_ok_only_when_stored() -> None:
    stored = Stored()
    assert not stored.ok
    stored.set(True)
    assert stored.ok
    assert not Stored.not_stored().ok and Stored.not_stored().done


async def test_a_deferred_gives_its_value_when_the_gate_is_set() -> None:
    gate: Later[bool] = Later()
    deferred = Deferred(gate, 2)
    doubled = deferred.map(lambda v: v * 2)
    got: list[int] = []
    deferred.then(got.append)
    doubled.then(got.append)
    waiting = asyncio.ensure_future(doubled.wait())
    assert got == []
    gate.set(False)  # the gate's value is not what waits on it gets
    assert got == [2, 4]
    assert await asyncio.wait_for(waiting, 1.0) == 4
    deferred.then(got.append)  # the gate is set: at once
    assert got == [2, 4, 2]
