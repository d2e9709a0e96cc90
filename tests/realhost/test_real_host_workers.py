"""`WORKERS=2` under a real wasmCloud 1.x host (wasmcloud-host 0.27.1 = wasmCloud v1.9.2).

The provider archive is started by the host with a named config holding `WORKERS=2`, the
Rust component and the links as in test_real_host.py. Checked: the host sees one provider;
clients that connect the moment the endpoint opens are spread over both worker processes
(worker 0 listens once worker 1 does); every client's echo comes back through the
component, wherever the host's `consumer.publish` lands (the hand-over between workers); a
broadcast reaches all; on `provider.stop` every session closes with 1001 and no worker
process is left behind.

Run on request: `make e2e-host`, or `pytest -m realhost tests/realhost`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
import pytest
from bench.procs import listening_on_port

from provider.natsserver import free_port
from tests.integration.test_workers import wait_gone
from tests.realhost.conftest import Lattice
from tests.realhost.test_real_host import (
    COMPONENT_ID,
    ENDPOINT_CONFIG,
    PROVIDER_ID,
    expect_closed,
    expect_message,
    greeted,
    open_when_listening,
    put_links,
)
from tests.wsclient import Client

pytestmark = [pytest.mark.realhost, pytest.mark.timeout(300)]

WORKERS_CONFIG = "ws-workers"
CLIENTS = 40  # all on one of two workers by chance: 2 in 2**40


def listeners(port: int) -> set[int]:
    """Every process on this machine listening on `port`."""
    pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    return {p for p in pids if listening_on_port(p, port)}


async def session_instances(lat: Lattice) -> dict[str, str]:
    """Session id -> the instance (worker) holding it, from the provider's cluster-wide
    list (any instance answers for all)."""
    inbox = lat.nc.new_inbox()
    sub = await lat.nc.subscribe(inbox)
    held: dict[str, str] = {}
    try:
        await lat.nc.publish(f"wsp.{lat.host.lattice}.{PROVIDER_ID}.list", b"", reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except Exception:
                break
            for session in msgpack.unpackb(msg.data)["sessions"]:
                held[session["session_id"]] = session["instance"]
    finally:
        await sub.unsubscribe()
    return held


@pytest.mark.parametrize("archive_mode", ["launcher", "frozen"])
async def test_two_workers_under_a_real_host(
    lattice: Lattice,
    request: pytest.FixtureRequest,
    component_wasm: Path,
    archive_mode: str,
) -> None:
    lat = lattice
    archive: Path = request.getfixturevalue(f"{archive_mode}_archive")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    await lat.ctl.config_put(ENDPOINT_CONFIG, {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"})
    await lat.ctl.config_put(WORKERS_CONFIG, {"WORKERS": "2"})
    await lat.ctl.component_scale_and_wait(
        lat.events, lat.host_id, COMPONENT_ID, f"file://{component_wasm}", 1
    )
    await put_links(lat, "links-first")
    started = await lat.ctl.provider_start_and_wait(
        lat.events, lat.host_id, PROVIDER_ID, f"file://{archive}", config=[WORKERS_CONFIG]
    )
    assert started.data["host_id"] == lat.host_id
    await lat.wait_provider_serving(PROVIDER_ID)

    # The first client as soon as the endpoint accepts, the rest right after it.
    clients: list[Client] = [await open_when_listening(url)]
    clients += [await Client.open(url) for _ in range(CLIENTS - 1)]
    for client in clients:
        await greeted(client)
    workers = listeners(port)
    assert len(workers) == 2, workers
    held = await session_instances(lat)
    assert {c.session_id for c in clients} <= set(held), held
    assert len(set(held.values())) == 2, held  # both workers hold sessions

    inventory = await lat.ctl.host_inventory(lat.host_id)
    assert [p["id"] for p in inventory["providers"]] == [PROVIDER_ID], inventory

    # Every echo comes back: the host's publish lands on either worker and is handed over
    # to the holder when it is the other one.
    for i, client in enumerate(clients):
        await client.message("echo.test", f"m{i}")
    for i, client in enumerate(clients):
        await expect_message(client, client.session_id, f"m{i}")
    await clients[0].message("broadcast", "to everyone")
    for client in clients:
        await expect_message(client, "broadcast", "to everyone")

    # provider.stop: every session closes with 1001 and both processes exit.
    mark = lat.events.mark
    await lat.ctl.provider_stop(lat.host_id, PROVIDER_ID)
    for client in clients:
        await expect_closed(client, 1001)

    def stopped(data: dict[str, Any]) -> bool:
        return data.get("provider_id") == PROVIDER_ID

    await lat.events.wait("provider_stopped", stopped, after=mark)
    for pid in workers:
        await wait_gone(pid, timeout=15)
    assert not any(listening_on_port(p, port) for p in workers)
    assert await lat.host.stop() == 0, lat.host.log_tail()
