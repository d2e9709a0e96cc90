"""Client mode against a WebSocket server that is not Python: Node.js and the npm `ws` package.

`tests/js/server.mjs` is a `ws` WebSocketServer driven over stdin/stdout with JSON lines; the
provider (under the test host) connects out to it. These tests show what a third-party server
sees of client mode: the upgrade request (token, custom headers, subprotocol), the exact
frames, close codes, reconnection with in-order delivery of buffered messages, and a refused
upgrade. Like test_js_client.py they skip with a printed reason where Node.js is missing
(and fail in CI).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.interop import test_js_client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

pytestmark = pytest.mark.interop

SERVER = test_js_client.JS_DIR / "server.mjs"

#: The session fixture of test_js_client.py: the `node` executable, `npm ci` done if needed.
node = test_js_client.node


class JsServer:
    """One `node server.mjs` process. Its events are kept in order; `next(kind)` takes the
    oldest not yet taken event of one kind, so kinds can be awaited independently (e.g. the
    frames of a connection after its "connection", whatever else came in between)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0
        self.events: list[dict[str, Any]] = []
        self.stderr = bytearray()
        self._taken: set[int] = set()
        self._changed = asyncio.Condition()
        self._eof = False
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._drain_stderr())]

    @classmethod
    async def start(cls, node: str, *args: str) -> JsServer:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(SERVER),
            *args,
            cwd=SERVER.parent,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        server = cls(proc)
        server.port = (await server.next("listening", timeout=30))["port"]
        return server

    def url(self, path: str = "/socket") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            async with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    async def next(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The oldest untaken event of `kind`; fails at once if server.mjs reported an error."""

        def find() -> dict[str, Any] | None:
            for i, event in enumerate(self.events):
                if event["event"] == "error":
                    raise AssertionError(f"server.mjs reported {event}")
                if event["event"] == kind and i not in self._taken:
                    self._taken.add(i)
                    return event
            return None

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (event := find()) is None:
                    if self._eof:
                        raise AssertionError(
                            f"server.mjs exited before a {kind!r} event:\n"
                            + self.stderr.decode(errors="replace")
                        )
                    await self._changed.wait()
                return event

        return await asyncio.wait_for(wait(), timeout)

    async def no_more(self, kind: str, within: float) -> None:
        """No (further) `kind` event arrives within `within` seconds."""
        try:
            event = await self.next(kind, timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {event}")

    async def command(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()

    async def frame(self, timeout: float = 10.0) -> dict[str, Any]:
        return await self.next("frame", timeout)

    async def json_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame, which must be a JSON text frame; V8 and Python must agree on it."""
        event = await self.frame(timeout)
        assert event["binary"] is False and "json" in event, event
        parsed: dict[str, Any] = json.loads(event["data"])
        assert event["json"] == parsed
        return parsed

    async def send_text(self, text: str, conn: int | None = None) -> None:
        await self.command("send", text=text, **({} if conn is None else {"id": conn}))

    async def send_json(self, value: Any, conn: int | None = None) -> None:
        await self.send_text(json.dumps(value, ensure_ascii=False), conn)

    async def send_binary(self, data: bytes, conn: int | None = None) -> None:
        b64 = base64.b64encode(data).decode("ascii")
        await self.command("send_binary_b64", data=b64, **({} if conn is None else {"id": conn}))

    async def stop_listening(self, code: int | None = None) -> None:
        """Close the listener and every connection (abruptly, or with close `code`)."""
        await self.command("stop", **({} if code is None else {"code": code, "reason": "restart"}))
        await self.next("stopped")

    async def start_listening(self) -> None:
        await self.command("start")
        assert (await self.next("listening"))["port"] == self.port

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in self._tasks:
            await task


StartServer = Callable[..., Awaitable[JsServer]]


@pytest.fixture
async def js_server(node: str) -> AsyncIterator[StartServer]:
    """Starts `node server.mjs ARGS…` for one test and stops every one started afterwards."""
    started: list[JsServer] = []

    async def start(*args: str) -> JsServer:
        server = await JsServer.start(node, *args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.close()


async def start_clients(
    host: FakeHost,
    configs: dict[str, dict[str, str]],
    *,
    secrets: dict[str, str] | None = None,
) -> tuple[ProviderProcess, list[dict[str, Any]]]:
    """The provider with a client-mode consumer link (and a handler link) per component;
    returns the process and the consumer links (to delete one)."""
    consumers = [
        host.consumer_link(
            component, target_config={"MODE": "client", **config}, target_secrets=secrets
        )
        for component, config in configs.items()
    ]
    handlers = [host.handler_link(component) for component in configs]
    proc = await host.start_provider(WS_PROVIDER, link_definitions=consumers + handlers)
    await host.wait_healthy()
    return proc, consumers


async def test_token_and_custom_headers_reach_the_node_server(
    host: FakeHost, js_server: StartServer
) -> None:
    server = await js_server()
    await TestComponent(host, "comp1").serve()
    proc, (link,) = await start_clients(
        host,
        {
            "comp1": {
                "URI": server.url("/feed?room=7"),
                "HEADER_X_TRACE_ID": "abc-123",
                "HEADER_X_TENANT": "acme",
                "SUBPROTOCOLS": "chat.v2, chat.v1",
            }
        },
        secrets={"AUTH_TOKEN": "t0ps3cret"},
    )
    conn = await server.next("connection")
    assert "rejected" not in conn and isinstance(conn["id"], int)
    assert conn["path"] == "/feed?room=7"
    headers = conn["headers"]  # as Node's HTTP parser sees them (names lower-cased)
    assert headers["authorization"] == "Bearer t0ps3cret"
    assert headers["x-trace-id"] == "abc-123"
    assert headers["x-tenant"] == "acme"
    assert headers["user-agent"] == "wasmcloud-websocket-provider"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["sec-websocket-protocol"] == "chat.v2, chat.v1"
    assert "sec-websocket-extensions" not in headers  # no compression offered
    # ws picks the first subprotocol the client offers.
    assert conn["protocol"] == "chat.v2"
    # Each header exactly once (Node would drop or join duplicates without telling anyone).
    names = [name.lower() for name, _ in conn["raw_headers"]]
    assert len(names) == len(set(names)), conn["raw_headers"]

    # Link delete: the Node server sees a clean close 1000 "link deleted", and no reconnect.
    await host.del_link(link)
    close = await server.next("close")
    assert (close["id"], close["code"], close["reason"]) == (conn["id"], 1000, "link deleted")
    await server.no_more("connection", within=0.5)
    assert "t0ps3cret" not in proc.stderr


async def test_envelope_frames_both_ways_and_request_answered_by_node(
    host: FakeHost, js_server: StartServer
) -> None:
    server = await js_server()
    comp = await TestComponent(host, "comp1").serve()
    await start_clients(host, {"comp1": {"URI": server.url()}})
    await server.next("connection")

    # component -> Node: the exact JSON text (compact, UTF-8, reply_to always present).
    assert await comp.publish("orders.new", b'{"id":1}', reply_to="orders.ack") == Ok()
    event = await server.frame()
    assert event["binary"] is False
    assert event["data"] == (
        '{"type":"message","subject":"orders.new","body":"{\\"id\\":1}","reply_to":"orders.ack"}'
    )
    assert event["json"] == {
        "type": "message",
        "subject": "orders.new",
        "body": '{"id":1}',
        "reply_to": "orders.ack",
    }
    assert await comp.publish("greet", "héllo 👋".encode()) == Ok()
    event = await server.frame()
    assert event["data"] == '{"type":"message","subject":"greet","body":"héllo 👋","reply_to":null}'
    # A body that is not UTF-8 goes in body_b64.
    assert await comp.publish("bin", b"\xff\xfe\x00\x80") == Ok()
    assert await server.json_frame() == {
        "type": "message",
        "subject": "bin",
        "body_b64": base64.b64encode(b"\xff\xfe\x00\x80").decode(),
        "reply_to": None,
    }

    # Node -> component (handle-message), in order; frames it cannot use are skipped.
    await server.send_json({"type": "message", "subject": "prices", "body": "42", "reply_to": "r"})
    assert await comp.next() == BrokerMessage("prices", b"42", "r")
    await server.send_text("not json")
    await server.send_json({"type": "welcome", "session_id": "x", "protocol": 1})  # unknown
    await server.send_json({"subject": "obj", "body": {"a": [1, 2.5, None]}})
    assert await comp.next() == BrokerMessage("obj", b'{"a":[1,2.5,null]}', None)
    await server.send_json({"subject": "b64", "body_b64": base64.b64encode(b"\x00\xff").decode()})
    assert await comp.next() == BrokerMessage("b64", b"\x00\xff", None)

    # component -> Node request, answered by Node on the reply_to token.
    request = asyncio.create_task(comp.request("quote", b"EURUSD", 5000))
    frame = await server.json_frame()
    token = frame["reply_to"]
    assert isinstance(token, str) and token.startswith("rq_"), frame
    assert frame == {"type": "message", "subject": "quote", "body": "EURUSD", "reply_to": token}
    await server.send_json({"type": "message", "subject": token, "body": "1.08"})
    result = await asyncio.wait_for(request, 10)
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage), result
    assert (result.value.subject, result.value.body) == (token, b"1.08")
    # The answer was taken by the request, not delivered to the component.
    await server.send_json({"subject": "after", "body": ""})
    assert (await comp.next()).subject == "after"

    # Node -> component request: the component answers on Node's reply subject.
    await server.send_json({"subject": "ask", "body": "ping", "reply_to": "srv.answer.7"})
    asked = await comp.next()
    assert asked == BrokerMessage("ask", b"ping", "srv.answer.7")
    assert await comp.publish("srv.answer.7", b"pong") == Ok()
    assert await server.json_frame() == {
        "type": "message",
        "subject": "srv.answer.7",
        "body": "pong",
        "reply_to": None,
    }


async def test_raw_mode_text_and_binary_both_ways(host: FakeHost, js_server: StartServer) -> None:
    server = await js_server()
    text_comp = await TestComponent(host, "comp1").serve()
    bin_comp = await TestComponent(host, "comp2").serve()
    raw = {"FORMAT": "raw", "SUBJECT": "feed.in"}
    await start_clients(
        host,
        {
            "comp1": {"URI": server.url("/text"), **raw},
            "comp2": {"URI": server.url("/binary"), **raw, "RAW_BINARY": "true"},
        },
    )
    conns = {}
    for _ in range(2):
        conn = await server.next("connection")
        conns[conn["path"]] = conn["id"]
    assert set(conns) == {"/text", "/binary"}

    # component -> Node: the bare body; UTF-8 as a text frame unless RAW_BINARY=true.
    assert await text_comp.publish("ignored", "hello raw ✓".encode()) == Ok()
    assert await server.frame() == {
        "event": "frame",
        "id": conns["/text"],
        "binary": False,
        "data": "hello raw ✓",
    }
    assert await text_comp.publish("ignored", b"\xff\x00") == Ok()
    event = await server.frame()
    assert (event["id"], event["binary"], event["data"]) == (conns["/text"], True, "/wA=")
    assert await text_comp.publish("ignored", b'{"a":1}') == Ok()
    event = await server.frame()  # JSON text is still a bare body: no envelope around it
    assert (event["binary"], event["data"], event["json"]) == (False, '{"a":1}', {"a": 1})
    assert await bin_comp.publish("ignored", b"utf-8 but binary") == Ok()
    event = await server.frame()
    assert (event["id"], event["binary"]) == (conns["/binary"], True)
    assert base64.b64decode(event["data"]) == b"utf-8 but binary"

    # Node -> component: every frame is a body on SUBJECT, without reply_to.
    await server.send_text("tick ✓ 1", conns["/text"])
    assert await text_comp.next() == BrokerMessage("feed.in", "tick ✓ 1".encode(), None)
    await server.send_text('{"subject":"x","body":"y"}', conns["/text"])  # not unwrapped
    assert await text_comp.next() == BrokerMessage("feed.in", b'{"subject":"x","body":"y"}', None)
    await server.send_binary(b"\x01\x02\xff", conns["/text"])
    assert await text_comp.next() == BrokerMessage("feed.in", b"\x01\x02\xff", None)
    await server.send_text("to comp2", conns["/binary"])
    assert await bin_comp.next() == BrokerMessage("feed.in", b"to comp2", None)

    result = await text_comp.request("x", b"", 100)
    assert isinstance(result, Err) and "FORMAT=raw" in result.message

    # Provider shutdown: both connections closed cleanly.
    assert await host.shutdown() == b"shutting down"
    closes = {(await server.next("close"))["id"] for _ in range(2)}
    assert closes == set(conns.values())
    for event in server.events:
        if event["event"] == "close":
            assert (event["code"], event["reason"]) == (1001, "provider shutting down"), event


@pytest.mark.parametrize("stop_code", [None, 1001], ids=["dropped", "closed-1001"])
async def test_node_server_restart_delivers_buffered_messages_once_in_order(
    host: FakeHost, js_server: StartServer, stop_code: int | None
) -> None:
    server = await js_server()
    comp = await TestComponent(host, "comp1").serve()
    proc, _ = await start_clients(
        host,
        {
            "comp1": {
                "URI": server.url(),
                "RECONNECT_MIN_MS": "20",
                "RECONNECT_MAX_MS": "200",
                "RECONNECT_JITTER": "none",
            }
        },
    )
    first = await server.next("connection")
    assert await comp.publish("live", b"0") == Ok()
    assert (await server.json_frame())["body"] == "0"

    await server.stop_listening(stop_code)  # every connection is gone when this returns
    close = await server.next("close")
    assert close["id"] == first["id"]
    assert close["code"] == (1006 if stop_code is None else stop_code)
    # Publish only once the provider knows the connection is lost: a frame written into a
    # socket the peer already closed cannot be told apart from a delivered one.
    await proc.wait_for_line(f"connection lost (close code {stop_code or 1006})")
    for i in range(1, 4):
        assert await comp.publish("buffered", str(i).encode()) == Ok()

    await server.start_listening()
    again = await server.next("connection")
    assert again["id"] != first["id"] and "rejected" not in again
    frames = [await server.frame() for _ in range(3)]
    assert [(f["id"], f["json"]["subject"], f["json"]["body"]) for f in frames] == [
        (again["id"], "buffered", "1"),
        (again["id"], "buffered", "2"),
        (again["id"], "buffered", "3"),
    ]
    await server.no_more("frame", within=0.3)  # and nothing twice (nor "0" again)
    # The new connection works both ways.
    await server.send_json({"subject": "back", "body": "again"})
    assert await comp.next() == BrokerMessage("back", b"again", None)


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_upgrade_is_permanent(
    host: FakeHost, js_server: StartServer, status: int
) -> None:
    server = await js_server("--reject-status", str(status))
    comp = await TestComponent(host, "comp1").serve()
    proc, _ = await start_clients(
        host,
        {"comp1": {"URI": server.url(), "RECONNECT_MIN_MS": "20"}},
        secrets={"AUTH_TOKEN": "wrong-token"},
    )
    attempt = await server.next("connection")
    assert attempt["rejected"] == status and attempt["id"] is None
    assert attempt["headers"]["authorization"] == "Bearer wrong-token"
    line = await proc.wait_for_line("failed permanently")
    assert f"HTTP {status}" in line
    await server.no_more("connection", within=1.0)  # exactly one attempt: no retry storm
    result = await comp.publish("x", b"")
    assert isinstance(result, Err) and f"HTTP {status}" in result.message, result
    health = await host.health()
    assert health["healthy"] is False and f"HTTP {status}" in health["message"], health
    assert "wrong-token" not in proc.stderr


async def test_transient_refusals_are_retried_with_growing_delays(
    host: FakeHost, js_server: StartServer
) -> None:
    server = await js_server("--reject-status", "503")
    comp = await TestComponent(host, "comp1").serve()
    await start_clients(
        host,
        {
            "comp1": {
                "URI": server.url(),
                "RECONNECT_MIN_MS": "100",
                "RECONNECT_MAX_MS": "5000",
                "RECONNECT_JITTER": "none",
            }
        },
    )
    refused = [await server.next("connection") for _ in range(3)]
    assert all(a["rejected"] == 503 for a in refused)
    assert await comp.publish("queued", b"while refused") == Ok()
    await server.command("reject", status=None)
    while "rejected" in (attempt := await server.next("connection")):
        refused.append(attempt)  # only if the provider was quicker than the command
    assert (await server.json_frame())["body"] == "while refused"
    # Node's clock: 100, 200, 400 ms ... between attempts (no jitter; doubling each time).
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise([*refused, attempt])]
    assert gaps[0] >= 100, gaps
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(gaps)), gaps
