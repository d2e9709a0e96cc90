"""The Python API (README "Python API"), without a host: and what it lets us inspect directly
(slow consumers, leaks of pending requests)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from provider import WebSocketMessagingProvider
from provider.errors import NoSuchSession
from provider.natsserver import free_port
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


@pytest.fixture
async def lib() -> AsyncIterator[tuple[WebSocketMessagingProvider, str]]:
    provider = WebSocketMessagingProvider.from_config(
        {"mode": "server", "uri": f"127.0.0.1:{free_port()}/ws", "SEND_QUEUE_LIMIT": "8"}
    )
    port = await provider.start_server_if_needed()
    try:
        yield provider, f"ws://127.0.0.1:{port}/ws"
    finally:
        await provider.stop()


async def test_list_send_broadcast_and_python_handler(
    lib: tuple[WebSocketMessagingProvider, str],
) -> None:
    provider, url = lib
    received: asyncio.Queue[BrokerMessage] = asyncio.Queue()

    @provider.on_message
    async def handle(msg: BrokerMessage) -> Ok | Err | None:
        await received.put(msg)
        if msg.subject == "ws.session.connected":
            return None
        if msg.body == b"bad":
            return Err("rejected by python")
        # Echo through the library API, using the provider-set reply address.
        assert msg.reply_to is not None
        await provider.send_to_session(msg.reply_to.split(".")[0], BrokerMessage("echo", msg.body))
        return Ok()

    a, b = await Client.open(url), await Client.open(url)
    clients = await provider.list_ws_clients()
    assert {c["session_id"] for c in clients} == {a.session_id, b.session_id}
    entry = next(c for c in clients if c["session_id"] == a.session_id)
    assert entry["component_id"] == "local" and entry["remote_addr"].startswith("127.0.0.1:")
    assert (entry["mode"], entry["state"]) == ("server", "connected")
    assert entry["counters"]["messages_out"] >= 1  # the welcome frame

    await a.message("hi", "there")
    assert (await a.recv())["body"] == "there"
    await a.message("x", "bad", id="7")
    err = await a.recv()
    assert err["code"] == "handler_error" and err["message"] == "rejected by python"
    assert await provider.broadcast_to_clients(BrokerMessage("all", b"everyone")) == 2
    assert (await a.recv())["body"] == "everyone"
    assert (await b.recv())["body"] == "everyone"
    ghost = "ws_" + "n" * 22
    assert await provider.send_to_session(ghost, BrokerMessage("x")) == NoSuchSession.of(ghost)
    await a.send({"type": "subscribe", "subject": "t.>"})
    await a.message("sync", "s")  # the handler echoes: subscription applied before this
    await a.recv()
    listed = next(c for c in await provider.list_ws_clients() if c["session_id"] == a.session_id)
    assert listed["subscriptions"] == ["t.>"]
    await a.close()
    while True:  # the session table is cleaned up on disconnect
        if len(await provider.list_ws_clients()) == 1:
            break
        await received.get()


async def test_session_ids_are_unique_and_unguessable(
    lib: tuple[WebSocketMessagingProvider, str],
) -> None:
    from provider.ids import new_session_id

    ids = {new_session_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 25 and "." not in i for i in ids)


def small_buffer_socket(url: str) -> socket.socket:
    """A client socket with a tiny receive buffer, so that not reading fills it quickly
    (loopback autotuning would otherwise buffer tens of megabytes)."""
    port = int(url.split(":")[2].split("/")[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_slow_consumer_is_disconnected_without_delaying_others(
    lib: tuple[WebSocketMessagingProvider, str],
) -> None:
    provider, url = lib
    # max_queue=1: the slow client stops reading from its socket after one message.
    slow = await connect(url, max_queue=1, sock=small_buffer_socket(url))
    fast = await Client.open(url)
    [slow_id] = [s for s in provider.hub.sessions if s != fast.session_id]
    slow_session = provider.hub.sessions[slow_id]
    payload = os.urandom(65536)  # incompressible, whatever the client offers
    for _ in range(500):
        await provider.broadcast_to_clients(BrokerMessage("flood", payload))
        frame = await fast.recv()  # the fast client gets every message without delay
        assert frame["subject"] == "flood"
        if slow_session.state.value != "open":
            break
    assert slow_session.close_code == 1008, "the slow session was never disconnected"
    await drain_until_closed(slow, 1008)


async def test_send_queue_is_bounded_in_bytes() -> None:
    """A client that never reads pins at most SEND_QUEUE_BYTES, whatever SEND_QUEUE_LIMIT
    allows: 64 frames of 256 KiB (16 MiB) are far below 1024 frames, far above 1 MiB."""
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{free_port()}/ws",
            "SEND_QUEUE_BYTES": str(1024 * 1024),
        }
    )
    port = await provider.start_server_if_needed()
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        slow = await connect(url, max_queue=1, sock=small_buffer_socket(url))
        [session] = provider.hub.sessions.values()
        payload = os.urandom(256 * 1024)
        for _ in range(64):
            await provider.broadcast_to_clients(BrokerMessage("big", payload))
            if session.state.value != "open":
                break
        assert session.close_code == 1008, "the byte bound never applied"
        slow.transport.abort()
    finally:
        await provider.stop()


async def drain_until_closed(ws: ClientConnection, code: int) -> None:
    """Read everything the server sent, then its close frame, which must carry `code`."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == code


