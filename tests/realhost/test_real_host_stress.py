"""Races and load under a real wasmCloud 1.x host (wasmcloud-host 0.27.1 = wasmCloud v1.9.2).

Three fixes of the provider, checked against the real host and the Rust component:

- links put while the provider is starting (as wadm does: component first, then
  `provider.start` and the links at once) are not lost: a put published before the provider
  subscribed is applied from the lattice's `link.get` (log line "was put before this provider
  subscribed: applying it now");
- with one component instance (max instances 1, the host holds one permit), sessions that
  close while others exchange do not stall anyone: the component's goodbye publish to a gone
  session is answered at once (`Err("no such session")`), and no wRPC call leaves the host
  holding the permit;
- the `ack` of a message with an `id`, and figures: echo latency, msgs/s of a burst, CPU
  seconds of the provider and the host over it.

The figures are printed (run with `-s`); the assertions are about correctness and stalls, not
speed. Frozen archive (what users deploy), as built by `python -m provider package`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provider.natsserver import NatsServer, free_port
from tests.realhost.conftest import Lattice
from tests.realhost.ctl import CtlError
from tests.realhost.test_real_host import (
    COMPONENT_ID,
    ENDPOINT_CONFIG,
    PROVIDER_ID,
    consumer_link,
    expect_closed,
    expect_message,
    greeted,
    handler_link,
    open_when_listening,
    put_links,
    refused,
    same_link,
)
from tests.wsclient import Client

pytestmark = [pytest.mark.realhost, pytest.mark.timeout(600)]

#: What the provider logs when it applies a link it found with `link.get` (runtime.py).
RECOVERY_LINE = "was put before this provider subscribed: applying it now"

# --- helpers ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class HostLog:
    """The host's log file (its stderr, with the providers' output), read from an offset on."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def since(self, offset: int) -> str:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    async def wait_for(
        self,
        done: Callable[[str], bool],
        *,
        offset: int = 0,
        timeout: float = 30.0,
        what: str = "log lines",
    ) -> str:
        """Read the log until `done(text since offset)` holds. A file has no notification to
        wait on, so this polls (every 20 ms) within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.since(offset)
            if done(text):
                return text
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {what} in the host log within {timeout}s")
            await asyncio.sleep(0.02)  # polling a file: no event exists


CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    state: str  # R, S, ..., Z (exited, not yet reaped)
    cpu: float  # utime + stime, seconds


def proc_stat(pid: int) -> ProcStat | None:
    """/proc/<pid>/stat: comm (field 2), state (3), ppid (4), utime (14) and stime (15)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    return ProcStat(pid, int(rest[1]), comm, rest[0], (int(rest[11]) + int(rest[12])) / CLK_TCK)


def process_tree(root: int) -> list[ProcStat]:
    """`root` and its descendants (the host, the provider it spawned and, for a PyInstaller
    one-file binary, the provider's bootloader and its Python child)."""
    stats = [
        s for p in Path("/proc").iterdir() if p.name.isdigit() if (s := proc_stat(int(p.name)))
    ]
    children: dict[int, list[ProcStat]] = {}
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
    top = proc_stat(root)
    if top is None:
        return []
    tree, todo = [top], [top]
    while todo:
        for child in children.get(todo.pop().pid, []):
            tree.append(child)
            todo.append(child)
    return tree


def provider_processes(host_pid: int) -> list[ProcStat]:
    """The processes the host started (for a one-file binary: the bootloader and its child)."""
    return [s for s in process_tree(host_pid) if s.pid != host_pid and s.state != "Z"]


async def wait_exited(pids: list[int], timeout: float = 15.0) -> float:
    """Wait until none of `pids` runs any more (gone or a zombie); seconds it took. The
    processes are not ours (a host's child, re-parented once the host killed it), so there is
    no exit to wait on: /proc is polled every 10 ms."""
    t = time.monotonic()
    while True:
        alive = [pid for pid in pids if (s := proc_stat(pid)) is not None and s.state != "Z"]
        if not alive:
            return time.monotonic() - t
        if time.monotonic() - t >= timeout:
            desc = ", ".join(f"{pid} {cmdline(pid)}" for pid in alive)
            raise AssertionError(f"still running {timeout}s after the provider stopped: {desc}")
        await asyncio.sleep(0.01)  # polling /proc: no event exists for a stranger's exit


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


