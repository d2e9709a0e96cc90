"""A headline round that completed no round trip is reported with the processes' stderr."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from bench import scenarios, services


def test_a_round_without_round_trips_prints_the_processes_last_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [f"line {i}" for i in range(scenarios.STALL_LINES + 5)]
    children = cast(dict[str, Any], {"component": SimpleNamespace(lines=lines)})
    stack = services.Stack("ours", "ws://x", "ws", {}, "", children)
    scenarios._report_stall(stack, 3)
    out = capsys.readouterr().out
    assert "WARNING: ours completed no round trip in headline round 4" in out
    assert "component: line 24" in out and "component: line 5" in out
    assert "component: line 4\n" not in out
