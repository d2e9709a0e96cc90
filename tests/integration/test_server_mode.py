"""Server mode under a test host: real nats-server, real wRPC, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import json

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

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
        "seq": 1,  # every message frame carries the session's sequence number
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
    for client in (a, c):  # barrier: a session's frames are taken in order, so once the
        # component has acked a message sent after them, its subscriptions are applied
        await client.send({"type": "message", "subject": "barrier", "body": "", "id": "b"})
        assert await client.recv() == {"type": "ack", "id": "b"}
        assert (await echo.next()).subject == "barrier"
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


async def expect_error(client: Client, code: str, frame_id: str | None = None) -> dict[str, object]:
    frame = await client.recv()
    assert frame["type"] == "error" and frame["code"] == code, frame
    if frame_id is not None:
        assert frame["id"] == frame_id
    return frame


async def test_bad_frames_get_errors_and_the_session_survives(
    host: FakeHost, echo: TestComponent
) -> None:
    dep = await deploy(host, {"echo": server_config(free_port(), MAX_MESSAGE_BYTES="4096")})
    client = await Client.open(dep.url())
    ws = client.ws
    await ws.send("not json")
    await expect_error(client, "bad_frame")
    await ws.send("[1, 2]")
    await expect_error(client, "bad_frame")
    await ws.send(b"\xc1 not msgpack")
    await expect_error(client, "bad_frame")
    await client.send({"subject": 42, "body": "x", "id": "f1"})
    await expect_error(client, "bad_field", "f1")
    await client.send({"body": "no subject"})
    await expect_error(client, "bad_field")
    await client.send({"subject": "s", "reply_to": 7})
    await expect_error(client, "bad_field")
    await client.send({"subject": "s", "body": "a", "body_b64": "YQ=="})
    await expect_error(client, "bad_field")
    await client.send({"subject": "s", "body_b64": "%%%", "id": "f2"})
    await expect_error(client, "bad_base64", "f2")
    await ws.send(b'{"subject": "s", "body": "\xff\xfe"}', text=True)  # invalid UTF-8 text
    await expect_error(client, "bad_utf8")
    await ws.send('{"subject": "s", "body": "\\ud800"}')  # lone surrogate
    await expect_error(client, "bad_utf8")
    await client.send({"type": "teleport", "subject": "s"})
    await expect_error(client, "unknown_type")
    await client.send({"subject": "ws.session.connected", "body": "{}"})
    await expect_error(client, "reserved_subject")
    await client.send({"type": "subscribe", "subject": "a.>.b"})
    await expect_error(client, "bad_subject")
    # Still open: a good message reaches the component, and nothing bad did.
    await client.message("good", "ok")
    assert await echo.next() == BrokerMessage("good", b"ok", client.session_id)
    # Over the hard limit: closed with 1009.
    await ws.send("x" * 5000)
    with pytest.raises(ConnectionClosed) as info:
        await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_component_errors_become_error_frames(host: FakeHost, echo: TestComponent) -> None:
    port = free_port()
    await TestComponent(host, "ghostless").serve()
    links = [
        host.consumer_link("echo"),
        host.handler_link("echo", source_config=server_config(port)),
        # a handler link to a component nobody serves
        host.consumer_link("ghost"),
        host.handler_link("ghost", source_config=server_config(port, "/ghost")),
        # a server endpoint without a handler link: send-only
        host.consumer_link("sendonly", target_config=server_config(port, "/sendonly")),
    ]
    await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    echo.answer = Err("nope, not today")
    await client.message("x", "y", id="m1")
    frame = await expect_error(client, "handler_error", "m1")
    assert frame["message"] == "nope, not today"
    ghost = await Client.open(f"ws://127.0.0.1:{port}/ghost")
    await ghost.message("x", "y", id="m2")
    await expect_error(ghost, "component_unavailable", "m2")  # NATS no responders
    send_only = await Client.open(f"ws://127.0.0.1:{port}/sendonly")
    await send_only.message("x", "y")
    await expect_error(send_only, "no_handler")
    # ...but the component can still send to it.
    sendonly = TestComponent(host, "sendonly")
    assert await sendonly.publish(send_only.session_id, b"hi") == Ok()
    assert (await send_only.recv())["body"] == "hi"


async def test_slow_component_does_not_block_other_sessions(
    host: FakeHost, echo: TestComponent
) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    slow, fast = await Client.open(dep.url()), await Client.open(dep.url())
    echo.gate = asyncio.Event()
    await slow.message("first", "1")
    while (await echo.next()).subject != "first":
        pass
    # The slow session's delivery hangs in the component; the other session is served.
    echo.gate = None
    await fast.message("second", "2")
    assert (await echo.next()).subject == "second"
    assert await echo.publish(fast.session_id, b"pong") == Ok()
    assert (await fast.recv())["body"] == "pong"


async def test_handler_timeout_answers_handler_timeout_and_the_session_goes_on(
    host: FakeHost, echo: TestComponent
) -> None:
    dep = await deploy(host, {"echo": server_config(free_port(), HANDLER_TIMEOUT_SEC="0.3")})
    client = await Client.open(dep.url())
    echo.gate = asyncio.Event()
    await client.message("slow", "1", id="m1")
    assert (await echo.next()).subject == "slow"
    await expect_error(client, "handler_timeout", "m1")  # the component is still stuck
    echo.gate.set()
    echo.gate = None
    await client.message("next", "2", id="m2")
    assert (await echo.next()).subject == "next"
    assert await client.recv() == {"type": "ack", "id": "m2"}


async def test_per_session_order_is_kept(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    client = await Client.open(dep.url())
    for i in range(50):
        await client.message("seq", str(i))
    got = [int((await echo.next()).body) for _ in range(50)]
    assert got == list(range(50))


async def test_order_holds_when_fragmented_messages_and_pings_are_in_one_burst(
    host: FakeHost, echo: TestComponent
) -> None:
    """Whole messages are read on a fast path, fragmented ones by websockets: written in one
    piece, interleaved with pings, they still reach the component in the order sent."""
    dep = await deploy(host, {"echo": server_config(free_port())})
    client = await Client.open(dep.url())
    sent: list[Frame] = []
    for i in range(30):
        body = json.dumps({"subject": "seq", "body": str(i)}).encode()
        if i % 3 == 1:  # every third message in three fragments, a ping in between
            sent += [
                Frame(Opcode.TEXT, body[:5], fin=False),
                Frame(Opcode.PING, b""),
                Frame(Opcode.CONT, body[5:9], fin=False),
                Frame(Opcode.CONT, body[9:]),
            ]
        else:
            sent.append(Frame(Opcode.TEXT, body))
    client.ws.transport.write(
        b"".join(frame.serialize(mask=True, extensions=None) for frame in sent)
    )
    got = [int((await echo.next()).body) for _ in range(30)]
    assert got == list(range(30))


async def test_messages_keep_an_idle_timeout_away(host: FakeHost, echo: TestComponent) -> None:
    """IDLE_TIMEOUT_SEC counts every message, those read on the fast path too."""
    dep = await deploy(host, {"echo": server_config(free_port(), IDLE_TIMEOUT_SEC="0.6")})
    client = await Client.open(dep.url())
    for i in range(8):  # 1.6 s in all, never 0.6 s quiet
        await client.message("tick", str(i))
        assert (await echo.next()).body == str(i).encode()
        await asyncio.sleep(0.2)
    with pytest.raises(ConnectionClosed) as info:  # then quiet: closed
        await client.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "idle timeout")


async def test_max_sessions_refuses_with_503_and_unknown_path_404(
    host: FakeHost, echo: TestComponent
) -> None:
    dep = await deploy(host, {"echo": server_config(free_port(), MAX_SESSIONS="1")})
    first = await Client.open(dep.url())
    with pytest.raises(InvalidStatus) as info:
        await Client.open(dep.url())
    assert info.value.response.status_code == 503
    with pytest.raises(InvalidStatus) as info:
        await Client.open(dep.url("/elsewhere"))
    assert info.value.response.status_code == 404
    await first.close()
    await echo.next_event("ws.session.disconnected")
    await Client.open(dep.url())  # a slot is free again


async def test_idle_timeout_closes_quiet_sessions(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port(), IDLE_TIMEOUT_SEC="0.5")})
    client = await Client.open(dep.url())
    with pytest.raises(ConnectionClosed) as info:
        await client.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "idle timeout")


async def test_unanswered_pings_close_the_session(host: FakeHost, echo: TestComponent) -> None:
    port = free_port()
    await deploy(
        host, {"echo": server_config(port, PING_INTERVAL_SEC="0.2", PING_TIMEOUT_SEC="0.3")}
    )
    # A raw client that completes the handshake, then never reads or answers pings.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    # The client is unresponsive, as after a network drop: the session waits for a resume.
    gone = await echo.next_event("ws.session.detached", timeout=10)
    assert json.loads(gone.body)["code"] == 1011
    writer.close()


async def closed_with(client: Client, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    try:
        while True:
            await client.recv(timeout=timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason


async def test_graceful_shutdown_flushes_and_closes_1001(
    host: FakeHost, echo: TestComponent
) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    clients = [await Client.open(dep.url()) for _ in range(3)]
    assert await echo.publish("broadcast", b"last words") == Ok()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await host.shutdown(timeout=0.3) == b"shutting down"  # inside the host's 300 ms
    assert loop.time() - started < 0.3
    for client in clients:
        frame = await client.recv()
        assert frame["body"] == "last words"  # in-flight delivery finished
        assert await closed_with(client) == (1001, "server shutting down")
    assert await dep.proc.wait_exit(1.0) == 0
    with pytest.raises(ConnectionRefusedError):
        await Client.open(dep.url())  # no longer accepting


async def test_sigterm_closes_sessions_with_1001(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    client = await Client.open(dep.url())
    dep.proc.proc.terminate()
    assert (await closed_with(client))[0] == 1001
    assert await dep.proc.wait_exit(2.0) == 0


async def test_link_delete_and_update_touch_only_their_endpoint(host: FakeHost) -> None:
    port = free_port()
    comp_a = await TestComponent(host, "compa").serve()
    comp_b = await TestComponent(host, "compb").serve()
    link_a = host.handler_link("compa", source_config=server_config(port, "/a"))
    link_b = host.handler_link("compb", source_config=server_config(port, "/b"))
    proc = await host.start_provider(
        WS_PROVIDER,
        link_definitions=[host.consumer_link("compa"), link_a, host.consumer_link("compb"), link_b],
    )
    await host.wait_healthy()
    a = await Client.open(f"ws://127.0.0.1:{port}/a")
    b = await Client.open(f"ws://127.0.0.1:{port}/b")
    # Update A's endpoint (new path): its sessions are closed with 1001; B is untouched.
    await host.put_link(host.handler_link("compa", source_config=server_config(port, "/a2")))
    assert await closed_with(a) == (1001, "endpoint reconfigured")
    await proc.wait_for_line("/a2 for component compa")
    a2 = await Client.open(f"ws://127.0.0.1:{port}/a2")
    with pytest.raises(InvalidStatus):
        await Client.open(f"ws://127.0.0.1:{port}/a")
    # Delete A's handler and consumer links: the endpoint goes away.
    await host.del_link(link_a)
    await host.del_link(host.consumer_link("compa"))
    assert await closed_with(a2) == (1001, "link deleted")
    await proc.wait_for_line("server endpoint of compa (link default) removed")
    assert await comp_b.publish(b.session_id, b"still here") == Ok()
    assert (await b.recv())["body"] == "still here"
    await b.message("ping", "b")
    assert (await comp_b.next()).subject == "ping"
    del comp_a


async def test_bad_and_conflicting_config_fail_only_that_link(host: FakeHost) -> None:
    port = free_port()
    comp_a = await TestComponent(host, "compa").serve()
    links = [
        host.consumer_link("compa"),
        host.handler_link("compa", source_config=server_config(port)),
        # same address and path as compa: refused
        host.consumer_link("compb"),
        host.handler_link("compb", source_config=server_config(port)),
        # a value that is not allowed
        host.consumer_link("compc"),
        host.handler_link("compc", source_config=server_config(port, "/c", MAX_SESSIONS="lots")),
    ]
    proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    await proc.wait_for_line("is already served for component 'compa'")
    await proc.wait_for_line("invalid MAX_SESSIONS='lots'")
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    await client.message("hello", "a")
    assert (await comp_a.next()).subject == "hello"
    with pytest.raises(InvalidStatus):
        await Client.open(f"ws://127.0.0.1:{port}/c")
    # A corrected put for compc is accepted (the failed link was not stored).
    await host.put_link(host.handler_link("compc", source_config=server_config(port, "/c")))
    await proc.wait_for_line("/c for component compc")
    await Client.open(f"ws://127.0.0.1:{port}/c")


async def test_msgpack_session(host: FakeHost, echo: TestComponent) -> None:
    from websockets.asyncio.client import connect

    dep = await deploy(host, {"echo": server_config(free_port())})
    async with connect(dep.url(), subprotocols=["wasmcloud.messaging.v1.msgpack"]) as ws:
        welcome = msgpack.unpackb(await ws.recv())
        assert welcome["type"] == "welcome"
        sid = welcome["session_id"]
        assert await echo.publish(sid, b"\x00binary\xff") == Ok()
        frame = msgpack.unpackb(await ws.recv())
        assert frame == {
            "type": "message",
            "seq": 1,
            "subject": sid,
            "body": b"\x00binary\xff",
            "reply_to": None,
        }
        await ws.send(msgpack.packb({"subject": 5}))
        err = msgpack.unpackb(await ws.recv())
        assert err["type"] == "error" and err["code"] == "bad_field"


async def test_one_broadcast_to_sessions_at_different_seqs_and_formats(
    host: FakeHost, echo: TestComponent
) -> None:
    """A fan-out frames its message once per seq and format and shares the bytes between the
    sessions at the same one: each session must still get its own seq, in its own format."""
    from websockets.asyncio.client import connect

    dep = await deploy(host, {"echo": server_config(free_port())})
    msgpack_protocol = ["wasmcloud.messaging.v1.msgpack"]
    async with (
        connect(dep.url(), subprotocols=msgpack_protocol) as m1,
        connect(dep.url(), subprotocols=msgpack_protocol) as m2,
    ):
        j1, j2 = await Client.open(dep.url()), await Client.open(dep.url())
        mids = [msgpack.unpackb(await ws.recv())["session_id"] for ws in (m1, m2)]
        # j2 and m2 one message ahead: seq 1 and 2 in both formats for the broadcast.
        assert await echo.publish(j2.session_id, b"first") == Ok()
        assert (await j2.recv())["seq"] == 1
        assert await echo.publish(mids[1], b"first") == Ok()
        assert msgpack.unpackb(await m2.recv())["seq"] == 1
        assert await echo.publish("broadcast", b"all") == Ok()
        for client, seq in ((j1, 1), (j2, 2)):
            assert await client.recv() == {
                "type": "message",
                "seq": seq,
                "subject": "broadcast",
                "body": "all",
                "reply_to": None,
            }
        for ws, seq in ((m1, 1), (m2, 2)):
            assert msgpack.unpackb(await ws.recv()) == {
                "type": "message",
                "seq": seq,
                "subject": "broadcast",
                "body": b"all",
                "reply_to": None,
            }


async def test_acks_for_messages_with_an_id(host: FakeHost, echo: TestComponent) -> None:
    dep = await deploy(host, {"echo": server_config(free_port())})
    client = await Client.open(dep.url())
    await client.message("needs-ack", "x", id="a1")
    assert await client.recv() == {"type": "ack", "id": "a1"}  # after the component's Ok
    assert (await echo.next()).subject == "needs-ack"
    await client.message("no-id", "y")  # no id: no ack
    assert (await echo.next()).subject == "no-id"
    echo.answer = Err("rejected")
    await client.message("refused", "z", id=7)
    err = await client.recv()
    assert (err["type"], err["code"], err["id"]) == ("error", "handler_error", 7)
    echo.answer = Ok()
    assert await echo.publish(client.session_id, b"marker") == Ok()
    assert (await client.recv())["body"] == "marker"  # and nothing for "no-id" came before


async def test_structured_log_lines_about_a_session_carry_its_ids(
    host: FakeHost, echo: TestComponent
) -> None:
    port = free_port()
    links = [
        host.consumer_link("echo"),
        host.handler_link("echo", source_config=server_config(port)),
    ]
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=links, structured_logging=True, log_level="debug"
    )
    await host.wait_healthy()
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    echo.answer = Err("nope")
    await client.message("x", "y")
    await client.recv()
    line = await proc.wait_for_line("returned Err")
    record = json.loads(line)
    assert record["session_id"] == client.session_id
    assert (record["component_id"], record["link_name"]) == ("echo", "default")