async def set_up(lat: Lattice, archive: Path, component_wasm: Path) -> str:
    """Provider (serving), component (one instance), both links, endpoint open: its URL."""
    port = free_port()
    await lat.ctl.config_put(ENDPOINT_CONFIG, {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"})
    await lat.ctl.provider_start_and_wait(lat.events, lat.host_id, PROVIDER_ID, f"file://{archive}")
    await lat.wait_provider_serving(PROVIDER_ID)
    await lat.ctl.component_scale_and_wait(
        lat.events, lat.host_id, COMPONENT_ID, f"file://{component_wasm}", 1
    )
    await put_links(lat, "provider-first")
    url = f"ws://127.0.0.1:{port}/ws"
    probe = await open_when_listening(url)
    await greeted(probe)
    await probe.close()
    return url


async def echo_round_trip(client: Client, subject: str, body: str, timeout: float) -> float:
    """Send `body`, wait for its echo (subject = the session id); seconds it took."""
    t = time.monotonic()
    await client.message(subject, body)
    frame = await client.recv(timeout)
    elapsed = time.monotonic() - t
    assert frame.get("type") == "message", frame
    assert (frame["subject"], frame["body"]) == (client.session_id, body), frame
    return elapsed


async def close_and_wait_goodbyes(log: HostLog, clients: list[Client]) -> None:
    """Close the clients (1000) and wait until the component has said goodbye to each (its
    answer to `ws.session.disconnected`): nothing is left in flight when the host stops."""
    offset = log.size()
    await asyncio.gather(*(c.close() for c in clients))
    await log.wait_for(
        lambda text: all(f"goodbye {c.session_id}:" in text for c in clients),
        offset=offset,
        timeout=15.0,
        what="goodbye lines of the closed clients",
    )


@contextlib.contextmanager
def known_host_race(lat: Lattice) -> Iterator[None]:
    """A stall (timeout, failed wait) is the host's known race when its log shows a dropped
    wRPC handshake: then the test is an expected failure naming it, otherwise it fails.

    wasmcloud-host 0.27.1 (wasmCloud v1.9.2) uses wrpc-transport-nats 0.29.0, whose client
    routes every reply through one task that may handle a reply before the subscription of
    its call (an unbiased `select!`): the provider's handshake answering the component's
    `consumer.publish` is then dropped, the call never ends and the component's only
    instance is never free again; every later `handle-message` waits for good. Fixed
    upstream in bytecodealliance/wrpc 2d3c810b (wrpc-transport-nats 0.31.0)."""
    try:
        yield
    except (TimeoutError, AssertionError, CtlError):
        drops = lat.host.dropped_handshakes()
        if drops:
            pytest.xfail(
                f"known host race: the host's wRPC transport dropped {len(drops)} handshake(s), "
                f"a component call hangs for good (wrpc-transport-nats 0.29.0; fixed in "
                f"bytecodealliance/wrpc 2d3c810b): {drops[0].strip()}"
            )
        raise


# --- 1. links put while the provider starts --------------------------------------------------

STARTS = 5


@pytest.mark.parametrize("put_links_at", ["start-ack", "provider-started"])
async def test_links_put_while_the_provider_is_starting(
    lattice: Lattice, frozen_archive: Path, component_wasm: Path, put_links_at: str
) -> None:
    """The component runs first; then `provider.start` and, at once, both links: right after
    the start's ack (what wadm does), or right at `provider_started` (the process is spawned
    and has not subscribed yet: the widest window for a lost put). Every start must end with
    a working endpoint; how often the provider recovered a lost put is printed."""
    lat = lattice
    log = HostLog(lat.host.log_path)
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    await lat.ctl.config_put(ENDPOINT_CONFIG, {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"})
    await lat.ctl.component_scale_and_wait(
        lat.events, lat.host_id, COMPONENT_ID, f"file://{component_wasm}", 1
    )
    inventory = await lat.ctl.host_inventory(lat.host_id)
    assert [c["id"] for c in inventory["components"]] == [COMPONENT_ID], inventory

    def is_provider(data: dict[str, Any]) -> bool:
        return data.get("provider_id") == PROVIDER_ID

    def ours(links: list[dict[str, Any]]) -> bool:
        return any(same_link(x, w) for x in links for w in (handler_link(), consumer_link()))

    recovered_starts = 0
    summary: list[str] = []

    async def start_once(n: int) -> None:
        nonlocal recovered_starts
        offset = log.size()
        mark = lat.events.mark
        t0 = time.monotonic()
        await lat.ctl.provider_start(lat.host_id, PROVIDER_ID, f"file://{frozen_archive}")
        t_ack = time.monotonic()
        if put_links_at == "provider-started":
            await lat.events.wait(
                "provider_started", is_provider, failure="provider_start_failed", after=mark
            )
        t_put = time.monotonic()
        await asyncio.gather(lat.ctl.link_put(handler_link()), lat.ctl.link_put(consumer_link()))
        t_links = time.monotonic()

        client = await open_when_listening(url, timeout=30.0)
        t_open = time.monotonic()
        await greeted(client)
        await client.message("echo.start", f"start {n}")
        await expect_message(client, client.session_id, f"start {n}")
        t_echo = time.monotonic()
        started = await lat.events.wait(
            "provider_started", is_provider, failure="provider_start_failed", after=mark
        )
        assert started.data["host_id"] == lat.host_id

        # Back to "component only" for the next start: provider stopped (and its processes
        # gone: the host rewrites the binary of a file:// provider at every start, which
        # fails with "Text file busy" while a process still runs it), links deleted.
        procs = provider_processes(lat.host.proc.pid)
        mark = lat.events.mark
        await lat.ctl.provider_stop(lat.host_id, PROVIDER_ID)
        exited_after = await wait_exited([s.pid for s in procs])
        await expect_closed(client, 1001)
        await lat.events.wait("provider_stopped", is_provider, after=mark)
        await lat.ctl.link_del(PROVIDER_ID)
        await lat.ctl.link_del(COMPONENT_ID)
        await lat.ctl.wait_links(lambda links: not ours(links))
        await refused(url)

        lines = log.since(offset).splitlines()
        recovered = [line for line in lines if RECOVERY_LINE in line]
        recovered_starts += bool(recovered)
        summary.append(
            f"start {n}/{STARTS} ({put_links_at}): ack {ms(t_ack - t0)}, links put "
            f"{ms(t_put - t0)}..{ms(t_links - t0)}, endpoint open {ms(t_open - t0)}, echo "
            f"{ms(t_echo - t0)}; recovered from link.get: {len(recovered)} link(s); "
            f"{len(procs)} provider process(es) exited {ms(exited_after)} after the stop's answer"
        )
        summary.extend(f"    {line.strip()}" for line in recovered)

    try:
        with known_host_race(lat):
            for n in range(1, STARTS + 1):
                await start_once(n)
    finally:
        print(f"\n=== links put while the provider starts ({put_links_at}) ===")
        print("\n".join(summary))
    print(
        f"RESULT {put_links_at}: {STARTS}/{STARTS} starts served the echo; "
        f"{recovered_starts}/{STARTS} logged '{RECOVERY_LINE}'; host dropped "
        f"{len(lat.host.dropped_handshakes())} wRPC handshake(s)"
    )


# --- 2. churn under load, one component instance ---------------------------------------------

LIVE_CLIENTS = 20
CHURN_CLIENTS = 20
CHURN_WAVES = 3
LIVE_ECHO_DEADLINE = 1.0  # every live client's echo arrives within this of sending


async def test_churn_under_load_with_one_component_instance(
    lattice: Lattice, frozen_archive: Path, component_wasm: Path
) -> None:
    """20 live clients exchange in a loop (send, wait for the echo) while waves of 20 clients
    connect, exchange one message and close (1000), all at once. The component (one instance)
    handles every message and session event in turn, each closed session with a goodbye
    publish that fails with "no such session": no live echo may take a second, nothing may
    stall (a publish to a gone session answered by a cluster timeout would, for seconds)."""
    with known_host_race(lattice):
        await churn(lattice, frozen_archive, component_wasm)


async def churn(lat: Lattice, frozen_archive: Path, component_wasm: Path) -> None:
    log = HostLog(lat.host.log_path)
    url = await set_up(lat, frozen_archive, component_wasm)

    live = await asyncio.gather(*(Client.open(url) for _ in range(LIVE_CLIENTS)))
    await asyncio.gather(*(greeted(c) for c in live))

    stop = asyncio.Event()
    live_latencies: list[float] = []
    slow: list[str] = []

    async def exchange(client: Client) -> int:
        n = 0
        while not stop.is_set():
            elapsed = await echo_round_trip(client, "echo.live", f"live {n}", timeout=10.0)
            live_latencies.append(elapsed)
            if elapsed > LIVE_ECHO_DEADLINE:
                slow.append(f"{client.session_id} #{n}: {ms(elapsed)}")
            n += 1
        return n

    closed_at: dict[str, float] = {}
    churn_latencies: list[float] = []

    async def churn_one(wave: int) -> float:
        t = time.monotonic()
        client = await Client.open(url)
        await greeted(client)
        churn_latencies.append(
            await echo_round_trip(client, "echo.churn", f"churn {wave}", timeout=10.0)
        )
        await client.close()  # normal closure, 1000
        closed_at[client.session_id] = time.monotonic()
        return time.monotonic() - t

    offset = log.size()
    t_start = time.monotonic()
    live_tasks = [asyncio.create_task(exchange(c)) for c in live]
    wave_times: list[str] = []
    try:
        for wave in range(1, CHURN_WAVES + 1):
            t = time.monotonic()
            durations = await asyncio.wait_for(
                asyncio.gather(*(churn_one(wave) for _ in range(CHURN_CLIENTS))), 30.0
            )
            wave_times.append(
                f"wave {wave}: {CHURN_CLIENTS} clients in {ms(time.monotonic() - t)} "
                f"(slowest connect+greeting+echo+close {ms(max(durations))})"
            )
        # The live clients keep exchanging until the component has said goodbye to every
        # closed session (its goodbye publishes come after the closes).
        goodbyes_seen: dict[str, float] = {}

        def all_goodbyes(text: str) -> bool:
            now = time.monotonic()
            for sid in closed_at:
                if sid not in goodbyes_seen and f"goodbye {sid}:" in text:
                    goodbyes_seen[sid] = now
            return len(goodbyes_seen) == len(closed_at)

        await log.wait_for(all_goodbyes, offset=offset, timeout=30.0, what="goodbye lines")
        t_goodbyes = time.monotonic()
    finally:
        stop.set()
        rounds = await asyncio.wait_for(asyncio.gather(*live_tasks), 60.0)
    total = time.monotonic() - t_start

    text = log.since(offset)
    goodbye_lines = [line for line in text.splitlines() if "goodbye ws_" in line]
    not_gone = [line for line in goodbye_lines if "no such session" not in line]
    goodbye_delays = [goodbyes_seen[sid] - closed_at[sid] for sid in closed_at]

    # A last round trip for everyone: nobody was left stuck.
    await asyncio.gather(*(echo_round_trip(c, "echo.after", "after", 5.0) for c in live))
    await close_and_wait_goodbyes(log, live)

    print("\n=== churn under load, one component instance ===")
    print("\n".join(wave_times))
    print(
        f"live clients: {LIVE_CLIENTS}, round trips {len(live_latencies)} "
        f"(per client {min(rounds)}..{max(rounds)}) in {total:.2f} s "
        f"({len(live_latencies) / total:.0f} echoes/s)"
    )
    print(
        f"live echo latency: p50 {ms(percentile(live_latencies, 0.5))}, "
        f"p99 {ms(percentile(live_latencies, 0.99))}, max {ms(max(live_latencies))}"
    )
    print(
        f"churn echo latency: p50 {ms(percentile(churn_latencies, 0.5))}, "
        f"p99 {ms(percentile(churn_latencies, 0.99))}, max {ms(max(churn_latencies))}"
    )
    print(
        f"goodbyes: {len(goodbye_lines)} logged for {len(closed_at)} closed sessions, "
        f"close -> goodbye logged: max {ms(max(goodbye_delays))} (log polled every 20 ms); "
        f"all closed sessions' goodbyes logged {ms(t_goodbyes - t_start)} after the start"
    )
    if goodbye_lines:
        print(f"e.g. {goodbye_lines[0].strip()}")
    print(f"host dropped {len(lat.host.dropped_handshakes())} wRPC handshake(s)")

    assert len(closed_at) == CHURN_CLIENTS * CHURN_WAVES
    assert not not_gone, not_gone[:5]
    assert not slow, f"{len(slow)} live echoes took over {LIVE_ECHO_DEADLINE}s: {slow[:10]}"
    assert max(live_latencies) < LIVE_ECHO_DEADLINE


# --- 3. ack, latency, throughput, CPU --------------------------------------------------------

LATENCY_ROUND_TRIPS = 300
BURST_CLIENTS = 10
BURST_PER_CLIENT = 200
BURST_WINDOW = 8  # messages in flight per client


async def test_ack_latency_and_cpu_of_a_burst(
    lattice: Lattice, js_nats: NatsServer, frozen_archive: Path, component_wasm: Path
) -> None:
    """A message with an `id` is echoed, then acked; then figures: sequential echo latency,
    msgs/s of a pipelined burst from several clients, CPU seconds per process over it."""
    with known_host_race(lattice):
        await ack_latency_and_cpu(lattice, js_nats, frozen_archive, component_wasm)


async def ack_latency_and_cpu(
    lat: Lattice, js_nats: NatsServer, frozen_archive: Path, component_wasm: Path
) -> None:
    url = await set_up(lat, frozen_archive, component_wasm)

    # --- ack ---
    a = await Client.open(url)
    await greeted(a)
    await a.message("echo.ack", "with id", id=7)
    await expect_message(a, a.session_id, "with id")
    ack = await a.recv()
    assert ack == {"type": "ack", "id": 7}, ack
    await a.message("echo.ack", "string id", reply_to="r1", id="m-1")
    await expect_message(a, "r1", "string id")
    ack = await a.recv()
    assert ack == {"type": "ack", "id": "m-1"}, ack

    # --- sequential latency, one client ---
    for n in range(20):  # warm-up
        await echo_round_trip(a, "echo.warm", f"w{n}", 5.0)
    latencies = [
        await echo_round_trip(a, "echo.lat", f"l{n}", 5.0) for n in range(LATENCY_ROUND_TRIPS)
    ]

    # --- burst: several clients, a window of messages in flight each ---
    clients = await asyncio.gather(*(Client.open(url) for _ in range(BURST_CLIENTS)))
    await asyncio.gather(*(greeted(c) for c in clients))

    async def burst(client: Client) -> list[float]:
        sent: dict[str, float] = {}
        got: list[float] = []
        window = asyncio.Semaphore(BURST_WINDOW)

        async def sender() -> None:
            for n in range(BURST_PER_CLIENT):
                await window.acquire()
                body = f"b{n}"
                sent[body] = time.monotonic()
                await client.message("echo.burst", body)

        task = asyncio.create_task(sender())
        try:
            while len(got) < BURST_PER_CLIENT:
                frame = await client.recv(10.0)
                assert frame.get("type") == "message", frame
                assert frame["subject"] == client.session_id, frame
                got.append(time.monotonic() - sent.pop(frame["body"]))
                window.release()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return got

    def tree() -> dict[int, ProcStat]:
        return {s.pid: s for s in process_tree(lat.host.proc.pid)}

    nats_before = proc_stat(js_nats.pid)
    before = tree()
    t = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*(burst(c) for c in clients)), 120.0)
    wall = time.monotonic() - t
    after = tree()
    nats_after = proc_stat(js_nats.pid)
    burst_latencies = [x for r in results for x in r]
    count = len(burst_latencies)
    assert count == BURST_CLIENTS * BURST_PER_CLIENT

    print("\n=== ack, latency, burst, CPU ===")
    print("ack: {'type': 'ack', 'id': 7} after the echo (and for a string id)")
    print(
        f"sequential echo, 1 client, {LATENCY_ROUND_TRIPS} round trips: "
        f"p50 {ms(percentile(latencies, 0.5))}, p99 {ms(percentile(latencies, 0.99))}, "
        f"max {ms(max(latencies))} ({LATENCY_ROUND_TRIPS / sum(latencies):.0f} msgs/s)"
    )
    print(
        f"burst: {BURST_CLIENTS} clients x {BURST_PER_CLIENT} msgs, {BURST_WINDOW} in flight "
        f"each: {count} echoes in {wall:.2f} s = {count / wall:.0f} msgs/s; round trip "
        f"p50 {ms(percentile(burst_latencies, 0.5))}, p99 {ms(percentile(burst_latencies, 0.99))}"
        f", max {ms(max(burst_latencies))}"
    )
    print(f"CPU seconds over the burst ({wall:.2f} s wall):")
    host_pid = lat.host.proc.pid
    for pid, s in after.items():
        cpu = s.cpu - (before[pid].cpu if pid in before else 0.0)
        role = "host" if pid == host_pid else "provider"
        print(
            f"  {role:8} pid {pid} ({s.comm}): {cpu:.2f} s "
            f"({cpu / wall * 100:.0f}% of a core, {cpu / count * 1e6:.0f} us/msg)  "
            f"{cmdline(pid)}"
        )
    if nats_before is not None and nats_after is not None:
        cpu = nats_after.cpu - nats_before.cpu
        print(f"  nats-server pid {js_nats.pid}: {cpu:.2f} s ({cpu / wall * 100:.0f}% of a core)")
    print(f"host dropped {len(lat.host.dropped_handshakes())} wRPC handshake(s)")

    await close_and_wait_goodbyes(HostLog(lat.host.log_path), [a, *clients])


# --- provider.start right after provider.stop ------------------------------------------------

RESTARTS = 3


@pytest.mark.parametrize(
    "archive_mode",
    [
        pytest.param(
            "frozen",
            marks=pytest.mark.xfail(
                reason="the host announces provider_stopped before the process it started has "
                "exited (its kill is asynchronous; the one-file bootloader then still deletes "
                "its unpacked files); a provider.start of the same file:// reference rewrites "
                "the host's cached copy of the binary and fails with 'Text file busy' while it "
                "is executed. The program itself exits as soon as the bootloader dies.",
                strict=False,
            ),
        ),
        "launcher",
    ],
)
async def test_start_right_after_stop(
    lattice: Lattice, request: pytest.FixtureRequest, component_wasm: Path, archive_mode: str
) -> None:
    """`provider.stop`, then `provider.start` as soon as `provider_stopped` is out (an
    operator's restart, or a redeploy): the provider starts again and serves."""
    archive: Path = request.getfixturevalue(f"{archive_mode}_archive")
    with known_host_race(lattice):
        await restarts(lattice, archive, archive_mode, component_wasm)


async def restarts(lat: Lattice, archive: Path, archive_mode: str, component_wasm: Path) -> None:
    url = await set_up(lat, archive, component_wasm)
    for n in range(1, RESTARTS + 1):
        procs = provider_processes(lat.host.proc.pid)
        mark = lat.events.mark
        await lat.ctl.provider_stop(lat.host_id, PROVIDER_ID)
        await lat.events.wait(
            "provider_stopped", lambda d: d.get("provider_id") == PROVIDER_ID, after=mark
        )
        still = [s for s in procs if (now := proc_stat(s.pid)) is not None and now.state != "Z"]
        print(
            f"restart {n}/{RESTARTS} ({archive_mode}): at provider_stopped, {len(still)} of "
            f"{len(procs)} provider process(es) still running: "
            + ", ".join(f"{s.pid} ({s.comm})" for s in still)
        )
        await lat.ctl.provider_start_and_wait(
            lat.events, lat.host_id, PROVIDER_ID, f"file://{archive}"
        )
        await lat.wait_provider_serving(PROVIDER_ID)
        client = await open_when_listening(url)
        await greeted(client)
        await client.message("echo.restart", f"restart {n}")
        await expect_message(client, client.session_id, f"restart {n}")
        await client.close()
