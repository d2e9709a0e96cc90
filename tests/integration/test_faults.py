"""Faults between the provider and its component (README "Outages"): what a WebSocket client
sees when the component returns Err, is not running, is too slow, traps, or when the lattice
NATS goes away and comes back. Real nats-server, real wRPC component, real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nats.aio.client import Client as NatsClient

from provider.natsserver import NatsServer, free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

#: Well under the default HANDLER_TIMEOUT_SEC (30) and the wRPC handshake timeout (10 s): an
#: answer that only comes when a timeout fires misses this.
PROMPT = 3.0


def server_config(port: int, path: str = "/ws", **extra: str) -> dict[str, str]:
    return {"MODE": "server", "URI": f"127.0.0.1:{port}{path}", **extra}


async def deploy(host: FakeHost, component: str, config: dict[str, str]) -> ProviderProcess:
    """The provider with a consumer link from and a handler link to `component`."""
    links = [host.consumer_link(component), host.handler_link(component, source_config=config)]
    proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    return proc


async def expect_error(
    client: Client, code: str, frame_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    frame = await client.recv(timeout)
    assert frame["type"] == "error" and frame["code"] == code, frame
    assert frame["id"] == frame_id, frame
    return frame


async def expect_ack(client: Client, frame_id: str, timeout: float = 10.0) -> None:
    frame = await client.recv(timeout)
    assert frame == {"type": "ack", "id": frame_id}, frame


async def http_get(port: int, path: str) -> tuple[int, dict[str, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def round_trip(nc: NatsClient) -> None:
    """Prove the server has processed everything `nc` sent before (subscriptions too)."""
    probe = nc.new_inbox()
    sub = await nc.subscribe(probe)
    await nc.publish(probe, b"")
    await sub.next_msg(timeout=10)
    await sub.unsubscribe()


async def test_component_err_is_handler_error_not_retryable(host: FakeHost) -> None:
    echo = await TestComponent(host, "echo").serve()
    port = free_port()
    await deploy(host, "echo", server_config(port))
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    echo.answer = Err("nope, not today")
    await client.message("x", "y", id="m1")
    frame = await expect_error(client, "handler_error", "m1")
    assert frame["retryable"] is False and frame["message"] == "nope, not today"
    echo.answer = Ok()
    await client.message("x", "y", id="m2")
    await expect_ack(client, "m2")


async def test_component_not_running_is_component_unavailable(host: FakeHost) -> None:
    port = free_port()
    await deploy(host, "later", server_config(port))  # nobody serves "later" yet
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    await client.message("x", "1", id="m1")
    frame = await expect_error(client, "component_unavailable", "m1", timeout=PROMPT)
    assert frame["retryable"] is True
    # The session stayed open; once the component runs, the same session is served.
    later = await TestComponent(host, "later").serve()
    await client.message("x", "2", id="m2")
    await expect_ack(client, "m2")
    assert (await later.next()).body == b"2"
    # Stopped again (e.g. scaled to zero): the same code, still the same session.
    await later.stop()
    await client.message("x", "3", id="m3")
    await expect_error(client, "component_unavailable", "m3", timeout=PROMPT)
    await later.serve()
    await client.message("x", "4", id="m4")
    await expect_ack(client, "m4")


async def test_slow_component_times_out_without_stalling_other_sessions(
    host: FakeHost,
) -> None:
    echo = await TestComponent(host, "echo").serve()
    port = free_port()
    limit = 2.0
    await deploy(host, "echo", server_config(port, HANDLER_TIMEOUT_SEC=str(limit)))
    url = f"ws://127.0.0.1:{port}/ws"
    slow, fast = await Client.open(url), await Client.open(url)
    stuck = asyncio.Event()  # never set: this call never returns
    echo.gate = stuck
    started = time.monotonic()
    await slow.message("stuck", "s", id="s1")
    while (await echo.next()).subject != "stuck":
        pass
    echo.gate = None  # later calls are answered at once; the stuck one still waits
    # Other sessions are served while the slow one waits for its timeout.
    for i in range(3):
        await fast.message("fast", str(i), id=f"f{i}")
        await expect_ack(fast, f"f{i}")
    acked = time.monotonic()
    frame = await expect_error(slow, "handler_timeout", "s1")
    timed_out = time.monotonic()
    assert frame["retryable"] is True
    assert acked < started + limit <= timed_out + 0.05
    assert timed_out - started < limit + PROMPT  # HANDLER_TIMEOUT_SEC, not the wRPC timeout
    # The slow session is not broken by it.
    await slow.message("again", "a", id="s2")
    await expect_ack(slow, "s2")
    stuck.set()


async def test_trapping_component_is_delivery_failed(host: FakeHost) -> None:
    echo = await TestComponent(host, "echo").serve()
    port = free_port()
    await deploy(host, "echo", server_config(port))
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    echo.trap = True
    await client.message("x", "boom", id="t1")
    frame = await expect_error(client, "delivery_failed", "t1", timeout=PROMPT)
    assert frame["retryable"] is False
    assert (await echo.next()).body == b"boom"  # it was called: it failed, not missing
    echo.trap = False
    await client.message("x", "fine", id="t2")
    await expect_ack(client, "t2")


async def test_lattice_outage_keeps_sessions_and_recovers() -> None:
    server = NatsServer().start()
    host = FakeHost(server.url)
    port = free_port()
    stuck = asyncio.Event()
    try:
        await host.connect()
        echo = await TestComponent(host, "echo").serve()
        proc = await deploy(host, "echo", server_config(port))
        url = f"ws://127.0.0.1:{port}/ws"
        clients = [await Client.open(url) for _ in range(3)]
        for i, client in enumerate(clients):
            await client.message("before", str(i), id=f"b{i}")
            await expect_ack(client, f"b{i}")
        assert await http_get(port, "/readyz") == (200, {"status": "ready"})
        # One call is in the component when NATS goes away: its answer can never arrive.
        echo.gate = stuck
        await clients[0].message("inflight", "x", id="i0")
        while (await echo.next()).subject != "inflight":
            pass

        server.stop()
        await proc.wait_for_line("disconnected from lattice NATS")
        await expect_error(clients[0], "lattice_unavailable", "i0", timeout=PROMPT)
        assert await http_get(port, "/readyz") == (
            503,
            {"status": "not connected to the lattice"},
        )
        # Every session keeps sending and gets a prompt, retryable answer; none is closed.
        for round_ in range(2):
            for i, client in enumerate(clients):
                await client.message("during", f"{round_}.{i}", id=f"d{round_}.{i}")
            for i, client in enumerate(clients):
                frame = await expect_error(
                    client, "lattice_unavailable", f"d{round_}.{i}", timeout=PROMPT
                )
                assert frame["retryable"] is True
        for client in clients:
            await asyncio.wait_for(await client.ws.ping(), 5)

        server = NatsServer(port=server.port).start()
        await proc.wait_for_line("reconnected to lattice NATS", timeout=30)
        assert host.nc is not None
        await host.nc.flush(timeout=30)  # the test host (serving the component) is back too
        await round_trip(host.nc)
        assert await http_get(port, "/readyz") == (200, {"status": "ready"})
        # Traffic resumes end to end on the same sessions, with nothing done by the clients.
        echo.gate = None
        for i, client in enumerate(clients):
            await client.message("after", str(i), id=f"a{i}")
            await expect_ack(client, f"a{i}")
            msg = await echo.next()
            assert msg == BrokerMessage("after", str(i).encode(), client.session_id)
            assert await echo.publish(client.session_id, b"welcome back") == Ok()
            assert (await client.recv())["body"] == "welcome back"
    finally:
        stuck.set()
        try:
            await host.close()
        finally:
            server.stop()


async def test_python_handler_that_raises_is_delivery_failed() -> None:
    from provider import WebSocketMessagingProvider

    port = free_port()
    provider = WebSocketMessagingProvider.from_config(server_config(port))

    @provider.on_message
    async def handle(msg: BrokerMessage) -> None:
        if msg.body == b"boom":
            raise RuntimeError("bug in the handler")

    await provider.start_server_if_needed()
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/ws")
        await client.message("x", "boom", id="p1")
        frame = await expect_error(client, "delivery_failed", "p1", timeout=PROMPT)
        assert frame["retryable"] is False
        await client.message("x", "fine", id="p2")
        await expect_ack(client, "p2")
    finally:
        await provider.stop()
