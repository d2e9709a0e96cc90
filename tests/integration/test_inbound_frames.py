"""The hub carries out what inbound.py decides, over a real socket: the cases no other
integration test reaches (a full topic index, an unsubscribe that frees a slot)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgpack
import pytest

from provider import WebSocketMessagingProvider
from provider.natsserver import free_port
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Ok


@pytest.fixture
async def lib() -> AsyncIterator[tuple[WebSocketMessagingProvider, str]]:
    provider = WebSocketMessagingProvider.from_config(
        {"mode": "server", "uri": f"127.0.0.1:{free_port()}/ws", "MAX_SUBSCRIPTIONS": "2"}
    )
    port = await provider.start_server_if_needed()
    try:
        yield provider, f"ws://127.0.0.1:{port}/ws"
    finally:
        await provider.stop()


async def test_a_full_topic_index_refuses_the_subscription_not_the_session(
    lib: tuple[WebSocketMessagingProvider, str],
) -> None:
    provider, url = lib
    provider.hub.topics.max_nodes = 2  # the provider-wide bound, made tiny
    client = await Client.open(url)
    await client.send({"type": "subscribe", "subject": "a.b", "id": "fits"})
    await client.send({"type": "subscribe", "subject": "c.d", "id": "full"})
    err = await client.recv()
    assert (err["type"], err["code"], err["id"]) == ("error", "too_many_subscriptions", "full")
    assert "topic index is full" in err["message"]
    # The first subscription holds, the refused one left nothing behind.
    assert await provider.hub.publish("local", BrokerMessage("a.b", b"1")) == Ok()
    assert (await client.recv())["subject"] == "a.b"
    [info] = await provider.list_ws_clients()
    assert info["subscriptions"] == ["a.b"]
    await client.close()


async def test_unsubscribe_frees_a_slot(lib: tuple[WebSocketMessagingProvider, str]) -> None:
    provider, url = lib
    client = await Client.open(url)
    for topic in ("one", "two"):
        await client.send({"type": "subscribe", "subject": topic})
    await client.send({"type": "subscribe", "subject": "three", "id": "no"})
    err = await client.recv()
    assert (err["code"], err["id"]) == ("too_many_subscriptions", "no")
    await client.send({"type": "unsubscribe", "subject": "one"})
    await client.send({"type": "subscribe", "subject": "three", "id": "yes"})
    # Frames are handled in order: once "three" reaches the client, both went through.
    await client.send({"type": "message", "subject": "sync", "id": "sync"})
    assert (await client.recv())["id"] == "sync"  # no_handler: nothing came in between
    assert await provider.hub.publish("local", BrokerMessage("three", b"3")) == Ok()
    assert (await client.recv())["subject"] == "three"
    assert await provider.hub.publish("local", BrokerMessage("one", b"1")) == Ok()
    assert await provider.hub.publish("local", BrokerMessage("two", b"2")) == Ok()
    assert (await client.recv())["subject"] == "two"  # not "one": unsubscribed
    await client.close()


async def test_frames_too_dear_to_decode_get_too_complex_and_the_session_stays() -> None:
    """The server bounds a structured body by its MAX_MESSAGE_BYTES, and a frame's values."""
    provider = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{free_port()}/ws", "MAX_MESSAGE_BYTES": "65536"}
    )
    port = await provider.start_server_if_needed()
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/ws")
        # 20 kB on the wire, 120 kB as the JSON body the component would get.
        await client.ws.send(msgpack.packb({"subject": "a", "body": ["\x01" * 20_000], "id": 1}))
        err = await client.recv()
        assert (err["code"], err["id"]) == ("too_complex", 1)
        assert "MAX_MESSAGE_BYTES (65536)" in err["message"]
        await client.send({"subject": "a", "body": [0] * 5000, "id": 2})
        err = await client.recv()  # refused before it is decoded: its id is not known
        assert (err["code"], err.get("id")) == ("too_complex", None)
        assert "values in arrays and objects" in err["message"]
        await client.send({"subject": "a", "body": [0] * 100, "id": 3})
        assert (await client.recv())["code"] == "no_handler"  # taken: no handler here
    finally:
        await provider.stop()
