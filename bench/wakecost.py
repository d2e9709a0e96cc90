"""What this machine charges a process for sleeping and waking, apart from any provider.

    python -m bench.wakecost [--events 2000] [--rates 250,2000,8000] [--rounds 3]

A child process on the server core does one fixed piece of Python work (JSON and dict
operations, tens of µs) per event; the events come on a pipe from this process, on the
generator core, either all at once (back to back: the child never sleeps) or one by one at
an offered rate (the child sleeps in `read()` between them, as an event-loop process does
between messages). Reported per event: the child's user and system CPU (getrusage) and how
often it was switched out. The difference between a rate's figure and back to back is what
each sleep and wake-up costs the process here (the total is the scheduler's own figure;
its split into user and system time is sampled at the timer tick, so it is only a rough
guide over short runs): CPU an event-loop process (the provider, or
each of its workers) pays per message in proportion to how often it runs out of work.
Prints one table; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

from .procs import GENERATOR_CORES, SERVER_CORES


def work() -> None:
    """One event's fixed work (about as much Python as a provider's message step)."""
    doc: dict[str, Any] = {"topic": "t", "seq": 1, "body": "x" * 40}
    for _ in range(8):
        doc = json.loads(json.dumps(doc))
        doc["seq"] += 1
        headers = {f"k{i}": i for i in range(10)}
        "".join(f"{k}={v}" for k, v in headers.items())


def _child(read_fd: int, write_fd: int, events: int) -> None:
    """Serve `events` events from `read_fd`, then write the CPU figures to `write_fd`."""
    os.sched_setaffinity(0, SERVER_CORES)
    os.write(write_fd, b"r")  # pinned and about to read: the parent may start
    before = resource.getrusage(resource.RUSAGE_SELF)
    done = 0
    while done < events:
        data = os.read(read_fd, 65536)
        if not data:
            break
        for _ in range(len(data)):
            work()
        done += len(data)
    after = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "events": done,
        "user_us": (after.ru_utime - before.ru_utime) / done * 1e6,
        "sys_us": (after.ru_stime - before.ru_stime) / done * 1e6,
        "switches": (after.ru_nvcsw + after.ru_nivcsw - before.ru_nvcsw - before.ru_nivcsw) / done,
    }
    os.write(write_fd, json.dumps(figures).encode())


def measure(rate: float | None, events: int) -> dict[str, float]:
    """One run: `events` events at `rate` per second (None: all at once)."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(from_parent)
            os.close(to_parent)
            _child(to_child, from_child, events)
        finally:
            os._exit(0)
    os.close(to_child)
    os.close(from_child)
    try:
        os.sched_setaffinity(0, GENERATOR_CORES)
        if os.read(to_parent, 1) != b"r":
            raise RuntimeError("wakecost: the child did not start")
        if rate is None:
            os.write(from_parent, b"e" * events)
        else:
            due = time.perf_counter()
            for _ in range(events):
                due += 1 / rate
                while time.perf_counter() < due:  # a steady pace, not a timer's jitter
                    pass
                os.write(from_parent, b"e")
        out = b""
        while chunk := os.read(to_parent, 4096):
            out += chunk
    finally:
        os.close(from_parent)
        os.close(to_parent)
        os.waitpid(pid, 0)
    figures: dict[str, float] = json.loads(out)
    return figures


def run(rates: list[float], events: int, rounds: int) -> list[dict[str, Any]]:
    """Back to back, then each rate, `rounds` interleaved rounds; medians per setting."""
    settings: list[float | None] = [None, *rates]
    seen: dict[float | None, list[dict[str, float]]] = {s: [] for s in settings}
    affinity = os.sched_getaffinity(0)
    try:
        for _ in range(rounds):
            for setting in settings:
                seen[setting].append(measure(setting, events))
    finally:
        os.sched_setaffinity(0, affinity)
    rows = []
    for setting in settings:
        runs = seen[setting]
        row: dict[str, Any] = {"rate": setting}
        for key in ("user_us", "sys_us", "switches"):
            row[key] = round(statistics.median(r[key] for r in runs), 2)
        row["cpu_us"] = round(statistics.median(r["user_us"] + r["sys_us"] for r in runs), 1)
        rows.append(row)
    base = rows[0]["cpu_us"]
    for row in rows:
        row["extra_us"] = round(row["cpu_us"] - base, 1)
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| events | CPU µs/event | user | system | switched out per event "
        "| more than back to back |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        what = "back to back" if row["rate"] is None else f"{row['rate']:,.0f}/s"
        out.append(
            f"| {what} | {row['cpu_us']} | {row['user_us']} | {row['sys_us']} "
            f"| {row['switches']} | {row['extra_us']} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wakecost", description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rates", default="250,2000,8000", help="events/s, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    rows = run(rates, args.events, args.rounds)
    print(
        f"One fixed piece of Python work per event, child on core(s) {sorted(SERVER_CORES)}, "
        f"events from core(s) {sorted(GENERATOR_CORES)}; median of {args.rounds} round(s)."
    )
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
