"""Runs the Node.js load generator (bench/js/loadgen.mjs) and measures CPU around it.

The generator is npm `ws` in worker threads, pinned to `GENERATOR_CORES`; `npm ci` installs
bench/js/node_modules on first use. CPU of the generator and of every watched server
process is sampled at the generator's START and END lines, so the figures cover exactly
the measured window; each watched process counts with its descendants (a provider's worker
processes).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import GENERATOR_CORES, cpu_since, pinned_to, switches_since, tree_cpu, tree_switches

JS_DIR = Path(__file__).resolve().parent / "js"


class GeneratorError(RuntimeError):
    """The load generator failed or could not be installed."""


def node_executable() -> str:
    """`node`, with bench/js/node_modules installed (`npm ci`) when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise GeneratorError("Node.js (node and npm) is needed for the load generator")
    if not (JS_DIR / "node_modules" / "ws" / "package.json").is_file():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise GeneratorError(f"npm ci in {JS_DIR} failed:\n{result.stderr}")
    return node


async def _start(config: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        node_executable(),
        str(JS_DIR / "loadgen.mjs"),
        json.dumps(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=pinned_to(GENERATOR_CORES),  # type: ignore[arg-type]
    )


async def _line(proc: asyncio.subprocess.Process, timeout: float) -> str:
    assert proc.stdout is not None and proc.stderr is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not raw:
        await proc.wait()
        err = (await proc.stderr.read()).decode(errors="replace")
        raise GeneratorError(f"load generator exited ({proc.returncode}): {err[-2000:]}")
    return raw.decode().strip()


async def round_trips(config: dict[str, Any], watched: dict[str, int]) -> dict[str, Any]:
    """One closed-loop (or fixed-rate) run; returns throughput, latency and CPU per process."""
    proc = await _start({"mode": "rt", **config})
    timeout = 120 + config.get("clients", 1) / 50
    try:
        while (line := await _line(proc, timeout)) != "START":
            pass
        pids = {**watched, "generator": proc.pid}
        before = {name: tree_cpu(pid) for name, pid in pids.items()}
        switches_before = {name: tree_switches(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        while not (line := await _line(proc, timeout)).startswith("END "):
            pass
        wall = time.monotonic() - t0
        after = {name: tree_cpu(pid) for name, pid in pids.items()}
        switches_after = {name: tree_switches(pid) for name, pid in pids.items()}
        used = {name: cpu_since(before[name], after[name]) for name in pids}
        result: dict[str, Any] = json.loads(line[4:])
        result["cpu_pct"] = {name: round(used[name] / wall * 100, 1) for name in pids}
        # CPU cost per round trip: steadier than msgs/s when other work shares the machine.
        count = max(int(result["count"]), 1)
        result["cpu_us_per_msg"] = {name: round(used[name] / count * 1e6, 1) for name in pids}
        result["processes"] = {name: len(after[name]) for name in pids}
        # How often each was switched out per round trip (it ran out of work, or was
        # preempted): on a virtual machine each costs CPU (python -m bench.wakecost).
        result["switches_per_msg"] = {
            name: round(switches_since(switches_before[name], switches_after[name]) / count, 3)
            for name in pids
        }
        await asyncio.wait_for(proc.wait(), 30)
        return result
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@dataclass
class Holder:
    """Connections held open by the generator (idle sessions, broadcast receivers)."""

    proc: asyncio.subprocess.Process
    ok: int
    failed: int
    error: str | None

    @classmethod
    async def open(cls, config: dict[str, Any]) -> Holder:
        proc = await _start({"mode": "hold", **config})
        timeout = 120 + config.get("clients", 1) / 100
        try:
            while not (line := await _line(proc, timeout)).startswith("CONNECTED "):
                pass
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        info = json.loads(line[len("CONNECTED ") :])
        return cls(proc, info["ok"], info["failed"], info["error"])

    async def next_round(self, timeout: float = 60.0) -> tuple[float, float]:
        """Wall-clock times (s) at which the first and the last connection received the
        next message."""
        while not (line := await _line(self.proc, timeout)).startswith("ROUND "):
            pass
        _, _, first, last = line.split()
        return float(first) / 1000, float(last) / 1000

    async def close(self) -> None:
        assert self.proc.stdin is not None
        if self.proc.returncode is None:
            try:
                self.proc.stdin.write(b"quit\n")
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 60)
            except (TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()
