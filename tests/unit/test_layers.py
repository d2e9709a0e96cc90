"""The layering docs/ARCHITECTURE.md describes: the decision modules do no I/O.

Each module below is imported alone in a fresh interpreter; none may load asyncio,
websockets or nats (directly, or through anything it imports, including the SDK). So a
decision module can only use other decision modules, and the adapters (listener, sessions,
server, client, cluster, moves, the SDK runtime) sit on top of them, never below.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: The sans-I/O core of the provider (docs/ARCHITECTURE.md, "Decisions").
DECISION_MODULES = [
    "admission",
    "auth",
    "backoff",
    "buswire",
    "client_policy",
    "closecodes",
    "config",
    "errors",
    "frames",
    "framesplit",
    "history",
    "ids",
    "inbound",
    "lifecycle",
    "links",
    "metrics",
    "ratelimit",
    "routing",
    "sendqueue",
    "session_counts",
    "settings",
    "topics",
]

IO_LIBRARIES = {"asyncio", "websockets", "nats"}

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2:]))))
"""


@pytest.mark.parametrize("module", DECISION_MODULES)
def test_a_decision_module_loads_no_io_library(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, f"provider.{module}", *sorted(IO_LIBRARIES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == [], f"provider.{module} loads {out.stdout.strip()}"


def test_the_probe_sees_an_adapter_load_asyncio() -> None:
    """The probe itself works: an adapter module is caught."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "provider.listener", *sorted(IO_LIBRARIES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "asyncio" in json.loads(out.stdout)
