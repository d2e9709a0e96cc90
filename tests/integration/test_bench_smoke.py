"""A short run of the benchmark harness, so that it keeps working (figures come from full
runs, see BENCHMARKS.md; nothing here asserts a speed)."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT


def test_cross_instance_bench_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cross_instance", "--messages", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:]]
    assert rows == ["local", "remote"]


def test_compression_bench_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.compression", "--sessions", "10", "--messages", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert rows == ["off", "on"]
