"""`NatsWire` against a real nats-server, and against nats-py on the same server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import MappingProxyType

import nats
import pytest
from nats.aio.msg import Msg

from provider.natsserver import NatsServer
from tests.natsjwt import Trust
from wasmcloud_provider_sdk.errors import (
    LatticeConnectError,
    LatticeUnavailable,
    PayloadTooLarge,
)
from wasmcloud_provider_sdk.hostdata import HostData
from wasmcloud_provider_sdk.lattice_connect import connect_lattice_wire
from wasmcloud_provider_sdk.natswire import NatsWire, WireOptions
from wasmcloud_provider_sdk.wire import STATUS, WireMsg

WAIT = 10.0


class Inbox:
    """A subscription callback that collects messages and wakes a waiter at a count."""

    def __init__(self) -> None:
        self.msgs: list[WireMsg] = []
        self._changed = asyncio.Event()

    def __call__(self, msg: WireMsg) -> None:
        self.msgs.append(msg)
        self._changed.set()

    async def wait(self, count: int = 1) -> list[WireMsg]:
        async with asyncio.timeout(WAIT):
            while len(self.msgs) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.msgs


async def py_flush(nc: nats.NATS) -> None:
    """Wait until the server has nc's subscriptions. nats-py 2.16's `flush` writes its PING
    before the commands still pending (a SUB just made), so one flush is not enough; the
    second PING goes out after them (its flusher task has run by the first PONG)."""
    await nc.flush()
    await nc.flush()


@pytest.fixture
async def wire(nats_server: NatsServer) -> AsyncIterator[NatsWire]:
    w = await NatsWire.connect(nats_server.url, WireOptions(name="wire-test"))
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url, allow_reconnect=False)
    try:
        yield client
    finally:
        await client.close()


async def test_publish_and_subscribe(wire: NatsWire) -> None:
    got = Inbox()
    wire.subscribe("a.*", got)
    wire.publish("a.1", b"one")
    wire.publish("a.2", b"two", reply="r", headers={"K": "v"})
    msgs = await got.wait(2)
    assert [(m.subject, m.reply, m.headers, m.data) for m in msgs] == [
        ("a.1", "", None, b"one"),
        ("a.2", "r", {"K": "v"}, b"two"),
    ]
    assert wire.is_connected
    assert wire.max_payload == 1024 * 1024


async def test_nats_py_receives_what_the_wire_publishes(wire: NatsWire, nc: nats.NATS) -> None:
    got: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("to.py", cb=got.put)
    await py_flush(nc)
    wire.publish("to.py", b"data", reply="back", headers={"Trace": "t-1"})
    msg = await asyncio.wait_for(got.get(), WAIT)
    assert (msg.subject, msg.reply, msg.data, msg.headers) == (
        "to.py",
        "back",
        b"data",
        {"Trace": "t-1"},
    )


async def test_read_only_headers_are_sent_the_same_every_time(wire: NatsWire) -> None:
    """A read-only header mapping (a call's fixed headers) is encoded once and reused; what
    arrives is the same as for a plain dict, every time."""
    got = Inbox()
    wire.subscribe("fixed", got)
    fixed = MappingProxyType({"source-id": "prov", "target-id": "comp"})
    wire.publish("fixed", b"1", headers=fixed)
    wire.publish("fixed", b"2", headers=fixed)
    wire.publish("fixed", b"3", headers=dict(fixed))
    msgs = await got.wait(3)
    assert [(m.data, dict(m.headers or {})) for m in msgs] == [
        (n, {"source-id": "prov", "target-id": "comp"}) for n in (b"1", b"2", b"3")
    ]


async def test_the_wire_receives_what_nats_py_publishes(wire: NatsWire, nc: nats.NATS) -> None:
    got = Inbox()
    wire.subscribe("to.wire", got)
    await wire.flush()
    await nc.publish("to.wire", b"data", reply="back", headers={"Trace": "t-2"})
    await nc.publish("to.wire", b"")
    msgs = await got.wait(2)
    assert [(m.reply, m.headers, m.data) for m in msgs] == [
        ("back", {"Trace": "t-2"}, b"data"),
        ("", None, b""),
    ]


async def test_queue_groups_both_ways(wire: NatsWire, nc: nats.NATS) -> None:
    both = Inbox()
    members: list[list[WireMsg]] = [[], []]
    for mine in members:

        def member(msg: WireMsg, mine: list[WireMsg] = mine) -> None:
            mine.append(msg)
            both(msg)

        wire.subscribe("work", member, queue="q")
    py_got: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("py.work", queue="q", cb=py_got.put)
    await nc.subscribe("py.work", queue="q", cb=py_got.put)
    await py_flush(nc)
    await wire.flush()
    for i in range(50):
        await nc.publish("work", b"%d" % i)
        wire.publish("py.work", b"%d" % i)
    await both.wait(50)
    await wire.flush()
    assert len(both.msgs) == 50  # each message to one member only
    assert sorted(int(m.data) for m in both.msgs) == list(range(50))
    received = [await asyncio.wait_for(py_got.get(), WAIT) for _ in range(50)]
    assert sorted(int(m.data) for m in received) == list(range(50))
    assert py_got.empty()


async def test_no_responders_is_a_503_status(wire: NatsWire) -> None:
    got = Inbox()
    inbox = wire.new_inbox()
    wire.subscribe(inbox, got)
    wire.publish("nobody.serves.this", b"?", reply=inbox)
    [msg] = await got.wait()
    assert msg.headers is not None and msg.headers[STATUS] == "503"
    assert msg.data == b""


async def test_inboxes_are_unguessable(wire: NatsWire) -> None:
    inboxes = {wire.new_inbox() for _ in range(1000)}
    assert len(inboxes) == 1000
    assert all(i.startswith("_INBOX.") and len(i) == 7 + 22 for i in inboxes)


async def test_max_payload_comes_from_the_server() -> None:
    with NatsServer(max_payload=1024) as server:
        w = await NatsWire.connect(server.url)
        try:
            assert w.max_payload == 1024
            got = Inbox()
            w.subscribe("s", got)
            w.publish("s", b"x" * 1024)
            with pytest.raises(PayloadTooLarge):
                w.publish("s", b"x" * 1025)
            with pytest.raises(PayloadTooLarge):  # the header block counts
                w.publish("s", b"x" * 1020, headers={"K": "v"})
            w.publish("s", b"after")
            assert [m.data for m in await got.wait(2)] == [b"x" * 1024, b"after"]
        finally:
            await w.close()


async def test_one_mib_payloads(wire: NatsWire, nc: nats.NATS) -> None:
    payload = os.urandom(1024 * 1024)
    got = Inbox()
    wire.subscribe("big", got)
    py_got: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("big", cb=py_got.put)
    await py_flush(nc)
    await wire.flush()
    for _ in range(3):
        wire.publish("big", payload)
    msgs = await got.wait(3)
    assert all(m.data == payload for m in msgs)
    for _ in range(3):
        assert (await asyncio.wait_for(py_got.get(), WAIT)).data == payload


async def test_ten_thousand_messages_in_order(wire: NatsWire) -> None:
    got = Inbox()
    wire.subscribe("seq", got)
    for i in range(10_000):
        wire.publish("seq", b"%d" % i)
    msgs = await got.wait(10_000)
    assert [int(m.data) for m in msgs] == list(range(10_000))


async def test_flush_and_close(wire: NatsWire) -> None:
    await wire.flush()
    await wire.close()
    assert not wire.is_connected
    with pytest.raises(LatticeUnavailable):
        wire.publish("s", b"x")
    with pytest.raises(LatticeUnavailable):
        await wire.flush()
    await wire.close()  # idempotent


async def test_close_writes_what_is_pending(wire: NatsWire, nc: nats.NATS) -> None:
    got: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("last", cb=got.put)
    await py_flush(nc)
    wire.publish("last", b"words")
    await wire.close()
    assert (await asyncio.wait_for(got.get(), WAIT)).data == b"words"


def listeners() -> tuple[
    asyncio.Event, asyncio.Event, list[Callable[[], None]], list[Callable[[], None]]
]:
    down, up = asyncio.Event(), asyncio.Event()
    return down, up, [down.set], [up.set]


async def test_reconnect_after_a_server_restart() -> None:
    down, up, on_down, on_up = listeners()
    server = NatsServer().start()
    try:
        w = await NatsWire.connect(server.url, on_disconnected=on_down, on_reconnected=on_up)
        got, gone = Inbox(), Inbox()
        w.subscribe("before", got)
        sid = w.subscribe("unsubscribed", gone)
        await w.flush()
        server.stop()
        await asyncio.wait_for(down.wait(), WAIT)
        assert not w.is_connected
        with pytest.raises(LatticeUnavailable):  # not queued for an answer that cannot come
            w.publish("before", b"lost")
        with pytest.raises(LatticeUnavailable):
            await w.flush()
        w.subscribe("during", got)  # sent by the reconnect handshake
        w.unsubscribe(sid)
        server.start()
        await asyncio.wait_for(up.wait(), WAIT)
        assert w.is_connected
        nc = await nats.connect(server.url, allow_reconnect=False)
        await nc.publish("unsubscribed", b"no")
        await nc.publish("before", b"1")
        await nc.publish("during", b"2")
        await nc.close()
        assert [m.data for m in await got.wait(2)] == [b"1", b"2"]
        await w.flush()
        assert gone.msgs == []
        await w.close()
    finally:
        server.stop()


async def test_an_unresponsive_server_is_a_lost_connection(nats_server: NatsServer) -> None:
    down, up, on_down, on_up = listeners()
    w = await NatsWire.connect(
        nats_server.url,
        WireOptions(ping_interval=0.2),
        on_disconnected=on_down,
        on_reconnected=on_up,
    )
    os.kill(nats_server.pid, signal.SIGSTOP)
    try:
        await asyncio.wait_for(down.wait(), WAIT)  # 2 PINGs unanswered
        assert not w.is_connected
    finally:
        os.kill(nats_server.pid, signal.SIGCONT)
    await asyncio.wait_for(up.wait(), WAIT)
    await w.close()


async def test_unreachable_server_fails_with_the_reason() -> None:
    with NatsServer() as server:
        url = server.url
    with pytest.raises(LatticeConnectError, match="connection refused") as caught:
        await NatsWire.connect(url, WireOptions(connect_attempts=2, connect_retry_wait=0.01))
    assert "2 attempts" in str(caught.value)


async def test_user_jwt_and_nkey_auth() -> None:
    trust = Trust()
    user, impostor = trust.user("wire"), trust.user("impostor")
    with NatsServer(extra_config=trust.server_config()) as server:
        for good in (True, False):
            host_data = HostData(
                lattice_rpc_url=server.url,
                lattice_rpc_user_jwt=user.jwt,
                lattice_rpc_user_seed=user.seed if good else impostor.seed,
            )
            if not good:
                with pytest.raises(LatticeConnectError, match="Authorization Violation"):
                    await connect_lattice_wire(host_data, "wire")
                continue
            w = await connect_lattice_wire(host_data, "wire")
            got = Inbox()
            w.subscribe("authed", got)
            w.publish("authed", b"ok")
            assert [m.data for m in await got.wait()] == [b"ok"]
            await w.close()
        with pytest.raises(LatticeConnectError, match="Authorization Violation"):
            await NatsWire.connect(server.url)


async def test_user_and_password_from_the_url() -> None:
    config = 'authorization { user: "alice", password: "s3cret" }'
    with NatsServer(extra_config=config) as server:
        good = f"nats://alice:s3cret@127.0.0.1:{server.port}"
        w = await NatsWire.connect(good)
        await w.flush()
        await w.close()
        bad = f"nats://alice:wrong@127.0.0.1:{server.port}"
        with pytest.raises(LatticeConnectError) as caught:
            await NatsWire.connect(bad)
        assert "wrong" not in str(caught.value)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize("handshake_first", [False, True])
async def test_tls(tls_files: tuple[Path, Path], handshake_first: bool) -> None:
    import ssl

    cert, key = tls_files
    first = "\n  handshake_first: true" if handshake_first else ""
    config = f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"{first}\n}}'
    with NatsServer(extra_config=config) as server:
        context = ssl.create_default_context(cafile=str(cert))
        options = WireOptions(tls=context, tls_handshake_first=handshake_first)
        w = await NatsWire.connect(f"tls://127.0.0.1:{server.port}", options)
        got = Inbox()
        w.subscribe("secure", got)
        w.publish("secure", b"x" * 100_000)
        assert [len(m.data) for m in await got.wait()] == [100_000]
        await w.close()
        with pytest.raises(LatticeConnectError):  # the server's certificate is not trusted
            await NatsWire.connect(server.url, WireOptions(tls_handshake_first=handshake_first))


async def test_server_pings_are_answered() -> None:
    """The server drops a client that misses its PINGs (here one, 50 ms apart)."""
    down, _, on_down, _ = listeners()
    with NatsServer(extra_config='ping_interval: "50ms"\nping_max: 1') as server:
        w = await NatsWire.connect(server.url, on_disconnected=on_down)
        with pytest.raises(TimeoutError):  # ~20 server PINGs go by, no disconnect
            await asyncio.wait_for(down.wait(), 1.0)
        assert w.is_connected
        await w.close()


async def test_nats_py_wire_honours_an_unsubscribe_made_before_its_subscribe(
    nc: nats.NATS, wire: NatsWire
) -> None:
    """`NatsPyWire` makes its subscriptions in tasks: one unsubscribed before its task ran
    must not stay live (it would keep receiving for ever)."""
    from wasmcloud_provider_sdk.wire_natspy import NatsPyWire

    py_wire = NatsPyWire(nc)
    got: list[WireMsg] = []
    sid = py_wire.subscribe("early.gone", got.append)
    py_wire.unsubscribe(sid)
    await py_wire.flush()
    probe: list[WireMsg] = []
    py_wire.subscribe("early.probe", probe.append)
    await py_wire.flush()
    wire.publish("early.gone", b"x")
    wire.publish("early.probe", b"p")  # after the first on the same connection
    await wire.flush()
    for _ in range(1000):
        if probe:
            break
        await asyncio.sleep(0)  # turns of the loop for nats-py's delivery task
    else:
        await asyncio.wait_for(py_wire.flush(), 2)
    assert [m.data for m in probe] == [b"p"]
    assert got == []
