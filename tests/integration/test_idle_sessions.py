"""What an idle session holds: one task (its connection's), no writer, no inbound worker.

The provider runs in this process (the Python API), so its tasks are this loop's tasks
(`asyncio.all_tasks()`); the clients send no pings and hold no task of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provider import WebSocketMessagingProvider
from provider.natsserver import free_port
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

SESSIONS = 20
WAIT = 5.0
#: Turns of the loop allowed for tasks that have finished their work to end.
SETTLE_TURNS = 200


async def settled_task_count(expected: int) -> int:
    """The number of tasks, once it is `expected` (or after SETTLE_TURNS turns of the loop:
    then whatever it is)."""
    count = len(asyncio.all_tasks())
    for _ in range(SETTLE_TURNS):
        if count == expected:
            break
        await asyncio.sleep(0)  # a turn of the loop (not a wait for time)
        count = len(asyncio.all_tasks())
    return count


@pytest.fixture
async def provider() -> AsyncIterator[tuple[WebSocketMessagingProvider, str]]:
    lib = WebSocketMessagingProvider.from_config(
        {"mode": "server", "uri": f"127.0.0.1:{free_port()}/ws", "PING_INTERVAL_SEC": "0"}
    )
    port = await lib.start_server_if_needed()
    try:
        yield lib, f"ws://127.0.0.1:{port}/ws"
    finally:
        await lib.stop()


async def test_an_idle_session_holds_only_its_connection_task(
    provider: tuple[WebSocketMessagingProvider, str],
) -> None:
    lib, url = provider
    connected: asyncio.Queue[str] = asyncio.Queue()
    echoed: asyncio.Queue[BrokerMessage] = asyncio.Queue()

    @lib.on_message
    async def handle(msg: BrokerMessage) -> Ok | Err | None:
        if msg.subject == "ws.session.connected":
            await connected.put(msg.reply_to or "")
            return None
        echoed.put_nowait(msg)
        assert msg.reply_to is not None
        await lib.send_to_session(msg.reply_to.split(".")[0], BrokerMessage("echo", msg.body))
        return Ok()

    before = len(asyncio.all_tasks())
    clients = [await Client.open(url, ping_interval=None) for _ in range(SESSIONS)]
    for _ in clients:  # each session's worker has delivered its connected event
        await asyncio.wait_for(connected.get(), WAIT)
    assert await settled_task_count(before + SESSIONS) == before + SESSIONS

    # Busy for a moment (a message to the component, its ack, a reply, a broadcast), then
    # idle again: the tasks that did the work are gone.
    for client in clients:
        await client.message("chat", "hi", id="1")
    for client in clients:
        frames = [await client.recv(WAIT) for _ in range(2)]
        assert sorted(f["type"] for f in frames) == ["ack", "message"]
    assert await lib.broadcast_to_clients(BrokerMessage("all", b"everyone")) == SESSIONS
    for client in clients:
        assert (await client.recv(WAIT))["body"] == "everyone"
    assert await settled_task_count(before + SESSIONS) == before + SESSIONS

    for client in clients:
        await client.close()