async def test_drop_oldest_policy_keeps_the_session() -> None:
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{free_port()}",
            "SEND_QUEUE_LIMIT": "4",
            "SLOW_CONSUMER": "drop_oldest",
        }
    )
    port = await provider.start_server_if_needed()
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        slow = await connect(url, max_queue=1, sock=small_buffer_socket(url))
        payload = os.urandom(65536)
        dropped = 0
        for _ in range(2000):
            await provider.broadcast_to_clients(BrokerMessage("flood", payload))
            await asyncio.sleep(0)  # let the writer run (a busy loop would starve it)
            [info] = await provider.list_ws_clients()
            dropped = info["counters"]["dropped_out"]
            if dropped:
                break
        assert dropped > 0
        assert len(await provider.list_ws_clients()) == 1  # still connected
        slow.transport.abort()  # it never reads, so it could not complete a close handshake
    finally:
        await provider.stop()


async def test_pending_requests_do_not_leak(lib: tuple[WebSocketMessagingProvider, str]) -> None:
    provider, url = lib
    client = await Client.open(url)
    hub = provider.hub
    session = hub.sessions[client.session_id]
    # Timeout path.
    result = await hub.request("local", client.session_id, b"q", 100)
    assert isinstance(result, Err)
    assert session.pending_requests == {}
    # Disconnect path.
    task = asyncio.create_task(hub.request("local", client.session_id, b"q", 10_000))
    await client.recv()  # the first (timed out) request
    await client.recv()  # this request
    await client.close()
    assert isinstance(await asyncio.wait_for(task, 5), Err)
    assert session.pending_requests == {}


async def test_bad_standalone_config_names_the_key() -> None:
    from provider.settings import ConfigError

    provider = WebSocketMessagingProvider.from_config({"MODE": "server", "URI": "nowhere"})
    with pytest.raises(ConfigError, match="URI='nowhere'"):
        await provider.start_server_if_needed()
    provider = WebSocketMessagingProvider.from_config({"MODE": "sideways"})
    with pytest.raises(ConfigError, match="MODE='sideways': one of client, server"):
        await provider.start_server_if_needed()


@pytest.mark.parametrize(("setting", "negotiated"), [(None, False), ("on", True), ("off", False)])
async def test_compression_setting(setting: str | None, negotiated: bool) -> None:
    config = {"MODE": "server", "URI": f"127.0.0.1:{free_port()}"}
    if setting is not None:
        config["COMPRESSION"] = setting
    provider = WebSocketMessagingProvider.from_config(config)
    port = await provider.start_server_if_needed()
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", compression="deflate") as ws:
            header = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
            assert (header is not None and "permessage-deflate" in header) is negotiated
    finally:
        await provider.stop()


