"""`REUSE_PORT`: several processes (here: two providers in one process, each with its own
listening socket) share one port, and the kernel spreads the connections over them."""

from __future__ import annotations

import pytest

from provider import WebSocketMessagingProvider
from provider.listener import HAS_REUSE_PORT
from provider.natsserver import free_port
from tests.wsclient import Client

pytestmark = pytest.mark.skipif(not HAS_REUSE_PORT, reason="this OS has no SO_REUSEPORT")

CONNECTIONS = 40  # chance that all land on one of two sockets: 2 * 2**-40


async def test_two_listeners_share_one_port_and_both_get_connections() -> None:
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"}
    first = WebSocketMessagingProvider.from_config(config)
    second = WebSocketMessagingProvider.from_config(config)
    clients: list[Client] = []
    try:
        assert await first.start_server_if_needed() == port
        assert await second.start_server_if_needed() == port
        for _ in range(CONNECTIONS):
            clients.append(await Client.open(f"ws://127.0.0.1:{port}/ws"))
        on_first = {s["session_id"] for s in await first.list_ws_clients()}
        on_second = {s["session_id"] for s in await second.list_ws_clients()}
        assert on_first and on_second
        assert on_first | on_second == {c.session_id for c in clients}
        assert not on_first & on_second
    finally:
        for client in clients:
            await client.close()
        await first.stop()
        await second.stop()


async def test_off_a_second_listener_on_the_port_fails_to_bind() -> None:
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws", "REUSE_PORT": "false"}
    first = WebSocketMessagingProvider.from_config(config)
    second = WebSocketMessagingProvider.from_config(config)
    try:
        await first.start_server_if_needed()
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            await second.start_server_if_needed()
    finally:
        await first.stop()
        await second.stop()
