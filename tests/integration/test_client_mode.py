"""Client mode under a test host: the provider connects out to a real WebSocket server."""

from __future__ import annotations

import asyncio
import itertools
import re
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import trustme

from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.peers import PeerServer
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


@pytest.fixture
async def peer() -> AsyncIterator[PeerServer]:
    server = await PeerServer().start()
    try:
        yield server
    finally:
        await server.stop()


async def start_client(
    host: FakeHost,
    component: str,
    config: dict[str, str],
    *,
    secrets: dict[str, str] | None = None,
    handler: bool = True,
) -> ProviderProcess:
    links = [
        host.consumer_link(
            component, target_config={"MODE": "client", **config}, target_secrets=secrets
        )
    ]
    if handler:
        links.append(host.handler_link(component))
    proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    return proc


async def test_headers_token_and_traffic_both_ways(host: FakeHost, peer: PeerServer) -> None:
    comp = await TestComponent(host, "comp1").serve()
    proc = await start_client(
        host,
        "comp1",
        {"URI": peer.url, "HEADER_X_TRACE_ID": "abc-123", "SUBPROTOCOLS": "chat.v1"},
        secrets={"AUTH_TOKEN": "t0ps3cret"},
    )
    await peer.wait_connected()
    seen = peer.attempts[0].headers
    assert seen["Authorization"] == "Bearer t0ps3cret"
    assert seen["X-Trace-Id"] == "abc-123"
    assert seen["Sec-WebSocket-Protocol"] == "chat.v1"
    # component -> server
    assert await comp.publish("orders.new", b'{"id":1}', reply_to="orders.ack") == Ok()
    assert await peer.next_json() == {
        "type": "message",
        "subject": "orders.new",
        "body": '{"id":1}',
        "reply_to": "orders.ack",
    }
    # server -> component
    await peer.send({"subject": "prices", "body": "42", "reply_to": "srv.r1"})
    assert await comp.next() == BrokerMessage("prices", b"42", "srv.r1")
    # component -> server request, answered by the server
    task = asyncio.create_task(comp.request("quote", b"EURUSD", 5000))
    frame = await peer.next_json()
    assert frame["subject"] == "quote" and frame["reply_to"].startswith("rq_")
    await peer.send({"subject": frame["reply_to"], "body": "1.08"})
    result = await task
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage)
    assert result.value.body == b"1.08"
    # server -> component request: the component answers on the server's reply subject
    await peer.send({"subject": "ask", "body": "ping", "reply_to": "srv.answer.7"})
    asked = await comp.next()
    assert asked.reply_to == "srv.answer.7"
    assert await comp.publish(asked.reply_to, b"pong") == Ok()
    assert (await peer.next_json())["subject"] == "srv.answer.7"
    # timeout
    result = await comp.request("never", b"", 200)
    assert isinstance(result, Err) and "timed out after 200 ms" in result.message
    await host.shutdown()
    await proc.wait_exit(2)
    assert "t0ps3cret" not in proc.stderr


async def test_raw_mode(host: FakeHost, peer: PeerServer) -> None:
    comp = await TestComponent(host, "comp1").serve()
    await start_client(host, "comp1", {"URI": peer.url, "FORMAT": "raw", "SUBJECT": "feed.in"})
    await peer.wait_connected()
    assert await comp.publish("ignored", b"hello raw") == Ok()
    assert await peer.next_frame() == "hello raw"  # UTF-8: a text frame
    assert await comp.publish("ignored", b"\xff\x00") == Ok()
    assert await peer.next_frame() == b"\xff\x00"  # not UTF-8: a binary frame
    await peer.send("tick 1")
    assert await comp.next() == BrokerMessage("feed.in", b"tick 1", None)
    await peer.send(b"\x01\x02")
    assert await comp.next() == BrokerMessage("feed.in", b"\x01\x02", None)
    result = await comp.request("x", b"", 100)
    assert isinstance(result, Err) and "FORMAT=raw" in result.message


