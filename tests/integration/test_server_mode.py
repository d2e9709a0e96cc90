"""Server mode under a test host: real nats-server, real wRPC, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import json

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


class Deployment:
    """A provider process with server-mode links to components, and its URL."""

    def __init__(self, host: FakeHost, proc: ProviderProcess, port: int) -> None:
        self.host = host
        self.proc = proc
        self.port = port

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


async def deploy(
    host: FakeHost, components: dict[str, dict[str, str]], *, handler: bool = True
) -> Deployment:
    """Start the provider with, per component, a consumer link and (optionally) a handler
    link whose source config is given."""
    links = []
    for cid, config in components.items():
        links.append(host.consumer_link(cid))
        if handler:
            links.append(host.handler_link(cid, source_config=config))
        else:
            links[-1] = host.consumer_link(cid, target_config=config)
    proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    first = next(iter(components.values()))
    port = int(first["URI"].split(":")[1].split("/")[0])
    return Deployment(host, proc, port)


def server_config(port: int, path: str = "/ws", **extra: str) -> dict[str, str]:
    return {"MODE": "server", "URI": f"127.0.0.1:{port}{path}", **extra}


@pytest.fixture
async def echo(host: FakeHost) -> TestComponent:
    return await TestComponent(host, "echo").serve()


async def test_welcome_events_and_inbound_routing(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    client = await Client.open(dep.url())
    sid = client.session_id
    assert sid.startswith("ws_") and len(sid) == 25
    connected = await echo.next_event("ws.session.connected")
    assert connected.reply_to == sid
    info = json.loads(connected.body)
    assert info["session_id"] == sid and info["identity"] is None
    assert info["remote_addr"].startswith("127.0.0.1:")

    await client.message("chat", "hello")
    msg = await echo.next()
    assert msg == BrokerMessage("chat", b"hello", sid)
    await client.message("chat", {"a": [1, 2]}, reply_to="r1")
    assert await echo.next() == BrokerMessage("chat", b'{"a":[1,2]}', f"{sid}.r1")
    await client.send({"subject": "bin", "body_b64": base64.b64encode(b"\x00\xff").decode()})
    assert (await echo.next()).body == b"\x00\xff"
    await client.ws.send(msgpack.packb({"subject": "mp", "body": b"\x01\x02", "reply_to": None}))
    assert await echo.next() == BrokerMessage("mp", b"\x01\x02", sid)

    await client.close()
    gone = await echo.next_event("ws.session.disconnected")
    assert json.loads(gone.body)["session_id"] == sid
