"""The benchmark harness (BENCHMARKS.md). Run on request, not in CI's default suite:

    python -m bench all                  # every scenario, writes BENCHMARKS.md and plots
    python -m bench round-trip --profile # one scenario; --profile adds a cProfile report
    python -m bench all --quick          # tiny sizes (the smoke test runs this)
    python -m bench report               # re-render BENCHMARKS.md from bench/results

Scenarios: round-trip (ours and baselines a/b/c), fixed-rate, broadcast, idle, cross, resume,
workers (WORKERS=1 vs 2), idle-workers (50,000 idle sessions with WORKERS=3).
`python -m bench startup` (not part of `all`: it builds archives) measures the time from exec
to the provider's control subscriptions, per packaging mode. `python -m bench paired --sides
off,js` (not part of `all`) measures settings or provider versions side by side, at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import gostandins, procs, report, scenarios, services, workers

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = [
    "round-trip",
    "fixed-rate",
    "broadcast",
    "idle",
    "cross",
    "resume",
    "workers",
    "idle-workers",
]


async def run(args: argparse.Namespace, sizes: scenarios.Sizes) -> dict[str, Any]:
    wanted = SCENARIOS if args.scenario == "all" else [args.scenario]
    results: dict[str, Any] = {}
    if "round-trip" in wanted:
        only = args.targets.split(",") if args.targets else None
        results["round_trip"] = await scenarios.round_trip(sizes, only)
    if "fixed-rate" in wanted:
        rt = results.get("round_trip")
        max_rate = rt["targets"]["ours"]["headline"]["msgs_per_s"] if rt else args.max_rate
        results["fixed_rate"] = await scenarios.fixed_rate(sizes, max_rate)
    if "broadcast" in wanted:
        results["broadcast"] = await scenarios.broadcast(sizes)
    if "idle" in wanted:
        results["idle"] = await scenarios.idle(sizes)
    if "cross" in wanted:
        results["cross_instance"] = await scenarios.cross(sizes)
    if "resume" in wanted:
        results["resume"] = await scenarios.resume_cost(sizes)
    if "workers" in wanted:
        results["workers"] = await workers.workers(sizes)
    if "idle-workers" in wanted:
        results["idle_workers"] = await workers.idle_workers(sizes)
    if args.profile:
        results["profile"] = await scenarios.profile(sizes, Path(args.results_dir))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario", choices=["all", *SCENARIOS, "report", "startup", "hostile", "paired"]
    )
    parser.add_argument(
        "--sides",
        default="off,js",
        help="paired: comma-separated sides, each `name` or `name=setting[@src]` "
        "(settings: off, mem, js)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="paired: rounds")
    parser.add_argument("--runs", type=int, default=7, help="startup: starts per mode")
    parser.add_argument(
        "--modes", default="launcher,frozen", help="startup: packaging modes to measure"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--profile", action="store_true", help="cProfile the provider")
    parser.add_argument("--clients", type=int, help="round-trip clients (default 100)")
    parser.add_argument("--window", type=int, help="messages in flight per client (default 4)")
    parser.add_argument("--duration", type=float, help="measured seconds per point")
    parser.add_argument("--targets", help="round-trip: comma-separated subset of ours,a,b,c")
    parser.add_argument(
        "--component",
        choices=["auto", "go", "fast", "sdk"],
        default="auto",
        help="the stand-in echo component: go (bench/go, the default where Go is installed), "
        "fast (bench/echo_component.py, the default elsewhere) or sdk (the SDK-based one, to "
        "compare); baselines b and c use the Go responder where the Go stand-ins run",
    )
    parser.add_argument("--no-curve", action="store_true", help="round-trip: headline only")
    parser.add_argument("--max-rate", type=float, help="fixed-rate: max to take 50%% of")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--write", action="store_true", help="update BENCHMARKS.md (default with `all`)"
    )
    parser.add_argument("--no-write", action="store_true", help="never update BENCHMARKS.md")
    args = parser.parse_args()
    sizes = scenarios.Sizes.quick() if args.quick else scenarios.Sizes()
    if args.clients:
        sizes.clients = args.clients
    if args.window:
        sizes.window = args.window
    sizes.component = args.component
    if args.no_curve:
        sizes.clients_curve = []
    if args.duration:
        sizes.duration_s = args.duration
    procs.raise_fd_limit()
    # SIGTERM stops the run like Ctrl-C: the scenarios' context managers stop what they
    # started (nats-server included).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # This driver (reading the generator, making broadcast calls) shares the generator's core.
    os.sched_setaffinity(0, procs.GENERATOR_CORES)
    outdir = Path(args.results_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    if args.scenario == "startup":
        # Its own section of BENCHMARKS.md (it builds archives: not part of `all`).
        from . import startup

        found = asyncio.run(startup.run(args.modes.split(","), args.runs))
        section = startup.markdown(found, "python -m bench " + shlex.join(sys.argv[1:]))
        print(section)
        if not args.no_write:
            startup.update_benchmarks_md(section)
        return
    if args.scenario == "paired":
        from . import paired

        try:
            sides = [paired.parse_side(spec) for spec in args.sides.split(",")]
        except ValueError as exc:
            parser.error(str(exc))
        found = asyncio.run(paired.run(sides, args.rounds, sizes))
        (outdir / "paired.json").write_text(json.dumps(found, indent=1))
        print(paired.markdown(found, "python -m bench " + shlex.join(sys.argv[1:])))
        return
    if args.scenario == "hostile":
        from . import hostile

        found = asyncio.run(hostile.run())
        (outdir / "hostile.json").write_text(hostile.dumps(found))
        print(hostile.dumps(found))
        section = hostile.markdown(found, "python -m bench " + shlex.join(sys.argv[1:]))
        print(section)
        if not args.no_write:
            from .startup import update_benchmarks_md

            update_benchmarks_md(section, begin=hostile.BEGIN, end=hostile.END)
        return
    if args.scenario == "report":
        # Re-render the table, plots and BENCHMARKS.md from the last run's results.json.
        saved = json.loads((outdir / "results.json").read_text())
        publish(saved, saved.pop("meta"), outdir, not args.no_write)
        return
    started = time.time()
    results = asyncio.run(run(args, sizes))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "machine": procs.machine(),
        "server_cores": ",".join(map(str, sorted(procs.SERVER_CORES))),
        "generator_cores": ",".join(map(str, sorted(procs.GENERATOR_CORES))),
        "workers": sizes.workers,
        "component": services.resolve_component(sizes.component),
        "responder": "go" if gostandins.stand_ins() == "go" else "python",
        "payload": sizes.payload,
        "duration_s": sizes.duration_s,
        "warmup_s": sizes.warmup_s,
        "clients_curve": sizes.clients_curve,
        "elapsed_s": round(time.time() - started),
    }
    (outdir / "results.json").write_text(json.dumps({"meta": meta, **results}, indent=1))
    write = (args.write or (args.scenario == "all" and not args.quick)) and not args.no_write
    publish(results, meta, outdir, write)


def publish(results: dict[str, Any], meta: dict[str, Any], outdir: Path, write: bool) -> None:
    """Print the table; with `write`, draw the plots and update BENCHMARKS.md."""
    print(report.table(results))
    if write:
        images = [os.path.relpath(p, ROOT) for p in report.plots(results, outdir)]
        section = report.markdown(results, meta, images)
        report.update_benchmarks_md(ROOT / "BENCHMARKS.md", section)
        print(f"BENCHMARKS.md updated ({meta['elapsed_s']} s)")


if __name__ == "__main__":
    main()
