"""The harness' scenarios; each returns a JSON-friendly dict of figures.

Sizes come from a `Sizes` object: the full run's defaults, or `Sizes.quick()` for the smoke
test (every scenario at a tiny size, in a few seconds).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from wasmcloud_provider_sdk import BrokerMessage, Ok, WrpcTransport
from wasmcloud_provider_sdk.messaging import (
    CONSUMER_INSTANCE,
    decode_unit_result,
    encode_broker_message,
)

from . import cross_instance, loadgen, services
from .procs import cpu_since, rss_kib, tree_cpu

StackFactory = Callable[[], contextlib.AbstractAsyncContextManager[services.Stack]]
BASELINES: dict[str, StackFactory] = {
    "a": services.baseline_echo,
    "b": services.baseline_forwarder,
    "c": services.baseline_nats_ws,
}
#: Loopback source addresses, so that more than ~28k connections (one ephemeral port range
#: per source address) can reach one listening port.
LOCAL_ADDRS = [f"127.0.0.{i}" for i in range(2, 8)]
#: File descriptors the provider needs besides its sessions (NATS, listener, epoll, stdio…).
FD_RESERVE = 100


@dataclass
class Sizes:
    """How big each scenario runs."""

    clients: int = 100
    window: int = 4
    clients_curve: list[int] = field(default_factory=lambda: [10, 100, 300])
    warmup_s: float = 2.0
    duration_s: float = 5.0
    payload: int = 64
    fixed_rates: list[float] = field(default_factory=lambda: [250.0, 500.0, 2000.0])
    broadcast_sessions: list[int] = field(default_factory=lambda: [1000, 5000, 10_000])
    broadcast_repeats: int = 7
    idle_sessions: list[int] = field(default_factory=lambda: [1000, 10_000, 50_000])
    cross_messages: int = 2000
    workers: int = 1
    #: The stand-in component (`services.component_args`): "auto" (Go where installed, else
    #: "fast"), "go", "fast", or "sdk" to compare.
    component: str = "auto"
    #: `workers`: the provider's WORKERS settings compared (total provider CPU per message).
    provider_workers: list[int] = field(default_factory=lambda: [1, 2])
    #: `workers`: rounds of every setting and placement, interleaved (the ratio reported is
    #: the median of the per-round ratios, as for the baselines).
    workers_rounds: int = 3
    #: `workers`: the offered rate (msg/s, open loop) at which WORKERS=2 is also compared
    #: with WORKERS=1 at the same rate and at half of it (what each worker then carries).
    workers_rate: float = 4000.0
    #: `idle-workers`: idle sessions held by a provider with WORKERS=`spread_workers`, the
    #: clients spread over `spread_holders` generator processes (each under the fd limit).
    spread_sessions: int = 50_000
    spread_workers: int = 3
    spread_holders: int = 3
    #: `resume`: rounds of the four settings, interleaved (the median is reported).
    resume_rounds: int = 3
    #: `round-trip`: rounds of the headline (every target in turn; medians reported).
    headline_rounds: int = 5

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            clients=4,
            window=2,
            clients_curve=[2],
            warmup_s=0.1,
            duration_s=0.3,
            fixed_rates=[200.0],
            broadcast_sessions=[5, 10],
            broadcast_repeats=2,
            idle_sessions=[5, 10],
            cross_messages=50,
            spread_sessions=30,
            resume_rounds=1,
            headline_rounds=1,
            workers_rounds=2,
            workers_rate=200.0,
        )


def _rt_config(stack: services.Stack, sizes: Sizes, clients: int, **extra: Any) -> dict[str, Any]:
    return {
        "proto": stack.proto,
        "url": stack.url,
        "clients": clients,
        "window": sizes.window,
        "warmup_s": sizes.warmup_s,
        "duration_s": sizes.duration_s,
        "payload": sizes.payload,
        "workers": sizes.workers,
        **extra,
    }


#: Stderr lines of each process shown when a headline round completed nothing.
STALL_LINES = 20


def _report_stall(stack: services.Stack, round_no: int) -> None:
    """A headline round with no round trip at all is a fault, not a figure: say so, with the
    last stderr lines of the stack's processes (the round still counts in the median)."""
    _log(f"WARNING: {stack.name} completed no round trip in headline round {round_no + 1}")
    for name, child in stack.children.items():
        for line in child.lines[-STALL_LINES:]:
            _log(f"  {name}: {line}")


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