async def test_reconnect_with_growing_delays_and_buffered_delivery(
    host: FakeHost, peer: PeerServer
) -> None:
    comp = await TestComponent(host, "comp1").serve()
    await start_client(
        host,
        "comp1",
        {
            "URI": peer.url,
            "RECONNECT_MIN_MS": "100",
            "RECONNECT_MAX_MS": "5000",
            "RECONNECT_JITTER": "none",
            "OUTBOUND_BUFFER": "100",
        },
    )
    await peer.wait_connected()
    assert await comp.publish("live", b"0") == Ok()
    assert (await peer.next_json())["body"] == "0"
    # The server restarts; while it comes back it refuses upgrades with 503 four times.
    await peer.stop()
    peer.refuse_with, peer.refuse_count = 503, 4
    attempts_before = len(peer.attempts)
    for i in range(1, 6):  # published while disconnected: buffered
        assert await comp.publish("buffered", str(i).encode()) == Ok()
    await peer.start()
    await peer.wait_attempts(attempts_before + 5, timeout=20)
    await peer.wait_connected()
    got = [(await peer.next_json())["body"] for _ in range(5)]
    assert got == ["1", "2", "3", "4", "5"]  # once each, in order
    with pytest.raises(TimeoutError):
        await peer.next_frame(timeout=0.3)  # and nothing twice
    times = [a.at for a in peer.attempts[attempts_before : attempts_before + 5]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each refused attempt doubles the delay (100 ms steps, no jitter): gaps grow.
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(gaps)), gaps
    await peer.send({"subject": "back", "body": "again"})
    assert (await comp.next()).subject == "back"


async def test_401_stops_retrying_and_reports_health(host: FakeHost, peer: PeerServer) -> None:
    comp = await TestComponent(host, "comp1").serve()
    peer.refuse_with = 401
    proc = await start_client(host, "comp1", {"URI": peer.url, "RECONNECT_MIN_MS": "20"})
    await peer.wait_attempts(1)
    await proc.wait_for_line("failed permanently")
    health = await host.health()
    assert health["healthy"] is False
    assert "HTTP 401" in health["message"]
    with pytest.raises(TimeoutError):
        await peer.wait_attempts(2, timeout=1.0)  # no retry storm: exactly one attempt
    result = await comp.publish("x", b"")
    assert isinstance(result, Err) and "HTTP 401" in result.message


async def test_handshake_timeout_is_honoured(host: FakeHost) -> None:
    accepted: list[float] = []
    got_two = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(loop.time())
        if len(accepted) >= 2:
            got_two.set()
        await reader.read()  # never answers the upgrade
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proc = await start_client(
            host,
            "comp1",
            {
                "URI": f"ws://127.0.0.1:{port}/x",
                "CONNECT_TIMEOUT_SEC": "0.5",
                "RECONNECT_MIN_MS": "50",
                "RECONNECT_JITTER": "none",
            },
        )
        await asyncio.wait_for(got_two.wait(), 10)
        # The first attempt was given up after the 0.5 s timeout, then 50 ms of backoff.
        assert 0.5 <= accepted[1] - accepted[0] < 2.0
        await proc.wait_for_line("no completed opening handshake within 0.5s")
    finally:
        server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def wss_peer(ca: trustme.CA) -> PeerServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return await PeerServer(ssl_context=ctx).start()


async def test_wss_with_private_ca(host: FakeHost, ca: trustme.CA) -> None:
    peer = await wss_peer(ca)
    try:
        comp = await TestComponent(host, "comp1").serve()
        await start_client(host, "comp1", {"URI": peer.url, "TLS_CA": ca.cert_pem.bytes().decode()})
        await peer.wait_connected()
        assert await comp.publish("secure", b"yes") == Ok()
        assert (await peer.next_json())["body"] == "yes"
    finally:
        await peer.stop()


async def test_wss_without_the_ca_is_refused_clearly(host: FakeHost, ca: trustme.CA) -> None:
    peer = await wss_peer(ca)
    try:
        comp = await TestComponent(host, "comp1").serve()
        proc = await start_client(host, "comp1", {"URI": peer.url, "RECONNECT_MIN_MS": "20"})
        line = await proc.wait_for_line("failed permanently")
        assert "certificate verification failed" in line and "TLS_CA" in line
        result = await comp.publish("x", b"")
        assert isinstance(result, Err) and "certificate" in result.message
        assert peer.connections == []
    finally:
        await peer.stop()


