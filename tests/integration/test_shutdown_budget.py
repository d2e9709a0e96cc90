"""The host's shutdown request is honoured within its budget, whatever the clients do."""

from __future__ import annotations

import time

from websockets.asyncio.client import ClientConnection, connect

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost


async def test_exit_within_a_second_with_stuck_and_detached_clients(js_host: FakeHost) -> None:
    host = js_host
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"}
    proc = await host.start_provider(
        WS_PROVIDER,
        link_definitions=[
            host.consumer_link("echo"),
            host.handler_link("echo", source_config=config),
        ],
    )
    await host.wait_healthy()
    url = f"ws://127.0.0.1:{port}/ws"
    for _ in range(200):  # detached sessions, kept for a resume
        ws = await connect(url)
        await ws.recv()
        ws.transport.abort()
    for _ in range(200):
        await comp.next_event("ws.session.detached")
    stuck: list[ClientConnection] = []
    for _ in range(20):  # clients that never answer the close handshake
        ws = await connect(url, max_queue=1)
        await ws.recv()
        ws.transport.pause_reading()
        stuck.append(ws)
    started = time.monotonic()
    assert await host.shutdown(timeout=1) == b"shutting down"
    assert await proc.wait_exit(5) == 0
    took = time.monotonic() - started
    assert not [line for line in proc.stderr_lines if "exceeded" in line], proc.stderr
    assert took < 1.0, f"exit took {took:.2f} s"
    for ws in stuck:
        ws.transport.abort()