async def test_untracked_quiet_endpoint() -> None:
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{free_port()}",
            "ENABLE_SESSION_TRACKING": "false",
            "WELCOME": "false",
            "SESSION_EVENTS": "false",
        }
    )
    seen: asyncio.Queue[BrokerMessage] = asyncio.Queue()

    @provider.on_message
    async def handle(msg: BrokerMessage) -> None:
        await seen.put(msg)

    port = await provider.start_server_if_needed()
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/ws", welcome=False)
        await client.message("first", "1")
        msg = await asyncio.wait_for(seen.get(), 5)
        assert msg.subject == "first"  # no ws.session.connected before it
        assert await provider.list_ws_clients() == []
        sid = msg.reply_to
        assert sid is not None
        assert isinstance(await provider.send_to_session(sid, BrokerMessage("x")), Err)
        assert await provider.broadcast_to_clients(BrokerMessage("all", b"b")) == 1
        assert (await client.recv())["body"] == "b"
        await client.send({"type": "subscribe", "subject": "t"})
        assert (await client.recv())["code"] == "unsupported"
    finally:
        await provider.stop()


async def test_subprotocol_negotiation(lib: tuple[WebSocketMessagingProvider, str]) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.typing import Subprotocol

    _, url = lib
    with pytest.raises(InvalidStatus) as info:
        await connect(url, subprotocols=[Subprotocol("chat.v9")])
    assert info.value.response.status_code == 400
    assert b"wasmcloud.messaging.v1" in info.value.response.body
    # A negotiated JSON subprotocol wins over ?format=msgpack.
    async with connect(
        url + "?format=msgpack", subprotocols=[Subprotocol("wasmcloud.messaging.v1")]
    ) as ws:
        assert ws.subprotocol == "wasmcloud.messaging.v1"
        assert isinstance(await ws.recv(), str)
    async with connect(url + "?format=msgpack") as ws:
        assert isinstance(await ws.recv(), bytes)


async def test_review_fixes_on_sessions(lib: tuple[WebSocketMessagingProvider, str]) -> None:
    """Subscription cap, session-shaped topics, `<sid>.`, and forged reply-to on answers."""
    provider, url = lib
    hub = provider.hub
    gone = asyncio.Event()

    @provider.on_message
    async def handle(msg: BrokerMessage) -> None:
        if msg.subject == "ws.session.disconnected":
            gone.set()

    client = await Client.open(url)
    sid = client.session_id
    for n in range(100):
        await client.send({"type": "subscribe", "subject": f"t{n}", "id": n})
    await client.send({"type": "subscribe", "subject": "one.too.many", "id": "x"})
    err = await client.recv()
    assert (err["code"], err["id"]) == ("too_many_subscriptions", "x")
    await client.send({"type": "subscribe", "subject": f"{sid}.x"})
    assert (await client.recv())["code"] == "bad_subject"
    assert await hub.publish("local", BrokerMessage(f"{sid}.", b"x")) == Ok()
    assert (await client.recv())["subject"] == sid
    # An answer to a request cannot redirect the component's reply.
    task = asyncio.create_task(hub.request("local", sid, b"q", 5000))
    question = await client.recv()
    await client.send({"subject": question["reply_to"], "body": "a", "reply_to": "broadcast"})
    answer = await task
    assert isinstance(answer, Ok) and isinstance(answer.value, BrokerMessage)
    assert answer.value.reply_to == f"{sid}.broadcast"
    await client.close()
    await asyncio.wait_for(gone.wait(), 5)  # delivered after the session's cleanup
    assert hub.topics.empty()
    assert hub.sessions == {}