async def test_link_delete_closes_with_1000(host: FakeHost, peer: PeerServer) -> None:
    await TestComponent(host, "comp1").serve()
    link = host.consumer_link("comp1", target_config={"MODE": "client", "URI": peer.url})
    await host.start_provider(WS_PROVIDER, link_definitions=[link])
    await host.wait_healthy()
    await peer.wait_connected()
    await host.del_link(link)
    code, reason = await asyncio.wait_for(peer.closes.get(), 10)
    assert (code, reason) == (1000, "link deleted")


async def test_buffer_full_fails_fast(host: FakeHost) -> None:
    from provider.natsserver import free_port

    comp = await TestComponent(host, "comp1").serve()
    await start_client(
        host, "comp1", {"URI": f"ws://127.0.0.1:{free_port()}/nobody", "OUTBOUND_BUFFER": "3"}
    )
    for i in range(3):
        assert await comp.publish("x", str(i).encode()) == Ok()
    result = await comp.publish("x", b"4")
    assert isinstance(result, Err)
    assert "outbound buffer full (3 messages) while disconnected" in result.message


async def test_bad_client_config_fails_the_link(host: FakeHost) -> None:
    comp = await TestComponent(host, "comp1").serve()
    links = [host.consumer_link("comp1", target_config={"MODE": "client", "URI": "http://x"})]
    proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
    await host.wait_healthy()
    await proc.wait_for_line("invalid URI='http://x'")
    result = await comp.publish("x", b"")
    assert isinstance(result, Err)
    assert "link 'default' of comp1 is misconfigured: invalid URI='http://x'" in result.message


