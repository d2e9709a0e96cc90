"""The scenarios of the provider's worker processes (provider config `WORKERS`).

* `workers`: the round trip of scenario 1 with `WORKERS=1`, then `WORKERS=2` in two
  placements; the provider's CPU per message is the total over all its processes (the one
  the harness started and its descendants), and the ratio to `WORKERS=1` is what worker
  processes cost. The reported ratio places one worker process per core (`CORE_PER_WORKER`,
  as `WORKERS=auto` runs: worker 0 stays on the server core with nats-server and the
  component, worker k goes to core k modulo the cores, here the generator's); the ratio with
  every process on the one server core (`SHARED_CORE`, as every other scenario runs) is
  reported beside it. BENCHMARKS.md says why the first is the fair one. Then the same at a
  fixed offered rate (`Sizes.workers_rate`): WORKERS=1 at half of it and at it, WORKERS=2 at
  it, since CPU per message depends on how much load a process carries.
* `idle-workers`: idle sessions held by a provider with `WORKERS=3`, more than one process
  may hold under RLIMIT_NOFILE (20,000 here, not raisable): the clients come from several
  generator processes, each under the limit too. RSS is reported in total and per process,
  with each process's sessions counted from its open file descriptors.

The harness passes the key and measures whatever processes exist: a provider without worker
processes gives a ratio near 1, and holds only what one process can.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

from . import loadgen, services
from .procs import CORES, connections_on_port, listening_on_port, open_fds, pin, rss_kib, tree
from .scenarios import FD_RESERVE, LOCAL_ADDRS, Sizes, _log, _rt_config

#: How long to wait for the worker processes to show up after the provider is ready.
WORKERS_START_TIMEOUT = 15.0
#: Placements of the provider's processes: all on the server core with nats-server and the
#: component (as every other scenario)...
SHARED_CORE = "shared core"
#: ...or one core per worker process (the reported `WORKERS` ratio).
CORE_PER_WORKER = "core per worker"


async def workers(sizes: Sizes) -> dict[str, Any]:
    """Round trip per WORKERS setting and placement, `sizes.workers_rounds` rounds each
    running every setting in turn; total provider CPU per message and the ratios to the
    first setting (one core per worker: `ratio`; all on one core: `ratio_shared_core`),
    each the median of the per-round ratios: the machine's drift between minutes falls on
    both sides of a round alike. `rows` are the round whose `ratio` is that median."""
    rounds: list[list[dict[str, Any]]] = []
    for round_no in range(sizes.workers_rounds):
        if sizes.workers_rounds > 1:
            _log(f"workers: round {round_no + 1} of {sizes.workers_rounds}")
        rows = []
        for count in sizes.provider_workers:
            for placement in [SHARED_CORE] if count == 1 else [CORE_PER_WORKER, SHARED_CORE]:
                rows.append(await _workers_row(sizes, count, placement))
        rounds.append(rows)
    out: dict[str, Any] = {
        "clients": sizes.clients,
        "window": sizes.window,
        "rounds": len(rounds),
        "rows": rounds[0],
    }
    for key, placement in (("ratio", CORE_PER_WORKER), ("ratio_shared_core", SHARED_CORE)):
        per_round = [r for r in (_ratio(rows, placement) for rows in rounds) if r is not None]
        if per_round:
            out[f"{key}_rounds"] = [round(r, 3) for r in per_round]
            out[key] = round(statistics.median(per_round), 3)
    if "ratio" in out:
        ratios = [_ratio(rows, CORE_PER_WORKER) or 0.0 for rows in rounds]
        out["rows"] = rounds[ratios.index(_median_member(ratios))]
    out["at_rate"] = await _at_rate(sizes)
    return out


async def _at_rate(sizes: Sizes) -> dict[str, Any]:
    """The same comparison at a fixed offered rate R (open loop): WORKERS=1 at R/2, WORKERS=1
    at R, the highest WORKERS at R (one core per worker), `sizes.workers_rounds` interleaved
    rounds. A process's CPU per message falls as its load rises (each wake-up serves more
    messages), so WORKERS=2 at R is set against both: the same total load, and the load each
    of its workers carries. Rows hold the median over the rounds; ratios the median of the
    per-round ratios."""
    rate = sizes.workers_rate
    most = max(sizes.provider_workers)
    plan = [(1, rate / 2), (1, rate), (most, rate)]
    per_round: list[list[dict[str, Any]]] = []
    for round_no in range(sizes.workers_rounds):
        _log(f"workers at {rate:.0f} msg/s: round {round_no + 1} of {sizes.workers_rounds}")
        per_round.append(
            [
                await _workers_row(
                    sizes, count, CORE_PER_WORKER if count > 1 else SHARED_CORE, rate=r
                )
                for count, r in plan
            ]
        )
    rows = []
    for i, (count, r) in enumerate(plan):
        measured = [rows_[i] for rows_ in per_round]
        rows.append(
            {
                "workers": count,
                "rate": r,
                "placement": measured[0]["placement"],
                "cores": measured[0]["cores"],
                "processes": measured[0]["processes"],
                "sessions_per_process": measured[0]["sessions_per_process"],
                "achieved": round(
                    statistics.median(m["round_trip"]["msgs_per_s"] for m in measured)
                ),
                "p99_ms": round(statistics.median(m["round_trip"]["p99_ms"] for m in measured), 2),
                "provider_us_per_msg": round(
                    statistics.median(m["provider_us_per_msg"] for m in measured), 1
                ),
                "provider_rounds": [m["provider_us_per_msg"] for m in measured],
                "provider_switches": round(
                    statistics.median(
                        m["round_trip"]["switches_per_msg"]["provider"] for m in measured
                    ),
                    3,
                ),
                **{
                    f"{name}_us_per_msg": round(
                        statistics.median(
                            m["round_trip"]["cpu_us_per_msg"].get(name, 0.0) for m in measured
                        ),
                        1,
                    )
                    for name in ("component", "nats-server")
                },
            }
        )
    half = [
        rows_[2]["provider_us_per_msg"] / rows_[0]["provider_us_per_msg"] for rows_ in per_round
    ]
    same = [
        rows_[2]["provider_us_per_msg"] / rows_[1]["provider_us_per_msg"] for rows_ in per_round
    ]
    return {
        "rate": rate,
        "workers": most,
        "rows": rows,
        "same_load_rounds": [round(x, 3) for x in same],
        "same_load": round(statistics.median(same), 3),
        "per_worker_load_rounds": [round(x, 3) for x in half],
        "per_worker_load": round(statistics.median(half), 3),
    }


def _ratio(rows: list[dict[str, Any]], placement: str) -> float | None:
    """The last `placement` row's provider CPU per message ÷ the first row's."""
    base = rows[0]["provider_us_per_msg"]
    last = [r for r in rows[1:] if r["placement"] == placement]
    return last[-1]["provider_us_per_msg"] / base if last and base else None


def _median_member(values: list[float]) -> float:
    """The value in the middle of `values` (the lower middle one of an even count)."""
    return sorted(values)[(len(values) - 1) // 2]


async def _workers_row(
    sizes: Sizes, count: int, placement: str, rate: float | None = None
) -> dict[str, Any]:
    async with services.ours(
        component=sizes.component, provider_config={"WORKERS": str(count)}
    ) as stack:
        root = stack.pids["provider"]
        port = int(urlsplit(stack.url).port or 0)
        found = await _wait_for_workers(root, count, port)
        if found < count or not all(listening_on_port(p, port) for p in tree(root)):
            _log(
                f"WORKERS={count}: {found} process(es), not all listening after "
                f"{WORKERS_START_TIMEOUT:.0f} s: this row measures what there is"
            )
        if placement == CORE_PER_WORKER:
            place_one_per_core(root)
        cores = sorted({c for p in tree(root) for c in os.sched_getaffinity(p)})
        extra = {"rate": rate} if rate else {}
        sessions: dict[int, int] = {}

        async def count_sessions() -> None:
            # Once the clients have connected (they connect before the measured window).
            while sum(sessions.values()) < sizes.clients:
                await asyncio.sleep(0.05)
                sessions.update({p: connections_on_port(p, port) for p in tree(root)})

        counting = asyncio.create_task(count_sessions())
        try:
            rt = await loadgen.round_trips(
                _rt_config(stack, sizes, sizes.clients, **extra), stack.pids
            )
        finally:
            counting.cancel()
    row = {
        "workers": count,
        "placement": placement,
        "cores": cores,
        "processes": rt["processes"]["provider"],
        "provider_us_per_msg": rt["cpu_us_per_msg"]["provider"],
        "sessions_per_process": [sessions[p] for p in sorted(sessions)],
        "round_trip": rt,
    }
    offered = f" at {rate:.0f} msg/s offered" if rate else ""
    _log(
        f"WORKERS={count}{offered} ({placement}, cores {cores}): {row['processes']} provider "
        f"process(es), {rt['msgs_per_s']:.0f} msg/s, provider {row['provider_us_per_msg']} "
        f"µs/msg (total), switched out {rt['switches_per_msg']['provider']:.2f} times per "
        f"message, p99 {rt['p99_ms']:.2f} ms, sessions per process {row['sessions_per_process']}"
    )
    return row


def place_one_per_core(root: int) -> None:
    """Leave worker 0 (`root`) where it is, move worker k to core k (modulo the cores)."""
    for k, pid in enumerate(sorted(p for p in tree(root) if p != root), 1):
        pin(pid, {CORES[k % len(CORES)]})


async def _wait_for_workers(pid: int, wanted: int, port: int) -> int:
    """Poll until `pid` has `wanted` processes in its tree and each of them listens on
    `port` (or the timeout: a provider that does not start workers keeps one). A worker
    exists a second or so before it listens; load started in between all lands on the
    workers already listening. Polling, not an event: the processes are not ours."""
    deadline = time.monotonic() + WORKERS_START_TIMEOUT

    def ready() -> bool:
        pids = tree(pid)
        return len(pids) >= wanted and all(listening_on_port(p, port) for p in pids)

    while not ready() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return len(tree(pid))


async def idle_workers(sizes: Sizes) -> dict[str, Any]:
    """`sizes.spread_sessions` idle sessions on a provider with WORKERS=`spread_workers`."""
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    ceiling = fd_limit - FD_RESERVE
    async with services.ours(
        component=None, provider_config={"WORKERS": str(sizes.spread_workers)}
    ) as stack:
        root = stack.pids["provider"]
        await _wait_for_workers(root, sizes.spread_workers, int(urlsplit(stack.url).port or 0))
        pids = tree(root)
        base_rss = {p: rss_kib(p) for p in pids}
        # One socket per session in the provider's processes, one per client in each holder.
        target = min(sizes.spread_sessions, ceiling * len(pids))
        per_holder = math.ceil(target / sizes.spread_holders)
        holders: list[loadgen.Holder] = []
        started = time.monotonic()
        try:
            # All generator processes connect at once: a provider with several processes
            # accepts in parallel (and the run stays within make bench's budget).
            sizes_ = [min(per_holder, target - i * per_holder) for i in range(sizes.spread_holders)]
            opened = await asyncio.gather(
                *(
                    loadgen.Holder.open(
                        {
                            "proto": "ws",
                            "url": stack.url,
                            "clients": n,
                            "workers": sizes.workers,
                            "local_addrs": LOCAL_ADDRS,
                            "concurrency": 100,
                        }
                    )
                    for n in sizes_
                    if n > 0
                ),
                return_exceptions=True,
            )
            holders = [h for h in opened if isinstance(h, loadgen.Holder)]
            errors = [h for h in opened if isinstance(h, BaseException)]
            if errors:
                raise errors[0]
            for i, holder in enumerate(holders, 1):
                _log(f"idle-workers: holder {i}: {holder.ok} ok, {holder.failed} failed")
            connect_s = time.monotonic() - started
            processes: list[dict[str, Any]] = []
            for p in tree(root):
                rss = rss_kib(p)
                sessions = connections_on_port(p, int(urlsplit(stack.url).port or 0))
                grown = rss - base_rss.get(p, 0)
                processes.append(
                    {
                        "pid": p,
                        "sessions": sessions,
                        "fds": open_fds(p),
                        "rss_mib": round(rss / 1024, 1),
                        "per_session_kib": round(grown / sessions, 2) if sessions else None,
                    }
                )
        finally:
            for holder in holders:
                await holder.close()
    held = sum(h.ok for h in holders)
    total_rss = sum(p["rss_mib"] for p in processes)
    base = sum(base_rss.values()) / 1024
    out = {
        "workers": sizes.spread_workers,
        "target": sizes.spread_sessions,
        "sessions": held,
        "failed": sum(h.failed for h in holders),
        "error": next((h.error for h in holders if h.error), None),
        "holders": len(holders),
        "fd_limit": fd_limit,
        "capped_by": (
            f"RLIMIT_NOFILE {fd_limit} x {len(pids)} process(es)"
            if target < sizes.spread_sessions
            else None
        ),
        "connect_s": round(connect_s, 1),
        "base_rss_mib": round(base, 1),
        "total_rss_mib": round(total_rss, 1),
        "per_session_kib": round((total_rss - base) * 1024 / held, 2) if held else None,
        "processes": processes,
    }
    _log(f"idle-workers: {out}")
    return out
