"""The bench's stand-in component against the real provider and nats-server, and the
harness' process-tree CPU (a provider's worker processes count with it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from bench import gostandins, services
from bench.procs import cpu_since, tree, tree_cpu
from websockets.asyncio.client import connect

ECHOES = 20


def _need_go() -> str:
    go = gostandins.find_go()
    if go is None:
        if os.environ.get("CI"):
            pytest.fail("Go is required for the Go stand-ins in CI but is not installed")
        pytest.skip("Go is not installed: the bench uses its Python stand-ins here")
    return go


def test_the_go_stand_ins_own_tests_pass() -> None:
    """bench/go's unit tests (NATS parsing split anywhere, the echo's wRPC step by step)."""
    go = _need_go()
    result = subprocess.run(
        [go, "test", "."],
        cwd=gostandins.GO_DIR,
        capture_output=True,
        text=True,
        timeout=gostandins.BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("component", ["go", "fast", "sdk"])
async def test_the_stand_in_echoes_through_the_provider(component: str) -> None:
    if component == "go":
        _need_go()
    async with (
        services.ours(component=component) as stack,
        connect(stack.url, open_timeout=10) as ws,
    ):
        for i in range(ECHOES):
            await ws.send(json.dumps({"subject": "bench", "body": f"m{i}"}))
            echo = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert echo["body"] == f"m{i}", echo
    if component in ("go", "fast"):
        # Same NATS traffic per round trip as the SDK-based stand-in: 5 publishes (handshake,
        # result, end of results; the publish invocation, end of its parameters) and 4
        # deliveries (the invocation; handshake, result, end of results of publish).
        line = next(x for x in stack.children["component"].lines if x.startswith("counts "))
        counts = dict(field.split("=") for field in line.split()[1:])
        assert counts == {
            "published": str(5 * ECHOES),
            "delivered": str(4 * ECHOES),
            "handled": str(ECHOES),
        }


BURN = """
import sys, time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""
PARENT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {BURN!r}], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
print(child.stdout.readline().decode().strip(), flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


def test_tree_cpu_counts_what_child_processes_used() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        assert parent.stdout.readline().strip() == b"burnt"  # the child is alive, done burning
        pids = tree(parent.pid)
        assert pids[0] == parent.pid and len(pids) == 2
        used = tree_cpu(parent.pid)
        assert set(used) == set(pids)
        assert used[pids[1]] >= 0.25 > used[parent.pid]
        assert cpu_since({}, used) >= 0.25
        assert cpu_since(used, used) == 0
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)
