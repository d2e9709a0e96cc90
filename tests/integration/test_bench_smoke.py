"""A short run of the benchmark harness, so that it keeps working (figures come from full
runs, see BENCHMARKS.md; nothing here asserts a speed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from bench.targets import workers_markdown

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


def _node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


@pytest.mark.parametrize(
    ("scenario", "extra"),
    [
        # The round trip once per target (ours and baselines a, b, c), to keep each short.
        pytest.param("round-trip", ["--targets", "ours"], id="round-trip-ours"),
        pytest.param("round-trip", ["--targets", "a"], id="round-trip-a"),
        pytest.param("round-trip", ["--targets", "b"], id="round-trip-b"),
        pytest.param("round-trip", ["--targets", "c"], id="round-trip-c"),
        pytest.param("fixed-rate", [], id="fixed-rate"),
        pytest.param("broadcast", [], id="broadcast"),
        pytest.param("idle", [], id="idle"),
        pytest.param("cross", [], id="cross"),
        pytest.param("resume", [], id="resume"),
        pytest.param("workers", [], id="workers"),
        pytest.param("idle-workers", [], id="idle-workers"),
    ],
)
def test_harness_scenario_runs(scenario: str, extra: list[str], tmp_path: Path) -> None:
    """`python -m bench <scenario> --quick`: every scenario at a tiny size (the full run is
    `make bench`); checks that it completes and reports its rows, not how fast."""
    if scenario != "cross" and not _node_available():
        if os.environ.get("CI"):
            pytest.fail("Node.js (node and npm) is required in CI for the load generator")
        pytest.skip("Node.js (node and npm) is not installed")
    command = [sys.executable, "-m", "bench", scenario, "--quick", "--results-dir", str(tmp_path)]
    result = subprocess.run(
        command + extra,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    expected = {
        "round-trip": "round_trip",
        "fixed-rate": "fixed_rate",
        "broadcast": "broadcast",
        "idle": "idle",
        "cross": "cross_instance",
        "resume": "resume",
        "workers": "workers",
        "idle-workers": "idle_workers",
    }[scenario]
    assert expected in results
    if scenario == "round-trip":
        assert list(results["round_trip"]["targets"]) == [extra[1]]
        for target in results["round_trip"]["targets"].values():
            assert target["headline"]["count"] > 0
            assert "generator" in target["headline"]["cpu_pct"]
        if extra[1] == "ours":
            # The stand-in component's CPU is reported beside the provider's and nats-server's.
            cpu = results["round_trip"]["targets"]["ours"]["headline"]["cpu_us_per_msg"]
            assert {"provider", "component", "nats-server"} <= set(cpu)
            assert re.search(r"CPU µs/msg: server \d+ .*, component \d+", result.stdout)
    if scenario == "broadcast":
        assert [r["sessions"] for r in results["broadcast"]["rows"]] == [5, 10]
        # Clients count as connected once their welcome came (the session is reachable
        # then), and the welcome is not taken for the broadcast: counted, it would end a
        # round before the first broadcast was even made (negative times).
        for row in results["broadcast"]["rows"]:
            assert 0 < row["first_ms"] <= row["median_ms"] and row["min_ms"] > 0, row
    if scenario == "resume":
        rows = results["resume"]["rows"]
        assert len(rows) == 4 and all(r["round_trip"]["count"] > 0 for r in rows)
        # resume off and JetStream also measured at the same time: the JetStream target's
        # figure (one ratio per round), shown in BENCHMARKS.md's section and the target line.
        side_by_side = results["resume"]["side_by_side"]
        assert list(side_by_side["ratios"]) == ["off", "js"]
        assert side_by_side["ratios"]["off"] == [1.0]
        assert len(side_by_side["ratios"]["js"]) == 1 and side_by_side["ratios"]["js"][0] > 0
        assert "history in JetStream" in result.stdout and "side by side" in result.stdout
    if scenario == "idle":
        assert [r["sessions"] for r in results["idle"]["off"]["rows"]] == [5, 10]
    if scenario == "workers":
        # WORKERS=1, then 2 placed one core per worker and all on one core, the provider's
        # CPU totalled over however many processes it has.
        rows = results["workers"]["rows"]
        assert [(r["workers"], r["placement"]) for r in rows] == [
            (1, "shared core"),
            (2, "core per worker"),
            (2, "shared core"),
        ]
        assert all(r["processes"] >= 1 and r["round_trip"]["count"] > 0 for r in rows)
        # Every client's session is counted, on the process that holds it; how often the
        # provider's processes were switched out per message is recorded with each row.
        for row in rows:
            assert row["round_trip"]["switches_per_msg"]["provider"] > 0, row
            assert len(row["sessions_per_process"]) == row["processes"], row
            assert sum(row["sessions_per_process"]) == 4, row
        cores = sorted(os.sched_getaffinity(0))
        assert rows[0]["cores"] == rows[2]["cores"] == cores[:1]
        assert rows[1]["cores"] == sorted({cores[0], cores[1 % len(cores)]})
        assert results["workers"]["ratio"] > 0 and results["workers"]["ratio_shared_core"] > 0
        # Two rounds (--quick): each ratio is the median of the rounds' ratios, and the rows
        # shown are those of the round whose ratio is the lower middle one.
        found = results["workers"]
        assert found["rounds"] == 2 and len(found["ratio_rounds"]) == 2
        assert found["ratio"] == pytest.approx(statistics.median(found["ratio_rounds"]), abs=2e-3)
        assert found["ratio_shared_core"] == pytest.approx(
            statistics.median(found["ratio_shared_core_rounds"]), abs=2e-3
        )
        shown = rows[1]["provider_us_per_msg"] / rows[0]["provider_us_per_msg"]
        assert shown == pytest.approx(min(found["ratio_rounds"]), rel=0.01)
        assert "median of" in result.stdout
        # At a fixed rate R (200 in --quick): WORKERS=1 at R/2 and R, WORKERS=2 at R, one
        # core per worker; the ratios are the medians of the rounds' ratios of those rows.
        at = found["at_rate"]
        assert [(r["workers"], r["rate"]) for r in at["rows"]] == [
            (1, 100.0),
            (1, 200.0),
            (2, 200.0),
        ]
        assert at["rows"][2]["placement"] == "core per worker"
        assert all(len(r["provider_rounds"]) == 2 and r["achieved"] > 0 for r in at["rows"])
        assert at["same_load"] == pytest.approx(statistics.median(at["same_load_rounds"]), abs=2e-3)
        assert at["per_worker_load"] == pytest.approx(
            statistics.median(at["per_worker_load_rounds"]), abs=2e-3
        )
        assert "WORKERS=1 at the same rate" in result.stdout
        section = "\n".join(workers_markdown(results))
        assert "| 2 | 200 |" in section and "at half the rate" in section
        assert "| sessions per process |" in section
        assert "| provider switched out per msg |" in section
        assert all(r["provider_switches"] > 0 for r in at["rows"])
    if scenario == "idle-workers":
        spread = results["idle_workers"]
        assert spread["sessions"] == 30 and spread["holders"] == 3
        assert sum(p["sessions"] for p in spread["processes"]) == 30
        assert spread["total_rss_mib"] > 0


def test_paired_runs_sides_at_once_including_another_source_tree(tmp_path: Path) -> None:
    """`python -m bench paired`: two sides measured together; a side may run the provider
    from another `src/` (here this one, named explicitly)."""
    if not _node_available():
        if os.environ.get("CI"):
            pytest.fail("Node.js (node and npm) is required in CI for the load generator")
        pytest.skip("Node.js (node and npm) is not installed")
    sides = f"off,again=mem@{ROOT / 'src'}"
    command = [sys.executable, "-m", "bench", "paired", "--quick", "--rounds", "1"]
    command += ["--sides", sides, "--results-dir", str(tmp_path)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads((tmp_path / "paired.json").read_text())
    assert list(found["sides"]) == ["off", "again"]
    assert all(rts[0]["count"] > 0 for rts in found["sides"].values())
    assert "| again |" in result.stdout


def test_paired_names_a_bad_side() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "paired", "--sides", "off,x=fast"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown setting 'fast'" in result.stderr


def test_gc_timing_counts_the_providers_collections_and_objects() -> None:
    """`python -m bench.gctiming`: collections timed inside the provider through a broadcast
    run, and the objects the collector tracks with and without sessions."""
    if not _node_available():
        if os.environ.get("CI"):
            pytest.fail("Node.js (node and npm) is required in CI for the load generator")
        pytest.skip("Node.js (node and npm) is not installed")
    command = [sys.executable, "-m", "bench.gctiming", "--sessions", "20", "--repeats", "1"]
    command += ["--count-sessions", "30"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broadcast to 20: median" in result.stdout
    # Starting a provider allocates enough for some young collections to be timed.
    young = re.search(r"generation 0 collections: (\d+)", result.stdout)
    assert young is not None and int(young.group(1)) > 0, result.stdout
    found = re.search(
        r"tracked objects: (\d+) with no session, (\d+) with 30 sessions: ([\d.]+) per session",
        result.stdout,
    )
    assert found is not None, result.stdout
    assert int(found.group(2)) > int(found.group(1)) > 0 and float(found.group(3)) > 0


def test_wake_cost_compares_a_sleeping_process_with_one_that_never_sleeps() -> None:
    """`python -m bench.wakecost`: the same work per event back to back and at a rate; at a
    rate the child is switched out about once per event, back to back hardly at all."""
    command = [sys.executable, "-m", "bench.wakecost", "--events", "200", "--rates", "1000"]
    command += ["--rounds", "1"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        line.split("|")[1].strip(): [float(x) for x in line.split("|")[2:7]]
        for line in result.stdout.splitlines()
        if line.startswith("| back to back") or line.startswith("| 1,000/s")
    }
    assert set(rows) == {"back to back", "1,000/s"}, result.stdout
    cpu, user, system, switches, _ = rows["1,000/s"]
    # The total is the scheduler's; its split into user and system is sampled at the tick
    # (either can be 0 over a run this short).
    assert cpu > 0 and cpu == pytest.approx(user + system, abs=0.2)
    assert switches >= 0.5 > rows["back to back"][3], result.stdout
    assert rows["back to back"][4] == 0.0
