"""Interop with a WebSocket client that is not Python: Node.js and the npm `ws` package.

`tests/js/client.mjs` is driven over stdin/stdout with JSON lines; JSON frames are made and
parsed by V8 and MessagePack frames by `@msgpack/msgpack`, so these tests show that the frame
contract (server mode) is language-neutral. They skip with a printed reason where Node.js is
not installed (in CI they must run).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import msgpack
import pytest

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

pytestmark = pytest.mark.interop

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CLIENT = JS_DIR / "client.mjs"
JS_DEPENDENCIES = ("ws", "@msgpack/msgpack")
NPM_CI_TIMEOUT = 300
JSON_PROTOCOL = "wasmcloud.messaging.v1"
MSGPACK_PROTOCOL = "wasmcloud.messaging.v1.msgpack"
SESSION_ID = re.compile(r"^ws_[A-Za-z0-9_-]{22}$")


def _unavailable(reason: str) -> NoReturn:
    """Skip (printing why), or fail in CI where the JS client must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    print(f"skipping the JS client interop tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, with tests/js/node_modules installed (`npm ci`) if absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("Node.js (node and npm) is not installed")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    if not re.fullmatch(r"v\d+\..*", version) or int(version[1:].split(".")[0]) < 18:
        _unavailable(f"Node.js >= 18 is needed, found {version or 'an unknown version'}")
    installed = all(
        (JS_DIR / "node_modules" / d / "package.json").is_file() for d in JS_DEPENDENCIES
    )
    if not installed:
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {JS_DIR} took more than {NPM_CI_TIMEOUT} s")
        if result.returncode != 0:
            pytest.fail(f"`npm ci` in {JS_DIR} failed:\n{result.stdout}\n{result.stderr}")
    return node


def to_json(value: Any) -> Any:
    """Python value -> the JSON convention of client.mjs (bytes as {"$bytes": base64})."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of `to_json`."""
    if isinstance(value, dict):
        if list(value) == ["$bytes"]:
            return base64.b64decode(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


class JsClient:
    """One `node client.mjs` process: one WebSocket connection, driven line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr = bytearray()
        self.protocol: str | None = None  # the negotiated subprotocol, once open
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr())

    @classmethod
    async def start(cls, node: str) -> JsClient:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        client = cls(proc)
        await client.expect("ready", timeout=30)
        return client

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    async def command(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
            await asyncio.wait_for(self._stderr_task, timeout)
            raise AssertionError(
                f"client.mjs exited ({rc}):\n{self.stderr.decode(errors='replace')}"
            )
        event: dict[str, Any] = json.loads(line)
        return event

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event, which must be of `kind`."""
        event = await self.next_event(timeout)
        assert event["event"] == kind, f"expected {kind}, got {event}"
        return event

    async def connect(self, url: str, protocols: list[str]) -> str:
        """Open the WebSocket; returns the negotiated subprotocol."""
        await self.command("connect", url=url, protocols=protocols)
        protocol: str = (await self.expect("open"))["protocol"]
        return protocol

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame of a JSON session, as JS parsed it (checked against Python's)."""
        event = await self.expect("frame", timeout)
        assert event["binary"] is False, event
        assert "decode_error" not in event, event
        frame: dict[str, Any] = json.loads(event["data"])
        assert event["json"] == frame
        return frame

    async def recv_msgpack(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame of a MessagePack session, as JS decoded it (checked against Python)."""
        event = await self.expect("frame", timeout)
        assert event["binary"] is True, event
        assert "decode_error" not in event and "msgpack" in event, event
        frame: dict[str, Any] = from_json(event["msgpack"])
        assert msgpack.unpackb(base64.b64decode(event["data"]), raw=False) == frame
        return frame

    async def send_json(self, value: Any) -> None:
        await self.command("send_json", value=value)

    async def send_text(self, text: str) -> None:
        await self.command("send", text=text)

    async def send_binary(self, data: bytes) -> None:
        await self.command("send_binary_b64", data=base64.b64encode(data).decode("ascii"))

    async def send_msgpack(self, value: Any) -> None:
        await self.command("send_msgpack", value=to_json(value))

    async def message(self, subject: str, body: Any = "", reply_to: str | None = None) -> None:
        await self.send_json(
            {"type": "message", "subject": subject, "body": body, "reply_to": reply_to}
        )

    async def closed(self, timeout: float = 10.0) -> tuple[int, str]:
        """Wait for the close event (no other event may come first)."""
        event = await self.expect("close", timeout)
        return event["code"], event["reason"]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._stderr_task


class JsClients:
    """Starts JS clients for one test and stops them all afterwards."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.started: list[JsClient] = []

    async def open(self, url: str, protocols: tuple[str, ...] = (JSON_PROTOCOL,)) -> JsClient:
        client = await JsClient.start(self.node)
        self.started.append(client)
        client.protocol = await client.connect(url, list(protocols))
        return client

    async def open_session(self, url: str) -> tuple[JsClient, str]:
        """A JSON session and its id, from the welcome frame."""
        client = await self.open(url)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        return client, welcome["session_id"]


@pytest.fixture
async def js(node: str) -> AsyncIterator[JsClients]:
    clients = JsClients(node)
    try:
        yield clients
    finally:
        for client in clients.started:
            await client.stop()


@pytest.fixture
async def echo(host: FakeHost) -> TestComponent:
    return await TestComponent(host, "echo").serve()


class Deployment:
    """The provider with a server endpoint for the `echo` component (as in
    tests/integration/test_server_mode.py, kept here so this file stands alone)."""

    def __init__(self, proc: ProviderProcess, port: int) -> None:
        self.proc = proc
        self.port = port

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def dep(host: FakeHost, echo: TestComponent) -> Deployment:
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"}
    links = [host.consumer_link(echo.id), host.handler_link(echo.id, source_config=config)]
    proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    return Deployment(proc, port)


async def barrier(client: JsClient, component: TestComponent, name: str = "barrier") -> None:
    """Frames of a session are handled in order: once this message reached the component,
    every frame the client sent before it (e.g. subscribe) has been applied."""
    await client.message(name)
    assert (await component.next()).subject == name


async def test_welcome_then_inbound_messages(
    js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    client = await js.open(dep.url())
    assert client.protocol == JSON_PROTOCOL
    welcome = await client.recv()
    sid = welcome["session_id"]
    token = welcome.pop("resume_token")
    assert token.startswith(sid + ".") and len(token) > len(sid) + 40
    assert welcome == {
        "type": "welcome",
        "session_id": sid,
        "protocol": 1,
        "seq": 0,
        "resume_window_sec": 120,
    }
    assert SESSION_ID.match(sid), sid

    connected = await echo.next(skip_events=False)
    assert connected.subject == "ws.session.connected" and connected.reply_to == sid
    info = json.loads(connected.body)
    assert info["session_id"] == sid and info["remote_addr"].startswith("127.0.0.1:")

    # A string body is its UTF-8 bytes (V8 strings are UTF-16: non-BMP characters included).
    await client.message("chat", "héllo 👋 ✓")
    assert await echo.next() == BrokerMessage("chat", "héllo 👋 ✓".encode(), sid)
    # Any other JSON body arrives as its compact JSON; reply_to R becomes <sid>.R.
    await client.message("chat", {"a": [1, 2.5, None, True], "b": "x"}, reply_to="r1")
    got = await echo.next()
    assert got == BrokerMessage("chat", b'{"a":[1,2.5,null,true],"b":"x"}', f"{sid}.r1")
    # "type" may be left out; bytes go in body_b64.
    await client.send_json({"subject": "bin", "body_b64": base64.b64encode(b"\x00\xff").decode()})
    assert await echo.next() == BrokerMessage("bin", b"\x00\xff", sid)

    await client.command("close", code=1000, reason="bye")
    assert await client.closed() == (1000, "bye")
    gone = await echo.next_event("ws.session.disconnected")
    assert json.loads(gone.body) == {"session_id": sid, "code": 1000, "reason": "bye"}


async def test_component_publishes_text_and_binary_bodies(
    js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    client, sid = await js.open_session(dep.url())
    assert await echo.publish(sid, "to JS ✓ 👋".encode()) == Ok()
    assert await client.recv() == {
        "type": "message",
        "seq": 1,
        "subject": sid,
        "body": "to JS ✓ 👋",
        "reply_to": None,
    }
    # <sid>.R: the client sees subject R. A body that is not UTF-8 comes as body_b64.
    assert await echo.publish(f"{sid}.files.x", b"\xff\xfe\x00\x80", reply_to="back") == Ok()
    assert await client.recv() == {
        "type": "message",
        "seq": 2,
        "subject": "files.x",
        "body_b64": base64.b64encode(b"\xff\xfe\x00\x80").decode(),
        "reply_to": "back",
    }
    # Bytes that happen to be valid UTF-8 come as a string (JS re-encodes them losslessly).
    assert await echo.publish(sid, b"\x00\x01 {") == Ok()
    frame = await client.recv()
    assert frame["body"] == "\x00\x01 {" and "body_b64" not in frame
    # Broadcast reaches the JS client too.
    assert await echo.publish("broadcast", b"all") == Ok()
    frame = await client.recv()
    assert (frame["subject"], frame["body"]) == ("broadcast", "all")


async def test_wildcard_subscriptions_fan_out(
    js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    deep, sid_deep = await js.open_session(dep.url())
    shallow, sid_shallow = await js.open_session(dep.url())
    await deep.send_json({"type": "subscribe", "subject": "news.>"})
    await shallow.send_json({"type": "subscribe", "subject": "news.*"})
    await barrier(deep, echo)
    await barrier(shallow, echo)

    assert await echo.publish("news.tech", b"t") == Ok()
    expected = {"type": "message", "subject": "news.tech", "body": "t", "reply_to": None}
    assert {k: v for k, v in (await deep.recv()).items() if k != "seq"} == expected
    assert {k: v for k, v in (await shallow.recv()).items() if k != "seq"} == expected
    assert await echo.publish("news.sport.f1", b"s", reply_to="inbox.1") == Ok()
    frame = await deep.recv()
    assert isinstance(frame.pop("seq"), int)
    assert frame == {
        "type": "message",
        "subject": "news.sport.f1",
        "body": "s",
        "reply_to": "inbox.1",
    }
    assert await echo.publish("weather.today", b"w") == Ok()  # nobody subscribed
    # news.sport.f1 and weather.today did not reach `shallow`; weather.today not `deep`.
    for client, sid in ((deep, sid_deep), (shallow, sid_shallow)):
        assert await echo.publish(sid, b"marker") == Ok()
        assert (await client.recv())["body"] == "marker"

    await deep.send_json({"type": "unsubscribe", "subject": "news.>"})
    await barrier(deep, echo)
    assert await echo.publish("news.tech", b"t2") == Ok()
    assert (await shallow.recv())["body"] == "t2"
    assert await echo.publish(sid_deep, b"after") == Ok()
    assert (await deep.recv())["body"] == "after"  # news.tech did not arrive first


async def test_request_answered_by_js_client(
    js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    client, sid = await js.open_session(dep.url())
    request = asyncio.create_task(echo.request(f"{sid}.ask", b"question?", 5000))
    frame = await client.recv()
    token = frame["reply_to"]
    assert frame == {
        "type": "message",
        "seq": 1,
        "subject": "ask",
        "body": "question?",
        "reply_to": token,
    }
    assert isinstance(token, str) and token.startswith("rq_")
    await client.message(token, {"answer": 42})
    result = await asyncio.wait_for(request, 10)
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage), result
    assert result.value.subject == token and result.value.body == b'{"answer":42}'
    # The answer was taken by the request, not delivered to the component.
    await client.message("after", "x")
    assert (await echo.next()).subject == "after"

    # An unanswered request times out with Err.
    result = await echo.request(sid, b"ignored", 300)
    assert isinstance(result, Err) and "timed out after 300 ms" in result.message
    assert (await client.recv())["body"] == "ignored"


async def test_bad_frames_from_js_get_errors_and_session_stays_open(
    js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    client, sid = await js.open_session(dep.url())
    await client.send_text("not json")
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "bad_frame", error
    assert isinstance(error["message"], str) and "id" not in error
    await client.send_text("[1, 2]")
    assert (await client.recv())["code"] == "bad_frame"
    await client.send_binary(b"\xc1 neither JSON nor MessagePack")
    assert (await client.recv())["code"] == "bad_frame"
    await client.send_json({"subject": 42, "id": "f1"})
    error = await client.recv()
    assert (error["code"], error["id"]) == ("bad_field", "f1")
    await client.send_json({"subject": "s", "body_b64": "%%%", "id": "f2"})
    error = await client.recv()
    assert (error["code"], error["id"]) == ("bad_base64", "f2")
    # JSON.stringify escapes a lone surrogate; the server refuses it as not UTF-8.
    await client.send_json({"subject": "s", "body": "\ud800"})
    assert (await client.recv())["code"] == "bad_utf8"
    await client.send_json({"type": "subscribe", "subject": "a.>.b"})
    assert (await client.recv())["code"] == "bad_subject"

    await client.message("good", "ok")
    assert await echo.next() == BrokerMessage("good", b"ok", sid)
    assert await echo.publish(sid, b"still open") == Ok()
    assert (await client.recv())["body"] == "still open"


async def test_msgpack_subprotocol_both_ways(
    js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    client = await js.open(dep.url(), (MSGPACK_PROTOCOL, JSON_PROTOCOL))
    assert client.protocol == MSGPACK_PROTOCOL
    welcome = await client.recv_msgpack()
    sid = welcome["session_id"]
    assert welcome["type"] == "welcome" and welcome["protocol"] == 1 and welcome["seq"] == 0
    connected = await echo.next(skip_events=False)
    assert connected.subject == "ws.session.connected" and connected.reply_to == sid

    # server -> JS: bodies are MessagePack bin (a Uint8Array in JS), whatever they contain.
    assert await echo.publish(f"{sid}.data", b"\x00binary\xff", reply_to="back") == Ok()
    assert await client.recv_msgpack() == {
        "type": "message",
        "seq": 1,
        "subject": "data",
        "body": b"\x00binary\xff",
        "reply_to": "back",
    }
    assert await echo.publish(sid, b"text") == Ok()
    assert (await client.recv_msgpack())["body"] == b"text"

    # JS -> server: a Uint8Array body is bin, a string is str, anything else becomes JSON.
    await client.send_msgpack({"subject": "mp", "body": b"\x01\x02\xff", "reply_to": "r9"})
    assert await echo.next() == BrokerMessage("mp", b"\x01\x02\xff", f"{sid}.r9")
    await client.send_msgpack({"type": "message", "subject": "mp", "body": "héllo"})
    assert await echo.next() == BrokerMessage("mp", "héllo".encode(), sid)
    await client.send_msgpack({"subject": "mp", "body": {"a": [1, 2.5]}})
    assert await echo.next() == BrokerMessage("mp", b'{"a":[1,2.5]}', sid)

    # Request/response in MessagePack.
    request = asyncio.create_task(echo.request(sid, b"q", 5000))
    frame = await client.recv_msgpack()
    assert frame["body"] == b"q" and frame["reply_to"].startswith("rq_")
    await client.send_msgpack({"subject": frame["reply_to"], "body": b"a"})
    result = await asyncio.wait_for(request, 10)
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage), result
    assert result.value.body == b"a"

    # Errors come back as MessagePack too, and the session stays open.
    await client.send_msgpack({"subject": 5, "id": "m1"})
    error = await client.recv_msgpack()
    assert (error["type"], error["code"], error["id"]) == ("error", "bad_field", "m1")
    await client.send_binary(b"\xc1")
    assert (await client.recv_msgpack())["code"] == "bad_frame"
    await client.send_msgpack({"subject": "still", "body": b""})
    assert await echo.next() == BrokerMessage("still", b"", sid)

    # Without the subprotocol (no protocol negotiated), ?format=msgpack selects MessagePack.
    query_client = await js.open(dep.url("/ws?format=msgpack"), protocols=())
    assert query_client.protocol == ""
    query_sid = (await query_client.recv_msgpack())["session_id"]
    assert await echo.publish(query_sid, b"via query") == Ok()
    assert (await query_client.recv_msgpack())["body"] == b"via query"


async def test_host_shutdown_closes_js_client_with_1001(
    host: FakeHost, js: JsClients, dep: Deployment, echo: TestComponent
) -> None:
    client, _ = await js.open_session(dep.url())
    msgpack_client = await js.open(dep.url(), (MSGPACK_PROTOCOL,))
    assert (await msgpack_client.recv_msgpack())["type"] == "welcome"
    assert await echo.publish("broadcast", b"last words") == Ok()
    assert await host.shutdown() == b"shutting down"
    assert (await client.recv())["body"] == "last words"
    assert await client.closed() == (1001, "server shutting down")
    assert (await msgpack_client.recv_msgpack())["body"] == b"last words"
    assert await msgpack_client.closed() == (1001, "server shutting down")
    assert await dep.proc.wait_exit(5.0) == 0