async def test_readme_worked_example_with_the_echo_server(host: FakeHost) -> None:
    """The README's client-mode example: examples/echo_server.py, MODE=client, FORMAT=raw."""
    import sys

    from provider.natsserver import free_port
    from tests.harness import ROOT

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "echo_server.py"),
        str(port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        assert b"echo server on" in await asyncio.wait_for(server.stdout.readline(), 10)
        comp = await TestComponent(host, "comp1").serve()
        await start_client(
            host,
            "comp1",
            {"URI": f"ws://127.0.0.1:{port}/", "FORMAT": "raw"},
            secrets={"AUTH_TOKEN": "demo"},
        )
        assert b"Authorization header: yes" in await asyncio.wait_for(server.stdout.readline(), 10)
        assert await comp.publish("anything", b"hello, echo") == Ok()
        assert await comp.next() == BrokerMessage("ws.message", b"hello, echo", None)
    finally:
        server.terminate()
        await server.wait()


async def test_mutual_tls_and_explicit_insecure_mode(host: FakeHost, ca: trustme.CA) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED  # the server demands a client certificate
    ca.configure_trust(ctx)
    peer = await PeerServer(ssl_context=ctx).start()
    client_cert = ca.issue_cert("provider.example")
    try:
        comp = await TestComponent(host, "comp1").serve()
        await start_client(
            host,
            "comp1",
            {
                "URI": peer.url,
                "TLS_INSECURE_SKIP_VERIFY": "true",  # no CA given: only works when asked for
            },
            secrets={
                "TLS_CLIENT_CERT": client_cert.cert_chain_pems[0].bytes().decode(),
                "TLS_CLIENT_KEY": client_cert.private_key_pem.bytes().decode(),
            },
        )
        await peer.wait_connected()
        assert await comp.publish("mtls", b"ok") == Ok()
        assert (await peer.next_json())["body"] == "ok"
    finally:
        await peer.stop()


async def test_oversize_frame_from_the_server_is_reported_as_1009(
    host: FakeHost, peer: PeerServer
) -> None:
    await TestComponent(host, "comp1").serve()
    proc = await start_client(host, "comp1", {"URI": peer.url, "MAX_MESSAGE_BYTES": "100"})
    await peer.wait_connected()
    await peer.send("x" * 500)
    await proc.wait_for_line("connection lost (close code 1009)")
    code, _ = await asyncio.wait_for(peer.closes.get(), 10)
    assert code == 1009


async def test_server_name_check_and_override(host: FakeHost, ca: trustme.CA) -> None:
    peer = await wss_peer(ca)  # certificate for "localhost"
    ip_url = peer.url.replace("localhost", "127.0.0.1")
    try:
        comp = await TestComponent(host, "comp1").serve()
        pem = ca.cert_pem.bytes().decode()
        links = [
            # the certificate does not name 127.0.0.1: refused, even with the right CA
            host.consumer_link(
                "comp1", target_config={"MODE": "client", "URI": ip_url, "TLS_CA": pem}
            ),
            # the same address, checked against the name the certificate carries
            host.consumer_link(
                "comp1",
                name="named",
                target_config={
                    "MODE": "client",
                    "URI": ip_url,
                    "TLS_CA": pem,
                    "TLS_SERVER_NAME": "localhost",
                },
            ),
        ]
        proc = await host.start_provider(WS_PROVIDER, link_definitions=links)
        await host.wait_healthy()
        await proc.wait_for_line("certificate verification failed")
        await peer.wait_connected()
        assert await comp.publish("via-name", b"ok", link="named") == Ok()
        assert (await peer.next_json())["subject"] == "via-name"
    finally:
        await peer.stop()


# --- session identity ----------------------------------------------------------------------

SESSION_ID = re.compile(r"^ws_[A-Za-z0-9_-]{22}$")


async def list_sessions(host: FakeHost) -> list[dict[str, Any]]:
    """The provider's tracked sessions, asked on the subject `list_ws_clients(cluster=True)`
    uses (one instance, so the first answer is the whole list)."""
    assert host.nc is not None
    msg = await host.nc.request(f"wsp.{host.lattice}.{host.provider_id}.list", b"", timeout=5)
    sessions: list[dict[str, Any]] = msgpack.unpackb(msg.data)["sessions"]
    return sessions


async def test_client_connection_is_a_listed_addressable_session(
    host: FakeHost, peer: PeerServer
) -> None:
    comp = await TestComponent(host, "comp1").serve()
    uri = peer.url.replace("ws://", "ws://user:pa55@") + "?api_key=s3cret"
    await start_client(host, "comp1", {"URI": uri})
    assert await comp.publish("hello", b"1") == Ok()  # sent once connected
    assert (await peer.next_json())["subject"] == "hello"
    await peer.send({"subject": "tick", "body": "abc"})
    await comp.next()
    [entry] = await list_sessions(host)
    assert entry["mode"] == "client" and SESSION_ID.match(entry["session_id"])
    assert entry["state"] == "connected"
    assert (entry["component_id"], entry["link_name"]) == ("comp1", "default")
    assert entry["remote_addr"] == f"ws://localhost:{peer.port}/socket"  # no secrets
    assert time.time() - 60 < entry["connected_at"] <= time.time()
    counters = entry["counters"]
    assert (counters["messages_in"], counters["messages_out"], counters["connects"]) == (1, 1, 1)
    assert counters["bytes_in"] > 0 and counters["bytes_out"] > 0
    sid = entry["session_id"]
    # Routing rule 1 on the owner's connection: `<sid>.R` goes out with subject R, `<sid>`
    # with subject `<sid>`, and a request is answered like one without the id.
    assert await comp.publish(f"{sid}.orders.new", b"o1", reply_to="r1") == Ok()
    assert await peer.next_json() == {
        "type": "message",
        "subject": "orders.new",
        "body": "o1",
        "reply_to": "r1",
    }
    assert await comp.publish(sid, b"o2") == Ok()
    assert (await peer.next_json())["subject"] == sid
    task = asyncio.create_task(comp.request(f"{sid}.quote", b"q", 5000))
    frame = await peer.next_json()
    assert frame["subject"] == "quote"
    await peer.send({"subject": frame["reply_to"], "body": "1.08"})
    result = await task
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage)
    assert result.value.body == b"1.08"


