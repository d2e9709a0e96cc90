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


async def test_outbound_routing_rules(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    a, b = await Client.open(dep.url()), await Client.open(dep.url())
    # 1. session id, and <sid>.R (the client sees R)
    assert await echo.publish(a.session_id, b"to a") == Ok()
    assert await a.recv() == {
        "type": "message",
        "subject": a.session_id,
        "body": "to a",
        "reply_to": None,
    }
    assert await echo.publish(f"{a.session_id}.r1.x", b"\xff\xfe", reply_to="back") == Ok()
    frame = await a.recv()
    assert frame["subject"] == "r1.x" and frame["reply_to"] == "back"
    assert base64.b64decode(frame["body_b64"]) == b"\xff\xfe" and "body" not in frame
    # unknown / closed session
    ghost = "ws_" + "A" * 22
    assert await echo.publish(ghost, b"x") == Err(f"no such session: {ghost}")
    await b.close()
    await echo.next_event("ws.session.disconnected")
    assert await echo.publish(b.session_id, b"x") == Err(f"no such session: {b.session_id}")
    # 2. broadcast
    c = await Client.open(dep.url())
    assert await echo.publish("broadcast", b"all") == Ok()
    assert (await a.recv())["body"] == "all"
    assert (await c.recv())["body"] == "all"
    # 3. topics with wildcards: each session gets a message once, however many patterns match
    await a.send({"type": "subscribe", "subject": "news.*"})
    await a.send({"type": "subscribe", "subject": "news.>"})
    await c.send({"type": "subscribe", "subject": "news.sport.>"})
    await a.send({"type": "subscribe", "subject": "probe"})  # barrier: subscriptions applied
    await c.send({"type": "subscribe", "subject": "probe"})
    assert await echo.publish("probe", b"p") == Ok()
    assert (await a.recv())["subject"] == "probe"
    assert (await c.recv())["subject"] == "probe"
    assert await echo.publish("news.tech", b"t") == Ok()
    assert await echo.publish("news.sport.f1", b"s") == Ok()
    assert await echo.publish("nobody.listens", b"n") == Ok()  # no subscriber: not an error
    assert [(await a.recv())["body"] for _ in range(2)] == ["t", "s"]
    assert (await c.recv())["body"] == "s"
    await a.send({"type": "unsubscribe", "subject": "news.*"})
    await a.send({"type": "unsubscribe", "subject": "news.>"})
    await a.send({"type": "unsubscribe", "subject": "probe"})
    await echo.publish(a.session_id, b"marker")
    assert (await a.recv())["body"] == "marker"
    assert await echo.publish("news.tech", b"t2") == Ok()
    assert await echo.publish(a.session_id, b"after") == Ok()
    assert (await a.recv())["body"] == "after"  # news.tech did not arrive first


async def test_session_isolation_and_allowed_publishers(host: FakeHost) -> None:
    port_a, port_b = free_port(), free_port()
    comp_a = await TestComponent(host, "compa").serve()
    comp_b = await TestComponent(host, "compb").serve()
    comp_c = await TestComponent(host, "compc").serve()
    links = [
        host.consumer_link("compa"),
        host.handler_link("compa", source_config=server_config(port_a, ALLOWED_PUBLISHERS="compc")),
        host.consumer_link("compb"),
        host.handler_link("compb", source_config=server_config(port_b)),
        host.consumer_link("compc"),
    ]
    await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    a = await Client.open(f"ws://127.0.0.1:{port_a}/ws")
    b = await Client.open(f"ws://127.0.0.1:{port_b}/ws")
    # B cannot see A's session; A's broadcast does not reach B's clients.
    assert await comp_b.publish(a.session_id, b"x") == Err(f"no such session: {a.session_id}")
    assert await comp_b.request(a.session_id, b"x", 500) == Err(f"no such session: {a.session_id}")
    assert await comp_a.publish("broadcast", b"from a") == Ok()
    assert await comp_b.publish("broadcast", b"from b") == Ok()
    assert (await a.recv())["body"] == "from a"
    assert (await b.recv())["body"] == "from b"
    # C is listed in A's ALLOWED_PUBLISHERS.
    assert await comp_c.publish(a.session_id, b"from c") == Ok()
    assert (await a.recv())["body"] == "from c"
    assert await comp_c.publish(b.session_id, b"x") == Err(f"no such session: {b.session_id}")
    # Inbound goes to the endpoint's own component only.
    await b.message("hi", "there")
    assert (await comp_b.next()).subject == "hi"
    assert comp_a.calls.qsize() == 1  # only A's connected event
    del comp_c


async def test_request_response_and_timeouts(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    client = await Client.open(dep.url())

    async def answer() -> None:
        frame = await client.recv()
        assert frame["subject"] == client.session_id and frame["body"] == "question?"
        token = frame["reply_to"]
        assert token.startswith("rq_")
        await client.message(token, "answer!")

    answering = asyncio.create_task(answer())
    result = await echo.request(client.session_id, b"question?", 5000)
    await answering
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage)
    assert result.value.body == b"answer!"
    # The answer frame was consumed by the request, not delivered to the component.
    await client.message("after", "x")
    assert (await echo.next()).subject == "after"

    # <sid>.R: the client sees subject R.
    task = asyncio.create_task(echo.request(f"{client.session_id}.ask", b"q", 5000))
    frame = await client.recv()
    assert frame["subject"] == "ask"
    await client.message(frame["reply_to"], "a")
    assert (await task).value.body == b"a"  # type: ignore[union-attr]

    # Timeout: the client never answers.
    result = await echo.request(client.session_id, b"ignored", 300)
    assert isinstance(result, Err) and "timed out after 300 ms" in result.message
    stale = await client.recv()
    await client.message(stale["reply_to"], "too late")  # a late answer is an ordinary message
    assert (await echo.next()).subject == stale["reply_to"]

    # Disconnect while a request waits: Err at once, not after the timeout.
    task = asyncio.create_task(echo.request(client.session_id, b"q", 20000))
    await client.recv()
    await client.close()
    result = await asyncio.wait_for(task, 5)
    assert isinstance(result, Err) and "closed" in result.message
    # Requests need a session id.
    assert isinstance(await echo.request("broadcast", b"", 100), Err)