async def _curve(stack: services.Stack, sizes: Sizes) -> list[dict[str, Any]]:
    points = []
    for clients in sizes.clients_curve:
        result = await loadgen.round_trips(_rt_config(stack, sizes, clients), stack.pids)
        result["clients"] = clients
        _log(
            f"{stack.name}: {clients} clients x {sizes.window}: "
            f"{result['msgs_per_s']:.0f} msg/s, p99 {result['p99_ms']:.2f} ms"
        )
        points.append(result)
    return points


async def round_trip(sizes: Sizes, only: list[str] | None = None) -> dict[str, Any]:
    """Scenarios 1 and 2: our stack and the three baselines, same workload, same run.

    The headline row is `sizes.clients` x `sizes.window`, measured in
    `sizes.headline_rounds` rounds, each starting and measuring every target in turn
    (interleaved, so that the machine's drift over the run falls on all of them alike); per
    target the round with the median msgs/s is reported, and each ratio to a baseline is
    the median of the per-round ratios (ours and the baseline measured within the same
    minute). The curve (clients varied) is measured in the first round.
    """
    out: dict[str, Any] = {
        "clients": sizes.clients,
        "window": sizes.window,
        "rounds": sizes.headline_rounds,
        "targets": {},
    }
    factories: dict[str, StackFactory] = {
        "ours": lambda: services.ours(component=sizes.component),
        **BASELINES,
    }
    wanted = {key: f for key, f in factories.items() if not only or key in only}
    rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in wanted}
    for round_no in range(sizes.headline_rounds):
        for key, factory in wanted.items():
            async with factory() as stack:
                headline = await loadgen.round_trips(
                    _rt_config(stack, sizes, sizes.clients), stack.pids
                )
                _log(
                    f"{stack.name}: {headline['msgs_per_s']:.0f} msg/s "
                    f"(headline, round {round_no + 1})"
                )
                if not headline["count"]:
                    _report_stall(stack, round_no)
                rounds[key].append(headline)
                if round_no == 0:
                    curve = await _curve(stack, sizes) if sizes.clients_curve else []
                    out["targets"][key] = {"name": stack.name, "curve": curve}
    for key, measured in rounds.items():
        ranked = sorted(measured, key=lambda h: float(h["msgs_per_s"]))
        target = out["targets"][key]
        target["headline"] = ranked[(len(ranked) - 1) // 2]
        target["rounds"] = [round(h["msgs_per_s"]) for h in measured]
    out["ratios"] = {}
    out["ratio_rounds"] = {}
    if "ours" in rounds:
        for key in BASELINES:
            if key in rounds:
                per_round = [
                    ours["msgs_per_s"] / theirs["msgs_per_s"]
                    for ours, theirs in zip(rounds["ours"], rounds[key], strict=True)
                ]
                out["ratio_rounds"][key] = [round(r, 3) for r in per_round]
                out["ratios"][key] = round(statistics.median(per_round), 3)
    return out


#: What session resume costs. The same round trip with resume off, with history in
#: memory only, and with history in JetStream (the default under a wasmCloud host).
RESUME_SETTINGS: list[tuple[str, dict[str, str], bool]] = [
    ("resume off (RESUME_WINDOW_SEC=0)", {"RESUME_WINDOW_SEC": "0"}, False),
    ("history in memory (no JetStream on the lattice)", {}, False),
    ("history in JetStream (default under a host)", {}, True),
    ("JetStream available, RESUME_PERSIST=false", {"RESUME_PERSIST": "false"}, True),
]


async def resume_cost(sizes: Sizes) -> dict[str, Any]:
    """The round trip with and without session history: `sizes.resume_rounds` rounds, each
    measuring every setting in turn (interleaved, so that the machine's drift over the
    minutes of a run falls on all settings alike); per setting, the round with the median
    msgs/s is reported (its CPU figures with it), all rounds' msgs/s beside it."""
    runs: list[list[dict[str, Any]]] = [[] for _ in RESUME_SETTINGS]
    for round_no in range(sizes.resume_rounds):
        for i, (label, config, jetstream) in enumerate(RESUME_SETTINGS):
            async with services.ours(
                component=sizes.component, jetstream=jetstream, config=config
            ) as stack:
                rt = await loadgen.round_trips(_rt_config(stack, sizes, sizes.clients), stack.pids)
                run: dict[str, Any] = {"round_trip": rt}
                if jetstream:
                    run["journal"] = await _journal_counts(stack.nats_url)
            _log(
                f"resume (round {round_no + 1}): {label}: {rt['msgs_per_s']:.0f} msg/s, "
                f"p99 {rt['p99_ms']:.2f} ms" + (f", stored {run['journal']}" if jetstream else "")
            )
            runs[i].append(run)
    rows = []
    for (label, _, _), measured in zip(RESUME_SETTINGS, runs, strict=True):
        ranked = sorted(measured, key=lambda run: float(run["round_trip"]["msgs_per_s"]))
        median = ranked[(len(ranked) - 1) // 2]
        rounds = [round(run["round_trip"]["msgs_per_s"]) for run in measured]
        rows.append({"setting": label, **median, "rounds": rounds})
    return {
        "clients": sizes.clients,
        "window": sizes.window,
        "rounds": sizes.resume_rounds,
        "rows": rows,
        "side_by_side": await _side_by_side(("off", "js"), sizes),
    }


async def _side_by_side(names: tuple[str, ...], sizes: Sizes) -> dict[str, Any]:
    """`bench.paired`'s measurement of these settings (all at once, `sizes.resume_rounds`
    rounds): the machine's drift between minutes falls on every side alike, so the ratio
    resolves a 10 % effect that rows measured in turn cannot."""
    from . import paired  # paired uses this module's round-trip config

    sides = [paired.parse_side(name) for name in names]
    found = await paired.run(sides, sizes.resume_rounds, sizes)
    base = found["sides"][names[0]]
    found["ratios"] = {
        name: [rt["msgs_per_s"] / ref["msgs_per_s"] for rt, ref in zip(rts, base, strict=True)]
        for name, rts in found["sides"].items()
    }
    return found


async def _journal_counts(nats_url: str) -> dict[str, int]:
    """What the run left in the history journal: JetStream messages and the client messages
    (records) they hold, warm-up included."""
    from provider.jsjournal import unpack_batch

    nc = await nats.connect(nats_url, name="bench-journal")
    writes = records = 0
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if not info.config.name.startswith("WSP_JRNL_"):
                continue
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                with contextlib.suppress(Exception):  # a deleted message
                    msg = await js.get_msg(info.config.name, seq)
                    records += len(unpack_batch(msg.data or b""))
                    writes += 1
    finally:
        await nc.close()
    return {"writes": writes, "records": records}


async def fixed_rate(sizes: Sizes, max_rate: float | None) -> dict[str, Any]:
    """Scenario 3: open-loop latency at fixed rates (2k msg/s and 50% of the measured max)."""
    rates = list(sizes.fixed_rates)
    if max_rate:
        rates.append(round(max_rate * 0.5))
    rows = []
    for rate in sorted(rates):
        # A fresh stack per rate: an overloaded run leaves queued work behind.
        async with services.ours(component=sizes.component) as stack:
            result = await loadgen.round_trips(
                _rt_config(stack, sizes, sizes.clients, rate=rate), stack.pids
            )
            result["rate"] = rate
        _log(
            f"fixed rate {rate:.0f}/s: achieved {result['msgs_per_s']:.0f}/s, "
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
            f"{result['errors']} error frames"
        )
        rows.append(result)
    return {"clients": sizes.clients, "rows": rows}


@contextlib.asynccontextmanager
async def _consumer(nats_url: str) -> AsyncIterator[WrpcTransport]:
    nc = await nats.connect(nats_url, name="bench-driver")
    transport = WrpcTransport(nc)
    await transport.start()
    try:
        yield transport
    finally:
        await nc.close()


async def broadcast(sizes: Sizes) -> dict[str, Any]:
    """Scenario 4: one `consumer.publish` to the broadcast subject (made by this driver as
    the component, over wRPC); time from the call until the last session received it."""
    rows = []
    async with (
        # With the welcome on, each client counts as connected once the provider sent it,
        # i.e. once the session is reachable; the handshake alone comes before that, and a
        # broadcast made in between would miss the session (its round would never end).
        services.ours(component=None, config={"WELCOME": "true"}) as stack,
        _consumer(stack.nats_url) as transport,
    ):
        for sessions in sizes.broadcast_sessions:
            holder = await loadgen.Holder.open(
                {
                    "proto": "ws",
                    "url": stack.url,
                    "welcome": True,
                    "clients": sessions,
                    "workers": sizes.workers,
                    "local_addrs": LOCAL_ADDRS,
                    "concurrency": 100,
                }
            )
            try:
                if holder.failed:
                    raise RuntimeError(f"{holder.failed} connections failed: {holder.error}")
                times, firsts = [], []
                watched = {"provider": stack.pids["provider"], "generator": holder.proc.pid}
                cpu_before = {name: tree_cpu(pid) for name, pid in watched.items()}
                for i in range(sizes.broadcast_repeats):
                    params = encode_broker_message(BrokerMessage("broadcast", b"tick %d" % i))
                    t0 = time.time()
                    result = await transport.invoke(
                        f"{services.LATTICE}.{services.PROVIDER_ID}",
                        CONSUMER_INSTANCE,
                        "publish",
                        params,
                        decode_unit_result,
                        headers={"source-id": services.COMPONENT_ID, "link-name": "default"},
                    )
                    assert isinstance(result, Ok), result
                    first, last = await holder.next_round()
                    times.append((last - t0) * 1000)
                    firsts.append((first - t0) * 1000)
                cpu_ms = {
                    name: round(cpu_since(cpu_before[name], tree_cpu(pid)) * 1000 / len(times), 1)
                    for name, pid in watched.items()
                }
            finally:
                await holder.close()
            row = {
                "sessions": sessions,
                "median_ms": round(statistics.median(times), 2),
                "min_ms": round(min(times), 2),
                "max_ms": round(max(times), 2),
                "first_ms": round(statistics.median(firsts), 2),
                "cpu_ms_per_broadcast": cpu_ms,
            }
            _log(f"broadcast to {sessions}: {row}")
            rows.append(row)
    return {"repeats": sizes.broadcast_repeats, "rows": rows}


async def idle(sizes: Sizes) -> dict[str, Any]:
    """Scenario 5: provider RSS per idle session, COMPRESSION off and on.

    Sessions are added in steps (1k, then up to 10k, then up to 50k) to one provider
    process; RSS is read after each step. Clients offer permessage-deflate when it is on.
    """
    # One socket per session: the provider can hold at most its RLIMIT_NOFILE (inherited
    # from this driver, raised as far as allowed) minus the descriptors it needs itself.
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    ceiling = fd_limit - FD_RESERVE
    out: dict[str, Any] = {"fd_limit": fd_limit}
    for compression in (False, True):
        rows = []
        async with services.ours(component=None, compression=compression) as stack:
            pid = stack.pids["provider"]
            base = rss_kib(pid)
            holders: list[loadgen.Holder] = []
            held = 0
            try:
                for target in sizes.idle_sessions:
                    capped = target > ceiling
                    if capped and held >= ceiling:
                        break
                    started = time.monotonic()
                    holder = await loadgen.Holder.open(
                        {
                            "proto": "ws",
                            "url": stack.url,
                            "clients": min(target, ceiling) - held,
                            "workers": sizes.workers,
                            "local_addrs": LOCAL_ADDRS,
                            "concurrency": 100,
                            "compression": compression,
                        }
                    )
                    holders.append(holder)
                    held += holder.ok
                    rss = rss_kib(pid)
                    row = {
                        "target": target,
                        "sessions": held,
                        "failed": holder.failed,
                        "error": holder.error,
                        "rss_mib": round(rss / 1024, 1),
                        "per_session_kib": round((rss - base) / max(held, 1), 2),
                        "connect_s": round(time.monotonic() - started, 1),
                        "capped_by": f"RLIMIT_NOFILE {fd_limit}" if capped else None,
                    }
                    _log(f"idle compression={compression}: {row}")
                    rows.append(row)
                    if holder.failed or capped:
                        break
            finally:
                for holder in holders:
                    await holder.close()
        out["on" if compression else "off"] = {"base_rss_mib": round(base / 1024, 1), "rows": rows}
    step = sizes.idle_sessions[min(1, len(sizes.idle_sessions) - 1)]
    out["floor"] = await _idle_floor(min(step, ceiling))
    return out


async def _idle_floor(sessions: int) -> dict[str, Any]:
    """The same measure for baseline a (a bare `websockets` server): what one idle
    connection costs before any of the provider's own state."""
    async with services.baseline_echo() as stack:
        pid = stack.pids["server"]
        base = rss_kib(pid)
        holder = await loadgen.Holder.open(
            {
                "proto": "ws",
                "url": stack.url,
                "clients": sessions,
                "workers": 1,
                "local_addrs": LOCAL_ADDRS,
                "concurrency": 100,
            }
        )
        try:
            rss = rss_kib(pid)
        finally:
            await holder.close()
    row = {"sessions": holder.ok, "per_session_kib": round((rss - base) / max(holder.ok, 1), 2)}
    _log(f"idle floor (bare websockets server): {row}")
    return row


async def cross(sizes: Sizes) -> dict[str, Any]:
    """Scenario 6: bench/cross_instance.py (local vs remote targeted sends)."""
    result = await cross_instance.run(sizes.cross_messages, 64)
    _log(f"cross-instance: {result}")
    return {"messages": sizes.cross_messages, "size": 64, **result}


async def profile(sizes: Sizes, outdir: Path) -> dict[str, Any]:
    """`--profile`: the headline round trip with the provider under cProfile (figures are
    slowed by the profiler; they are not the benchmark's). Writes provider.prof and
    profile.txt (top functions by own time and by cumulative time)."""
    import io
    import pstats

    prof = outdir / "provider.prof"
    async with services.ours(component=sizes.component, profile_to=prof) as stack:
        result = await loadgen.round_trips(_rt_config(stack, sizes, sizes.clients), stack.pids)
    # The provider wrote the profile when it exited (SIGTERM -> graceful stop).
    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.strip_dirs().sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    counts = _per_message_counts(stats)
    text = f"per client message (deterministic, unlike timings): {counts}\n\n" + buf.getvalue()
    (outdir / "profile.txt").write_text(text)
    _log(f"profiled round trip: {result['msgs_per_s']:.0f} msg/s, {counts}")
    report = str(outdir / "profile.txt").removeprefix(f"{services.ROOT}/")
    return {"msgs_per_s": result["msgs_per_s"], "report": report, **counts}


def _per_message_counts(stats: Any) -> dict[str, float]:
    """Python function calls, tasks and timers per client message, from a profile: steady
    figures to compare a hot-path change by when the machine is shared (timings are not)."""
    by_name: dict[str, int] = {}
    for (filename, _, name), (_, ncalls, *_rest) in stats.stats.items():
        key = f"{Path(filename).name}:{name}"
        by_name[key] = by_name.get(key, 0) + ncalls
    messages = by_name.get("frames.py:decode_frame", 0) or 1
    return {
        "messages": messages,
        "calls_per_msg": round(stats.total_calls / messages, 1),
        "tasks_per_msg": round(by_name.get("base_events.py:create_task", 0) / messages, 2),
        "timers_per_msg": round(by_name.get("events.py:__init__", 0) / messages, 2),
    }
