"""Client-mode edge cases found in review: updates, stale requests, byte limits, a stuck
component, secrets in URIs. Driven through the provider's hooks and `OutboundClient`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from provider import WebSocketMessagingProvider
from provider.client import ClientState, OutboundClient
from provider.errors import NoSuchSession
from provider.natsserver import free_port
from provider.settings import ConfigError, client_settings
from tests.peers import PeerServer
from wasmcloud_provider_sdk import BrokerMessage, Err, LinkConfig, Ok


def consumer_link(config: dict[str, str]) -> LinkConfig:
    return LinkConfig(
        source_id="c",
        target_id="p",
        link_name="default",
        wit_namespace="wasmcloud",
        wit_package="messaging",
        interfaces=("consumer",),
        config=config,
    )


@pytest.fixture
async def peer() -> AsyncIterator[PeerServer]:
    server = await PeerServer().start()
    try:
        yield server
    finally:
        await server.stop()


async def test_failed_switch_to_server_mode_keeps_the_connection(peer: PeerServer) -> None:
    provider = WebSocketMessagingProvider()
    try:
        await provider.on_link_as_target(consumer_link({"MODE": "client", "URI": peer.url}))
        await provider.clients[("c", "default")].wait_connected(10)
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match="cannot listen"):
            await provider.on_link_updated_as_target(
                consumer_link({}), consumer_link({"MODE": "server", "URI": f"127.0.0.1:{port}"})
            )
        busy.close()
        client = provider.clients[("c", "default")]
        assert client.state is ClientState.CONNECTED
        assert client.publish(BrokerMessage("still", b"here")) == Ok()
        assert (await peer.next_json())["subject"] == "still"
    finally:
        await provider.stop()


async def test_update_carries_unsent_publishes_over(peer: PeerServer) -> None:
    provider = WebSocketMessagingProvider()
    try:
        down = f"ws://127.0.0.1:{free_port()}/x"
        old = consumer_link({"MODE": "client", "URI": down, "RECONNECT_MIN_MS": "50"})
        await provider.on_link_as_target(old)
        client = provider.clients[("c", "default")]
        for i in range(3):
            assert client.publish(BrokerMessage("q", str(i).encode())) == Ok()
        new = consumer_link({"MODE": "client", "URI": peer.url})
        await provider.on_link_updated_as_target(old, new)
        assert [(await peer.next_json())["body"] for _ in range(3)] == ["0", "1", "2"]
    finally:
        await provider.stop()


async def test_a_timed_out_request_is_never_sent_later() -> None:
    port = free_port()
    settings = client_settings(
        {
            "URI": f"ws://127.0.0.1:{port}/socket",
            "RECONNECT_MIN_MS": "20",
            "RECONNECT_MAX_MS": "100",
        }
    )
    client = OutboundClient(("c", "default"), settings, None)
    client.start()
    peer = PeerServer()
    peer.port = port
    try:
        result = await client.request("orders.place", b"once", 100)
        assert isinstance(result, Err) and "timed out" in result.message
        assert client.publish(BrokerMessage("marker", b"")) == Ok()
        await peer.start()
        assert (await peer.next_json())["subject"] == "marker"  # not orders.place
    finally:
        await client.close()
        await peer.stop()


async def test_outbound_buffer_is_bounded_in_bytes() -> None:
    settings = client_settings(
        {"URI": f"ws://127.0.0.1:{free_port()}/", "OUTBOUND_BUFFER_BYTES": "2500"}
    )
    client = OutboundClient(("c", "default"), settings, None)
    client.start()
    try:
        body = b"x" * 1000
        assert client.publish(BrokerMessage("a", body)) == Ok()
        assert client.publish(BrokerMessage("b", body)) == Ok()
        result = client.publish(BrokerMessage("c", body))
        assert isinstance(result, Err) and "buffer full" in result.message
        too_big = client.publish(BrokerMessage("d", b"y" * 5000))
        assert isinstance(too_big, Err) and "OUTBOUND_BUFFER_BYTES" in too_big.message
    finally:
        await client.close()


async def test_reader_stuck_on_a_slow_component_notices_a_dead_connection() -> None:
    peer = await PeerServer().start()
    gate = asyncio.Event()

    async def slow(msg: BrokerMessage) -> Ok:
        await gate.wait()
        return Ok()

    settings = client_settings(
        {"URI": peer.url, "INBOUND_QUEUE_LIMIT": "1", "RECONNECT_MIN_MS": "20", "FORMAT": "raw"}
    )
    client = OutboundClient(("c", "default"), settings, slow)
    client.start()
    try:
        ws = await peer.wait_connected()
        for i in range(5):  # 1 in the handler, 1 queued, then the reader waits
            await ws.send(f"m{i}")
        await asyncio.wait_for(ws.close(), 15)
        await peer.wait_attempts(2, timeout=10)  # it reconnected instead of hanging
    finally:
        gate.set()
        await asyncio.wait_for(client.close(), 5)
        await asyncio.wait_for(peer.stop(), 15)


def test_uri_user_info_never_appears_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        client_settings({"URI": "wss://tok_s3cr3t@example.com/"})
    assert "s3cr3t" not in str(info.value) and "AUTH_TOKEN" in str(info.value)
    with pytest.raises(ConfigError) as info:
        client_settings({"URI": "wss://user:pa55w0rd@example.com:99999/"})
    assert "pa55w0rd" not in str(info.value)


async def test_list_ws_clients_shows_both_modes_and_the_id_follows_the_link(
    peer: PeerServer,
) -> None:
    """The Python API: one server session and one client-mode connection, told apart by
    `mode`; the client-mode id survives a link update and is new after delete + put."""
    from tests.wsclient import Client

    provider = WebSocketMessagingProvider()
    server_link = LinkConfig(
        source_id="s",
        target_id="p",
        link_name="default",
        wit_namespace="wasmcloud",
        wit_package="messaging",
        interfaces=("consumer",),
        config={"MODE": "server", "URI": f"127.0.0.1:{free_port()}/ws"},
    )
    try:
        await provider.on_link_as_target(server_link)
        port = provider.hub.bound_port(("s", "default"))
        browser = await Client.open(f"ws://127.0.0.1:{port}/ws")
        first = consumer_link({"MODE": "client", "URI": peer.url})
        await provider.on_link_as_target(first)
        await provider.clients[("c", "default")].wait_connected(10)
        by_mode = {e["mode"]: e for e in await provider.list_ws_clients()}
        assert set(by_mode) == {"server", "client"}
        assert by_mode["server"]["session_id"] == browser.session_id
        assert by_mode["server"]["state"] == "connected"
        sid = by_mode["client"]["session_id"]
        assert by_mode["client"]["component_id"] == "c" and sid != browser.session_id
        assert await provider.send_to_session(sid, BrokerMessage("direct", b"d")) == Ok()
        assert (await peer.next_json())["subject"] == "direct"
        # An update that reconnects (a new header) keeps the logical session.
        updated = consumer_link({"MODE": "client", "URI": peer.url, "HEADER_X_V": "2"})
        await provider.on_link_updated_as_target(first, updated)
        await provider.clients[("c", "default")].wait_connected(10)
        assert provider.clients[("c", "default")].session_id == sid
        # Deleted and created again: a new session.
        await provider.on_link_deleted_as_target(updated)
        assert [e["mode"] for e in await provider.list_ws_clients()] == ["server"]
        await provider.on_link_as_target(first)
        [client_entry] = [e for e in await provider.list_ws_clients() if e["mode"] == "client"]
        assert client_entry["session_id"] != sid
        assert await provider.send_to_session(sid, BrokerMessage("x")) == NoSuchSession.of(sid)
        await browser.close()
    finally:
        await provider.stop()


async def test_a_closed_connection_stays_closed_and_refuses(peer: PeerServer) -> None:
    client = OutboundClient(("c", "default"), client_settings({"URI": peer.url}), None)
    client.start()
    await client.wait_connected(10)
    await client.close()
    await client.close("again")  # closing twice is not a transition: nothing happens
    assert client.state is ClientState.CLOSED
    assert client.publish(BrokerMessage("late", b"")) == Err(
        f"connection to {client.settings.safe_uri} is closed"
    )