async def test_overloaded_component_gets_error_frames_and_keeps_the_session() -> None:
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{free_port()}",
            "INBOUND_QUEUE_LIMIT": "1",
            "SESSION_EVENTS": "false",
        }
    )
    gate = asyncio.Event()
    blocked = asyncio.Event()
    delivered: list[str] = []

    @provider.on_message
    async def handle(msg: BrokerMessage) -> None:
        delivered.append(msg.subject)
        if msg.subject == "block":
            blocked.set()
            await gate.wait()

    port = await provider.start_server_if_needed()
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/ws")
        await client.message("block", "", id=1)
        await asyncio.wait_for(blocked.wait(), 5)  # the worker is stuck on it
        await client.message("queued", "", id=2)  # fills the queue (limit 1)
        await client.message("extra", "", id=3)  # refused, not waited for
        err = await client.recv()
        assert (err["code"], err["id"]) == ("overloaded", 3)
        # Still reading: a request answer gets through while the component is stuck.
        task = asyncio.create_task(provider.hub.request("local", client.session_id, b"q", 5000))
        question = await client.recv()
        await client.message(question["reply_to"], "answer")
        assert isinstance(await task, Ok)
        gate.set()
        assert hub_state_ok(delivered)
    finally:
        await provider.stop()


def hub_state_ok(delivered: list[str]) -> bool:
    return delivered[0] == "block" and "extra" not in delivered


async def test_disconnect_event_survives_a_full_inbound_queue() -> None:
    provider = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{free_port()}", "INBOUND_QUEUE_LIMIT": "1"}
    )
    events: asyncio.Queue[str] = asyncio.Queue()

    @provider.on_message
    async def handle(msg: BrokerMessage) -> None:
        await events.put(msg.subject)

    port = await provider.start_server_if_needed()
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/ws")
        assert await asyncio.wait_for(events.get(), 5) == "ws.session.connected"
        await client.close()
        assert await asyncio.wait_for(events.get(), 5) == "ws.session.disconnected"
    finally:
        await provider.stop()


async def test_failed_update_keeps_the_endpoint() -> None:
    from provider.errors import EndpointConflict
    from provider.settings import server_settings

    port = free_port()
    provider = WebSocketMessagingProvider()
    hub = provider.hub
    await hub.add_endpoint(("a", "default"), server_settings({"URI": f"127.0.0.1:{port}/a"}), None)
    await hub.add_endpoint(("b", "default"), server_settings({"URI": f"127.0.0.1:{port}/b"}), None)
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/a")
        with pytest.raises(EndpointConflict):  # a moves onto b's path: refused
            await hub.add_endpoint(
                ("a", "default"), server_settings({"URI": f"127.0.0.1:{port}/b"}), None
            )
        assert await hub.send_to_session(client.session_id, BrokerMessage("still", b"up")) == Ok()
        assert (await client.recv())["subject"] == "still"
    finally:
        await provider.stop()


async def test_broadcast_subject_of_one_endpoint_does_not_hide_topics_of_another() -> None:
    from provider.settings import server_settings

    port = free_port()
    provider = WebSocketMessagingProvider()
    hub = provider.hub
    await hub.add_endpoint(
        ("c", "one"),
        server_settings({"URI": f"127.0.0.1:{port}/one", "BROADCAST_SUBJECT": "news"}),
        None,
    )
    await hub.add_endpoint(("c", "two"), server_settings({"URI": f"127.0.0.1:{port}/two"}), None)
    try:
        one = await Client.open(f"ws://127.0.0.1:{port}/one")
        two = await Client.open(f"ws://127.0.0.1:{port}/two")
        synced = asyncio.Event()

        async def handle(msg: BrokerMessage) -> Ok:
            if msg.subject == "sync":
                synced.set()
            return Ok()

        hub.set_handler(("c", "two"), handle)
        await two.send({"type": "subscribe", "subject": "news"})
        await two.message("sync")  # frames are read in order: the subscription is in place
        await asyncio.wait_for(synced.wait(), 5)
        assert await hub.publish("c", BrokerMessage("news", b"n")) == Ok()
        assert (await one.recv())["body"] == "n"  # broadcast on endpoint one
        assert (await two.recv())["body"] == "n"  # topic subscriber on endpoint two
    finally:
        await provider.stop()


