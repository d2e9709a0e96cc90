"""Which stand-ins the bench runs (Go where installed, Python otherwise or when asked), and
that the report names them."""

from __future__ import annotations

import sys

import pytest
from bench import gostandins, report, services

META = {
    "date": "d",
    "command": "python -m bench all",
    "machine": {},
    "server_cores": "0",
    "generator_cores": "1",
    "workers": 1,
    "payload": 64,
    "duration_s": 5.0,
    "warmup_s": 2.0,
}


def test_python_stand_ins_when_asked_or_without_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gostandins, "find_go", lambda: "/usr/bin/go")
    monkeypatch.delenv(gostandins.FORCE_ENV, raising=False)
    assert gostandins.stand_ins() == "go"
    assert services.resolve_component("auto") == "go"
    monkeypatch.setattr(gostandins, "binary", lambda: "/tmp/bench-echo")
    assert services.component_args("auto", "nats://n") == [
        "/tmp/bench-echo",
        "component",
        "nats://n",
        services.LATTICE,
        services.COMPONENT_ID,
        services.PROVIDER_ID,
    ]
    assert services.responder_args("nats://n") == ["/tmp/bench-echo", "nats-echo", "nats://n"]
    # --component fast: the component only.
    assert services.component_args("fast", "nats://n")[1:] == [
        "-m",
        "bench.echo_component",
        "nats://n",
    ]

    monkeypatch.setenv(gostandins.FORCE_ENV, "python")
    assert gostandins.stand_ins() == "python"
    assert services.resolve_component("auto") == "fast"
    assert services.component_args("auto", "nats://n") == [
        sys.executable,
        "-m",
        "bench.echo_component",
        "nats://n",
    ]
    assert services.responder_args("nats://n")[1:] == [
        "-m",
        "bench.baselines",
        "nats-echo",
        "nats://n",
    ]

    monkeypatch.delenv(gostandins.FORCE_ENV)
    monkeypatch.setattr(gostandins, "find_go", lambda: None)
    assert gostandins.stand_ins() == "python" and services.resolve_component("auto") == "fast"


def test_the_report_names_the_stand_ins() -> None:
    go = report.markdown({}, {**META, "component": "go", "responder": "go"}, [])
    assert "| stand-ins | echo component: Go (`bench/go`); baselines' echo responder: Go" in go
    py = report.markdown({}, {**META, "component": "fast", "responder": "python"}, [])
    assert "echo component: Python (`bench/echo_component.py`)" in py
    assert "responder: Python (`bench/baselines.py nats-echo`)" in py
