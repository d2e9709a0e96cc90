"""`WORKERS`: the process the host starts (worker 0) starts more worker processes of the
provider; they serve the same endpoints on the same ports and act as one through NATS."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from provider.listener import HAS_REUSE_PORT
from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.integration.test_resume import ResumingClient
from tests.integration.test_scale_out import list_cluster
from tests.wsclient import Client
from wasmcloud_provider_sdk import Err, Ok

pytestmark = pytest.mark.skipif(not HAS_REUSE_PORT, reason="this OS has no SO_REUSEPORT")

CONNECTIONS = 40  # chance that all land on one of two workers: 2 * 2**-40
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def server_links(host: FakeHost, port: int, component: str = "comp1") -> list[dict[str, Any]]:
    return [
        host.consumer_link(component),
        host.handler_link(
            component, source_config={"MODE": "server", "URI": f"127.0.0.1:{port}/ws"}
        ),
    ]


async def start_workers(
    host: FakeHost, port: int, workers: str = "2", count: int = 2
) -> ProviderProcess:
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=server_links(host, port), config={"WORKERS": workers}
    )
    await proc.wait_for_lines(" ready: ", count)
    return proc


def worker_pids(proc: ProviderProcess) -> dict[int, int]:
    """The newest pid of each worker (from worker 0's log)."""
    pids: dict[int, int] = {}
    for line in proc.stderr_lines:
        match = STARTED.search(line)
        if match:
            pids[int(match[1])] = int(match[2])
    return pids


async def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until process `pid` (not our child) has exited: its pidfd becomes readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        await asyncio.wait_for(gone.wait(), timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def open_spread(url: str, instances: int, list_fn: Any) -> list[Client]:
    """Clients on `url` until sessions are held by `instances` different workers."""
    clients = [await Client.open(url) for _ in range(CONNECTIONS)]
    held = {s["instance"] for s in await list_fn()}
    assert len(held) == instances, held
    return clients


async def health_answers(host: FakeHost, window: float = 0.5) -> list[dict[str, Any]]:
    """Every answer to one health request within `window` seconds."""
    assert host.nc is not None
    inbox = host.nc.new_inbox()
    sub = await host.nc.subscribe(inbox)
    await host.nc.publish(f"wasmbus.rpc.{host.lattice}.{host.provider_id}.health", b"", inbox)
    answers = [json.loads((await sub.next_msg(timeout=5)).data)]
    try:
        while True:
            answers.append(json.loads((await sub.next_msg(timeout=window)).data))
    except Exception:
        pass
    await sub.unsubscribe()
    return answers


async def test_two_workers_serve_one_port_and_act_as_one(host: FakeHost) -> None:
    comp = await TestComponent(host, "comp1").serve()
    port = free_port()
    await start_workers(host, port)
    clients = await open_spread(f"ws://127.0.0.1:{port}/ws", 2, lambda: list_cluster(host, comp))
    # A publish to every session, wherever the host's call lands.
    for i, client in enumerate(clients):
        assert await comp.publish(client.session_id, f"to-{i}".encode()) == Ok()
    for i, client in enumerate(clients):
        assert (await client.recv())["body"] == f"to-{i}"
    assert await comp.publish("broadcast", b"all") == Ok()
    for client in clients:
        assert (await client.recv())["body"] == "all"
    ghost = "ws_" + "G" * 22
    assert await comp.publish(ghost, b"x") == Err(f"no such session: {ghost}")
    # The host sees one provider: one health answer.
    assert len(await health_answers(host)) == 1
    for client in clients:
        await client.close()


async def first_connection(url: str, timeout: float = 30.0) -> Client:
    """The first client that gets through to `url` (refused until something listens there)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await Client.open(url)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)  # nothing to wait on: the port is not ours


async def test_clients_that_connect_at_start_up_are_spread_over_every_worker(
    host: FakeHost,
) -> None:
    """Worker 0 listens only once the other workers listen too: the clients that connect the
    moment the port opens (as clients reconnecting after a restart do) reach both workers,
    instead of all staying on worker 0, the only one listening for the first second."""
    comp = await TestComponent(host, "comp1").serve()
    port = free_port()
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=server_links(host, port), config={"WORKERS": "2"}
    )
    url = f"ws://127.0.0.1:{port}/ws"
    first = await first_connection(url)
    clients = await open_spread(url, 2, lambda: list_cluster(host, comp))
    assert any("worker 1 ready" in line for line in proc.stderr_lines)
    # Each process's own ready line says which worker it is (worker 0's says nothing).
    assert any(line.endswith("link(s) applied (worker 1)") for line in proc.stderr_lines)
    for client in [first, *clients]:
        await client.close()


async def test_a_storm_of_clients_at_start_up_reaches_each_of_three_workers(
    host: FakeHost,
) -> None:
    """WORKERS=3: every process binds once all have started (worker 0 tells the others when),
    so a burst of clients the moment the port opens (a reconnect storm after a restart)
    reaches all three, not whichever worker happened to be ready first."""
    comp = await TestComponent(host, "comp1").serve()
    port = free_port()
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=server_links(host, port), config={"WORKERS": "3"}
    )
    url = f"ws://127.0.0.1:{port}/ws"
    first = await first_connection(url)
    storm = await asyncio.gather(*(Client.open(url) for _ in range(59)))
    held = {s["instance"] for s in await list_cluster(host, comp)}
    assert len(held) == 3, held
    assert sum("ready" in line and "worker" in line for line in proc.stderr_lines) >= 2
    for client in [first, *storm]:
        await client.close()


async def test_stopped_while_waiting_for_the_workers_it_exits_at_once(host: FakeHost) -> None:
    """SIGTERM while worker 0 waits for the others to be ready: the start goes no further
    (nothing is bound after the signal) and the process exits cleanly, without waiting out
    the readiness timeout."""
    port = free_port()
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=server_links(host, port), config={"WORKERS": "2"}
    )
    await proc.wait_for_line("worker 1 started")
    proc.proc.send_signal(signal.SIGTERM)
    assert await proc.wait_exit(10) == 0, proc.stderr
    lines = proc.stderr_lines
    signalled = next(i for i, line in enumerate(lines) if "received SIGTERM" in line)
    assert not any("server endpoint" in line for line in lines[signalled:]), proc.stderr


async def test_without_reuse_port_worker_0_holds_the_port(host: FakeHost) -> None:
    """REUSE_PORT=false: one process only can bind the address, and it is worker 0 (the one
    the host knows), which then does not wait for the other workers before it binds."""
    comp = await TestComponent(host, "comp1").serve()
    port = free_port()
    links = [
        host.consumer_link("comp1"),
        host.handler_link(
            "comp1",
            source_config={"MODE": "server", "URI": f"127.0.0.1:{port}/ws", "REUSE_PORT": "false"},
        ),
    ]
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=links, config={"WORKERS": "2"}, instance_id="w0"
    )
    await proc.wait_for_lines(" ready: ", 2)
    clients = [await Client.open(f"ws://127.0.0.1:{port}/ws") for _ in range(10)]
    held = {s["instance"] for s in await list_cluster(host, comp)}
    assert held == {"w0"}, held
    for client in clients:
        await client.close()


async def test_link_put_and_delete_reach_every_worker(host: FakeHost) -> None:
    comp = await TestComponent(host, "comp1").serve()
    await start_workers(host, free_port())
    port2 = free_port()
    link = host.consumer_link(
        "comp1", name="second", target_config={"MODE": "server", "URI": f"127.0.0.1:{port2}/ws"}
    )
    await host.put_link(link)
    proc = host.processes[-1]
    await proc.wait_for_lines(f"server endpoint ws://127.0.0.1:{port2}/ws", 2)
    clients = await open_spread(f"ws://127.0.0.1:{port2}/ws", 2, lambda: list_cluster(host, comp))
    for client in clients:
        await client.close()
    await host.del_link(link)
    await proc.wait_for_lines("link comp1 -> prov1 (second) deleted", 2)
    for _ in range(CONNECTIONS // 2):  # neither worker listens there any more
        with pytest.raises(OSError, match="onnect"):
            await Client.open(f"ws://127.0.0.1:{port2}/ws")


async def test_shutdown_stops_every_worker_within_budget(host: FakeHost) -> None:
    proc = await start_workers(host, free_port(), workers="3", count=3)
    pids = worker_pids(proc)
    assert sorted(pids) == [1, 2]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await host.shutdown(timeout=1) == b"shutting down"
    assert await proc.wait_exit(5) == 0
    for pid in pids.values():
        await wait_gone(pid, 1.0)
    took = loop.time() - started
    assert took < 1.0, f"exit took {took:.2f} s"
    assert "did not stop" not in proc.stderr


async def test_a_killed_worker_is_restarted_and_only_its_sessions_are_lost(
    js_host: FakeHost,
) -> None:
    host = js_host
    comp = await TestComponent(host, "comp1").serve()
    port = free_port()
    proc = await start_workers(host, port)
    url = f"ws://127.0.0.1:{port}/ws"
    clients = []
    for _ in range(CONNECTIONS):
        client = ResumingClient(url)
        await client.connect()
        clients.append(client)
    listed = {s["session_id"]: s["instance"] for s in await list_cluster(host, comp)}
    victim_instance = next(i for i in listed.values() if i.endswith("-1"))
    lost = [c for c in clients if listed[c.session_id] == victim_instance]
    kept = [c for c in clients if listed[c.session_id] != victim_instance]
    assert lost and kept
    os.kill(worker_pids(proc)[1], signal.SIGKILL)
    await proc.wait_for_lines("worker 1 started", 2)
    await proc.wait_for_lines(" ready: ", 3)
    for client in kept:  # untouched
        assert await comp.publish(client.session_id, b"still") == Ok()
        assert (await client.recv())["body"] == "still"
    for client in lost:  # their connections died with the worker; they resume
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=5)
        again = await client.connect(resume=True)
        assert again["session_id"] == client.session_id and again["resumed"] is True, again
        assert await comp.publish(client.session_id, b"back") == Ok()
        assert (await client.recv())["body"] == "back"


async def test_when_worker_0_dies_the_others_exit(host: FakeHost) -> None:
    proc = await start_workers(host, free_port(), workers="3", count=3)
    pids = worker_pids(proc)
    await proc.kill()  # SIGKILL: no goodbye
    for pid in pids.values():
        await wait_gone(pid)


async def test_workers_auto_is_one_per_core(host: FakeHost) -> None:
    cores = os.cpu_count() or 1
    proc = await start_workers(host, free_port(), workers="auto", count=cores)
    assert sorted(worker_pids(proc)) == list(range(1, cores))


@pytest.mark.parametrize("value", ["0", "many", "-2", "1.5"])
async def test_a_bad_workers_value_is_an_error_naming_the_key(host: FakeHost, value: str) -> None:
    proc = await host.start_provider(WS_PROVIDER, config={"WORKERS": value})
    assert await proc.wait_exit(20) == 2
    assert f"invalid provider config WORKERS={value!r}" in proc.stderr, proc.stderr
