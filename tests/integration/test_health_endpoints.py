"""`/healthz` and `/readyz` on the server listener (for load balancers and orchestrators)."""

from __future__ import annotations

import asyncio
import json

import pytest

from provider import WebSocketMessagingProvider
from provider.natsserver import NatsServer, free_port
from tests.harness import WS_PROVIDER, FakeHost


async def http_get(port: int, path: str) -> tuple[int, dict[str, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, (json.loads(body) if body.startswith(b"{") else {})


async def test_probes_and_their_switch() -> None:
    port = free_port()
    provider = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{port}"}
    )
    await provider.start_server_if_needed()
    try:
        assert await http_get(port, "/healthz") == (200, {"status": "ok"})
        assert await http_get(port, "/readyz") == (200, {"status": "ready"})
        provider.hub.readiness_check = lambda: (False, "not connected to the lattice")
        assert await http_get(port, "/readyz") == (503, {"status": "not connected to the lattice"})
    finally:
        await provider.stop()
    port = free_port()
    quiet = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{port}", "HEALTH": "false"}
    )
    await quiet.start_server_if_needed()
    try:
        assert (await http_get(port, "/healthz"))[0] == 404
    finally:
        await quiet.stop()


async def test_readyz_follows_the_lattice_connection() -> None:
    server = NatsServer().start()
    host = FakeHost(server.url)
    ws_port = free_port()
    try:
        await host.connect()
        links = [
            host.consumer_link("comp1"),
            host.handler_link(
                "comp1", source_config={"MODE": "server", "URI": f"127.0.0.1:{ws_port}"}
            ),
        ]
        proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
        await host.wait_healthy()
        assert await http_get(ws_port, "/readyz") == (200, {"status": "ready"})
        server.stop()
        await proc.wait_for_line("disconnected from lattice NATS")
        assert await http_get(ws_port, "/readyz") == (
            503,
            {"status": "not connected to the lattice"},
        )
        assert (await http_get(ws_port, "/healthz"))[0] == 200  # alive, just not ready
        server = NatsServer(port=server.port).start()
        await proc.wait_for_line("reconnected to lattice NATS", timeout=30)
        assert await http_get(ws_port, "/readyz") == (200, {"status": "ready"})
    finally:
        await host.close()
        server.stop()


async def test_metrics_scraped_over_http() -> None:
    from tests.wsclient import Client

    port = free_port()
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{port}",
            "METRICS": "true",
            "AUTH": "token",
            "AUTH_TOKENS": "t",
        }
    )
    await provider.start_server_if_needed()
    try:
        client = await Client.open(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": "Bearer t"}
        )
        await client.message("m", "x")
        assert (await client.recv())["code"] == "no_handler"
        await client.ws.send("not json")
        assert (await client.recv())["code"] == "bad_frame"
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus):
            await Client.open(f"ws://127.0.0.1:{port}/ws")  # no token: 401
        text = await scrape(port)
        assert "wsp_connections_total 1" in text
        assert "wsp_sessions_open 1" in text
        assert "wsp_messages_in_total 2" in text
        assert "wsp_bytes_out_total 0" not in text  # the welcome and two error frames
        assert 'wsp_errors_total{code="bad_frame"} 1' in text
        assert 'wsp_errors_total{code="no_handler"} 1' in text
        assert 'wsp_refused_upgrades_total{status="401"} 1' in text
        assert "# TYPE wsp_handler_latency_seconds histogram" in text
        await client.close()
    finally:
        await provider.stop()


async def scrape(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=0.0.4" in head
    return body.decode()