async def test_client_session_id_is_kept_across_reconnects(
    host: FakeHost, peer: PeerServer
) -> None:
    comp = await TestComponent(host, "comp1").serve()
    await start_client(
        host, "comp1", {"URI": peer.url, "RECONNECT_MIN_MS": "20", "RECONNECT_MAX_MS": "100"}
    )
    ws = await peer.wait_connected()
    [before] = await list_sessions(host)
    sid = before["session_id"]
    # The server drops the connection, then refuses upgrades for a while.
    peer.refuse_with = 503
    attempts = len(peer.attempts)
    await ws.close(1012, "service restart")
    assert (await asyncio.wait_for(peer.closes.get(), 10))[0] == 1012
    await peer.wait_attempts(attempts + 1)
    [during] = await list_sessions(host)
    assert (during["session_id"], during["state"]) == (sid, "reconnecting")
    assert await comp.publish(f"{sid}.while-away", b"kept") == Ok()  # buffered
    peer.refuse_with = None
    await peer.wait_connected()
    assert (await peer.next_json())["subject"] == "while-away"
    [after] = await list_sessions(host)
    assert (after["session_id"], after["state"]) == (sid, "connected")
    assert after["counters"]["connects"] == 2


async def test_other_components_cannot_reach_a_client_session(
    host: FakeHost, peer: PeerServer
) -> None:
    comp1 = await TestComponent(host, "comp1").serve()
    comp2 = await TestComponent(host, "comp2").serve()
    comp3 = TestComponent(host, "comp3")
    peer2 = await PeerServer().start()
    try:
        links = [
            host.consumer_link("comp1", target_config={"MODE": "client", "URI": peer.url}),
            # comp2 has a connection of its own: the id must not go out on it as a subject
            host.consumer_link("comp2", target_config={"MODE": "client", "URI": peer2.url}),
            host.consumer_link("comp3"),  # publish-only
        ]
        await host.start_provider(WS_PROVIDER, link_definitions=links)
        await host.wait_healthy()
        await peer.wait_connected()
        await peer2.wait_connected()
        owners = {s["component_id"]: s["session_id"] for s in await list_sessions(host)}
        sid = owners["comp1"]
        for other in (comp2, comp3):
            assert await other.publish(f"{sid}.x", b"no") == Err(f"no such session: {sid}")
            assert await other.publish(sid, b"no") == Err(f"no such session: {sid}")
            assert await other.request(f"{sid}.q", b"no", 500) == Err(f"no such session: {sid}")
        # Nothing reached either server: the next frame each sees is its owner's marker.
        assert await comp1.publish("marker1", b"") == Ok()
        assert (await peer.next_json())["subject"] == "marker1"
        assert await comp2.publish("marker2", b"") == Ok()
        assert (await peer2.next_json())["subject"] == "marker2"
    finally:
        await peer2.stop()


async def test_session_tracking_off_hides_the_client_connection(
    host: FakeHost, peer: PeerServer
) -> None:
    comp = await TestComponent(host, "comp1").serve()
    config = {"MODE": "client", "URI": peer.url}
    await host.start_provider(
        WS_PROVIDER, link_definitions=[host.consumer_link("comp1", target_config=config)]
    )
    await host.wait_healthy()
    await peer.wait_connected()
    [entry] = await list_sessions(host)
    sid = entry["session_id"]
    assert await comp.publish(sid, b"1") == Ok()
    assert (await peer.next_json())["subject"] == sid
    # The same link updated with ENABLE_SESSION_TRACKING=false: reconnects, without a session.
    untracked = dict(config, ENABLE_SESSION_TRACKING="false")
    await host.put_link(host.consumer_link("comp1", target_config=untracked))
    assert await asyncio.wait_for(peer.closes.get(), 10) == (1000, "link reconfigured")
    await peer.wait_connected()
    assert await list_sessions(host) == []
    assert await comp.publish(sid, b"2") == Err(f"no such session: {sid}")
    assert await comp.publish(f"{sid}.x", b"3") == Err(f"no such session: {sid}")
    assert await comp.publish("plain", b"4") == Ok()
    assert (await peer.next_json())["body"] == "4"  # the connection works; "2", "3" never went