async def test_config_errors_do_not_show_secret_values() -> None:
    from provider.settings import ConfigError
    from wasmcloud_provider_sdk import LinkConfig, LinkNotInEffect, SecretValue

    provider = WebSocketMessagingProvider()
    link = LinkConfig(
        source_id="c",
        target_id="p",
        link_name="default",
        wit_namespace="wasmcloud",
        wit_package="messaging",
        interfaces=("consumer",),
        config={"MODE": "server"},
        secrets={"MAX_SESSIONS": SecretValue(kind="String", value="s3cr3t-value")},
    )
    with pytest.raises(LinkNotInEffect) as kept:  # kept, but the pair is misconfigured
        await provider.on_link_as_target(link)
    assert "s3cr3t" not in str(kept.value) and "MAX_SESSIONS" in str(kept.value)
    error = provider.pair_errors[("c", "default")]
    assert "s3cr3t" not in error and "MAX_SESSIONS" in error
    with pytest.raises(ConfigError) as info:  # an update with the bad value is refused
        await provider.on_link_updated_as_target(link, link)
    assert "s3cr3t" not in str(info.value)


async def test_decompressed_size_is_limited() -> None:
    """A tiny compressed frame that inflates past MAX_MESSAGE_BYTES closes with 1009."""
    provider = WebSocketMessagingProvider.from_config(
        {
            "MODE": "server",
            "URI": f"127.0.0.1:{free_port()}",
            "COMPRESSION": "on",
            "MAX_MESSAGE_BYTES": "4096",
        }
    )
    port = await provider.start_server_if_needed()
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", compression="deflate") as ws:
            await ws.recv()
            await ws.send("0" * 200_000)  # ~200 bytes on the wire, 200 kB inflated
            await drain_until_closed(ws, 1009)
    finally:
        await provider.stop()


async def test_subscription_memory_is_bounded(lib: tuple[WebSocketMessagingProvider, str]) -> None:
    """Long many-token patterns: refused past 16 tokens and past MAX_SUBSCRIPTION_BYTES per
    session; what is accepted costs the index a bounded number of nodes."""
    provider, url = lib
    client = await Client.open(url)
    deep = ".".join("a" * 8 for _ in range(17))
    await client.send({"type": "subscribe", "subject": deep, "id": "deep"})
    err = await client.recv()
    assert (err["code"], err["id"]) == ("bad_subject", "deep")
    accepted = refused = 0
    for n in range(100):
        pattern = ".".join(f"{n}x{i}" + "y" * 10 for i in range(16))[:256]
        await client.send({"type": "subscribe", "subject": pattern, "id": n})
        # No handler here: the message is answered with `no_handler`, after the subscribe.
        await client.message("sync", "s", id=f"sync{n}")
        frame = await client.recv()
        if frame["id"] == n:
            assert frame["code"] == "too_many_subscriptions"
            assert "MAX_SUBSCRIPTION_BYTES" in frame["message"]
            refused += 1
            frame = await client.recv()
        else:
            accepted += 1
        assert frame["id"] == f"sync{n}"
    assert accepted == 4096 // 239 and refused == 100 - accepted
    assert provider.hub.topics.nodes <= accepted * 16
    await client.close()


async def test_a_few_large_messages_do_not_make_a_reader_a_slow_consumer() -> None:
    """Frames larger than SEND_QUEUE_BYTES, sent in a burst to a client that reads: the
    byte bound applies only once a few frames are queued."""
    provider = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{free_port()}/ws", "SEND_QUEUE_BYTES": "1048576"}
    )
    port = await provider.start_server_if_needed()
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        # A small receive buffer: frames wait in the send queue while the client reads them.
        client = await Client.open(url, max_size=None, sock=small_buffer_socket(url))
        big = b"x" * 1_500_000
        for _ in range(4):
            await provider.broadcast_to_clients(BrokerMessage("big", big))
        for _ in range(4):
            assert len((await client.recv())["body"]) == len(big)
        [info] = await provider.list_ws_clients()
        assert info["state"] == "connected"
        await client.close()
    finally:
        await provider.stop()
