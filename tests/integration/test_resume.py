"""Session resume and missed-message recovery (docs/RESUME.md), fault by fault, with traffic
flowing.

Real provider processes, real nats-server (with JetStream where the history must outlive a
process), a real wRPC component, real `websockets` clients. A "network drop" aborts the TCP
connection without a close frame, as a lost link does; the provider sees 1006.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from provider.natsserver import NatsServer, free_port
from tests.components import TestComponent
from tests.conftest import connected_host
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
from tests.integration.test_faults import round_trip
from wasmcloud_provider_sdk import Err, Ok


class ResumingClient:
    """A client that does what the README tells clients to do: remember the resume token and
    the last `seq` processed, and present both when reconnecting."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.welcome: dict[str, Any] = {}
        self.token: str | None = None
        self.last_seq = 0

    @property
    def session_id(self) -> str:
        return str(self.welcome["session_id"])

    async def connect(self, *, resume: bool = False, url: str | None = None) -> dict[str, Any]:
        target = url or self.url
        if resume:
            assert self.token is not None
            target += (
                "&" if "?" in target else "?"
            ) + f"resume={quote(self.token)}&last_seq={self.last_seq}"
        self.ws = await connect(target, open_timeout=10)
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert self.welcome["type"] == "welcome", self.welcome
        self.token = self.welcome.get("resume_token")
        if resume and not self.welcome.get("recovered"):
            self.last_seq = int(self.welcome["seq"])  # resync: live traffic continues here
        return self.welcome

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame; a message frame is "processed": its seq becomes last_seq."""
        assert self.ws is not None
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if frame.get("type") == "message":
            assert frame["seq"] == self.last_seq + 1, (frame, self.last_seq)  # no gap, no dup
            self.last_seq = frame["seq"]
        return frame

    async def bodies(self, n: int) -> list[str]:
        return [str((await self.recv())["body"]) for _ in range(n)]

    def drop(self) -> None:
        """The network goes away: no close frame, the TCP connection just dies."""
        assert self.ws is not None
        self.ws.transport.abort()

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(obj))


def links(host: FakeHost, component: str, **config: str) -> list[dict[str, Any]]:
    return [
        host.consumer_link(component),
        host.handler_link(component, source_config={"MODE": "server", **config}),
    ]


async def start(
    host: FakeHost, port: int, component: str = "echo", **config: str
) -> ProviderProcess:
    proc = await host.start_provider(
        WS_PROVIDER,
        link_definitions=links(host, component, **config),
        instance_id=str(uuid.uuid4()),
        config={"URI": f"127.0.0.1:{port}/ws"},
    )
    await proc.wait_for_line(" ready: ")
    return proc


async def two_instances(host: FakeHost) -> tuple[TestComponent, int, ResumingClient, str]:
    """The echo component, two provider instances, and a client connected to the first:
    (component, the second instance's port, client, session id)."""
    comp = await TestComponent(host, "echo").serve()
    port_a, port_b = free_port(), free_port()
    await start(host, port_a)
    await start(host, port_b)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    return comp, port_b, client, sid


async def event_for(comp: TestComponent, subject: str, sid: str) -> dict[str, Any]:
    """The next `subject` event about session `sid` (events of other sessions skipped)."""
    while True:
        event: dict[str, Any] = json.loads((await comp.next_event(subject)).body)
        if event["session_id"] == sid:
            return event


async def publish_all(comp: TestComponent, sid: str, bodies: list[str]) -> None:
    for body in bodies:
        assert await comp.publish(sid, body.encode()) == Ok()


# --- one process, the client's network drops ------------------------------------------------


async def test_network_drop_then_resume_replays_what_was_missed(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    proc = await start(host, port)
    # This nats-server has no JetStream: the provider says resume stays in this process.
    await proc.wait_for_line("JetStream is not available on the lattice NATS")
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    welcome = await client.connect()
    sid = welcome["session_id"]
    assert welcome["seq"] == 0 and welcome["resume_token"].startswith(sid + ".")
    assert welcome["resume_window_sec"] == 120
    await comp.next_event("ws.session.connected")
    await client.send({"type": "subscribe", "subject": "news.>"})
    await publish_all(comp, sid, ["1", "2", "3"])
    assert await client.bodies(2) == ["1", "2"]  # "3" arrived but was not processed
    client.drop()
    detached = json.loads((await comp.next_event("ws.session.detached")).body)
    assert detached["session_id"] == sid and detached["code"] == 1006
    # While detached, publishes to the session are kept, not refused; topics too.
    await publish_all(comp, sid, ["4", "5"])
    assert await comp.publish("news.tech", b"6") == Ok()
    again = await client.connect(resume=True)
    assert again["session_id"] == sid  # the reply addresses components hold stay valid
    assert again["resumed"] is True and again["recovered"] is True and again["seq"] == 6
    assert again["resume_token"] != welcome["resume_token"]  # tokens rotate
    assert await client.bodies(4) == ["3", "4", "5", "6"]  # in order, from last_seq + 1
    resumed = json.loads((await comp.next_event("ws.session.resumed")).body)
    assert resumed["session_id"] == sid and resumed["recovered"] is True
    # Then live traffic, and the subscription survived.
    assert await comp.publish("news.x", b"live") == Ok()
    frame = await client.recv()
    assert frame["body"] == "live" and frame["seq"] == 7
    # The old token was single-use.
    stale = ResumingClient(client.url)
    stale.token, stale.last_seq = welcome["resume_token"], 0
    fresh = await stale.connect(resume=True)
    assert fresh["resumed"] is False and fresh["session_id"] != sid
    # The provider logs at debug level here; no resume token reaches its log.
    for token in (welcome["resume_token"], again["resume_token"]):
        assert token.partition(".")[2] not in proc.stderr


async def test_request_to_a_detached_session_is_answered_after_the_resume(
    host: FakeHost,
) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    await client.connect()
    await client.send({"subject": "orders", "body": "o-1", "id": "m1"})
    got = await comp.next()
    assert got.body == b"o-1"
    assert await client.recv() == {"type": "ack", "id": "m1"}
    client.drop()
    await comp.next_event("ws.session.detached")
    # A component request to the detached session waits for the client to come back.
    ask = asyncio.create_task(comp.request(f"{client.session_id}.ask", b"still there?", 10_000))
    await client.connect(resume=True)
    request = await client.recv()  # the request, replayed with its reply token
    assert request["subject"] == "ask" and request["body"] == "still there?"
    await client.send({"subject": request["reply_to"], "body": "yes"})
    answer = await asyncio.wait_for(ask, 10)
    assert isinstance(answer, Ok) and answer.value is not None and answer.value.body == b"yes"


async def test_history_that_cannot_cover_the_gap_says_recovered_false(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port, RESUME_HISTORY_MESSAGES="3")
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    client.drop()
    await comp.next_event("ws.session.detached")
    await publish_all(comp, sid, [str(i) for i in range(1, 11)])  # 10 > 3 kept
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["resumed"] is True
    assert again["recovered"] is False and again["seq"] == 10  # resync from here
    assert await comp.publish(sid, b"live") == Ok()
    frame = await client.recv()
    assert frame["body"] == "live" and frame["seq"] == 11
    # A client claiming more than was ever sent is not believed either.
    client.drop()
    await comp.next_event("ws.session.detached")
    client.last_seq = 99
    again = await client.connect(resume=True)
    assert again["resumed"] is True and again["recovered"] is False


async def test_resume_window_expires(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port, RESUME_WINDOW_SEC="0.5")
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    client.drop()
    await comp.next_event("ws.session.detached")
    gone = json.loads((await comp.next_event("ws.session.disconnected")).body)
    assert gone["session_id"] == sid and "resume window expired" in gone["reason"]
    assert await comp.publish(sid, b"x") == Err(f"no such session: {sid}")
    again = await client.connect(resume=True)
    assert again["resumed"] is False and again["recovered"] is False
    assert again["session_id"] != sid


async def test_resume_off_means_no_token_and_an_immediate_end(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port, RESUME_WINDOW_SEC="0")
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    welcome = await client.connect()
    sid = welcome["session_id"]
    assert "resume_token" not in welcome and welcome["seq"] == 0
    await publish_all(comp, sid, ["1"])
    assert (await client.recv())["seq"] == 1  # seq is sent all the same
    client.drop()
    gone = await event_for(comp, "ws.session.disconnected", sid)
    assert gone["code"] == 1006
    assert await comp.publish(sid, b"x") == Err(f"no such session: {sid}")
    client.token = sid + "." + "A" * 43
    again = await client.connect(resume=True)
    assert again["session_id"] != sid and "resumed" not in again


async def test_normal_close_ends_the_session_and_wrong_tokens_are_refused(
    host: FakeHost,
) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    token = client.token
    assert token is not None
    # A forged secret for a live (detached) session is refused: a new session starts.
    client.drop()
    await comp.next_event("ws.session.detached")
    forger = ResumingClient(client.url)
    forger.token = sid + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    forged = await forger.connect(resume=True)
    assert forged["session_id"] != sid and forged["resumed"] is False
    # A malformed token or last_seq: a new session, said so.
    async with connect(client.url + "?resume=garbage&last_seq=x", open_timeout=10) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["resumed"] is False and welcome["session_id"] != sid
    # The real token still works; then a close with 1000 ends the session for good.
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True
    assert client.ws is not None
    await client.ws.close(1000)
    gone = await event_for(comp, "ws.session.disconnected", sid)
    assert gone["code"] == 1000
    after = await client.connect(resume=True)
    assert after["resumed"] is False and after["session_id"] != sid


async def test_resume_before_the_server_noticed_the_drop(host: FakeHost) -> None:
    """A half-open connection (the server has not seen the drop): the resuming connection
    takes the session over; the old one is closed with 4000."""
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port, PING_INTERVAL_SEC="0")
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    old = client.ws
    assert old is not None
    await publish_all(comp, sid, ["a"])
    assert await client.bodies(1) == ["a"]
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(old.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    await publish_all(comp, sid, ["b"])
    assert await client.bodies(1) == ["b"]
    # The component sees the session detach (the takeover, 4000), then resume: the same
    # events as when the drop was noticed first.
    events = []
    while len(events) < 2:
        _, msg = await asyncio.wait_for(comp.calls.get(), 10)
        if msg.subject in ("ws.session.detached", "ws.session.resumed"):
            events.append((msg.subject, json.loads(msg.body)))
    assert [subject for subject, _ in events] == ["ws.session.detached", "ws.session.resumed"]
    assert events[0][1]["code"] == 4000 and events[0][1]["session_id"] == sid


# --- across processes and instances ----------------------------------------------------------


async def test_provider_killed_and_restarted_clients_resume_on_the_new_process(
    js_host: FakeHost,
) -> None:
    host = js_host
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    first = await start(host, port)
    assert "JetStream is not available" not in first.stderr
    clients = [ResumingClient(f"ws://127.0.0.1:{port}/ws") for _ in range(3)]
    for client in clients:
        await client.connect()
    # Traffic: every publish that returned Ok is a promise. Clients process part of it.
    for round_no in range(5):
        for client in clients:
            assert await comp.publish(client.session_id, f"m{round_no}".encode()) == Ok()
    for i, client in enumerate(clients):
        assert await client.bodies(i + 1) == [f"m{k}" for k in range(i + 1)]
    await first.kill()  # SIGKILL: no goodbye, nothing flushed on the way out
    second = await start(host, port)
    # Before its client is back, the new process takes the session in (from JetStream) and
    # keeps what is published to it.
    assert await comp.publish(clients[2].session_id, b"m5") == Ok()
    for i, client in enumerate(clients):
        sid = client.session_id
        again = await client.connect(resume=True)
        assert again["session_id"] == sid and again["recovered"] is True, again
        total = 6 if i == 2 else 5
        assert await client.bodies(total - (i + 1)) == [f"m{k}" for k in range(i + 1, total)]
        assert await comp.publish(sid, b"live") == Ok()
        assert await client.bodies(1) == ["live"]
    assert "JetStream is not available" not in second.stderr


async def one_session(
    host: FakeHost,
) -> tuple[TestComponent, int, ProviderProcess, ResumingClient, str]:
    """The echo component, one provider instance and a client connected to it:
    (component, port, provider, client, session id)."""
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    provider = await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    await client.connect()
    return comp, port, provider, client, client.session_id


async def test_a_burst_of_publishes_survives_a_kill_in_order(js_host: FakeHost) -> None:
    # Concurrent publishes to one session are stored in batches (a journal message per loop
    # step); each Ok still means "stored": after SIGKILL, a resume on a new process replays
    # every one of them, in order.
    host = js_host
    comp, port, first, client, sid = await one_session(host)
    bodies = [f"b{n}" for n in range(60)]
    results = await asyncio.gather(*(comp.publish(sid, body.encode()) for body in bodies))
    assert all(result == Ok() for result in results)
    received = await client.bodies(60)
    assert sorted(received, key=lambda b: int(b[1:])) == bodies  # all, each once
    await first.kill()
    await start(host, port)
    client.last_seq = 0  # as if nothing had been processed: the whole history comes back
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True, again
    assert await client.bodies(60) == received  # the stored order is the order sent


async def test_a_session_taken_from_the_store_survives_a_second_kill(js_host: FakeHost) -> None:
    # The process that takes a session in writes the history it took to its own journal:
    # when that process dies too, the next one still has what its client has not read.
    host = js_host
    comp, port, first, client, sid = await one_session(host)
    await publish_all(comp, sid, ["a", "b", "c"])
    assert await client.bodies(1) == ["a"]  # b and c are not read (last_seq stays 1)
    await first.kill()
    second = await start(host, port)
    again = await client.connect(resume=True)  # b and c replayed, and not read either
    assert again["session_id"] == sid and again["recovered"] is True, again
    # Ok means stored; the record naming the new token went out before it.
    await publish_all(comp, sid, ["d"])
    await second.kill()
    await start(host, port)
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True, again
    assert await client.bodies(3) == ["b", "c", "d"]


async def test_a_history_too_big_to_move_is_read_from_the_holders_journal() -> None:
    # The holder's answer to a move carries the history only when it fits one NATS message:
    # otherwise the new instance reads it from the journal the session's record names.
    with NatsServer(jetstream=True, max_payload=8192) as server:
        async with connected_host(server.url) as host:
            comp, port_b, client, sid = await two_instances(host)
            bodies = [f"{n:02d}" + "x" * 598 for n in range(20)]  # 12 KB in all
            await publish_all(comp, sid, bodies)
            client.drop()  # nothing read: all 20 are to be replayed
            await comp.next_event("ws.session.detached")
            again = await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
            assert again["session_id"] == sid and again["recovered"] is True, again
            assert await client.bodies(20) == bodies


async def test_graceful_restart_then_resume(js_host: FakeHost) -> None:
    host = js_host
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    await client.send({"type": "subscribe", "subject": "alerts"})
    await publish_all(comp, sid, ["x"])  # also proves the subscription was applied
    assert await client.bodies(1) == ["x"]
    assert await host.shutdown(timeout=0.3) == b"shutting down"
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    await start(host, port)
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True
    assert await comp.publish("alerts", b"topic after restart") == Ok()
    assert await client.bodies(1) == ["topic after restart"]


async def test_resume_on_another_instance(host: FakeHost) -> None:
    """Two instances (no JetStream: the holder hands the session and its history over)."""
    comp, port_b, client, sid = await two_instances(host)
    await client.send({"type": "subscribe", "subject": "room.1"})
    await publish_all(comp, sid, ["1", "2"])
    assert await client.bodies(1) == ["1"]
    client.drop()
    await comp.next_event("ws.session.detached")
    await publish_all(comp, sid, ["3"])  # kept by instance A, whichever instance took the call
    again = await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
    assert again["session_id"] == sid and again["recovered"] is True
    assert await client.bodies(2) == ["2", "3"]
    # B holds it now: targeted and topic publishes reach it through either instance.
    for i in range(10):
        assert await comp.publish(sid, f"t{i}".encode()) == Ok()
    assert await client.bodies(10) == [f"t{i}" for i in range(10)]
    assert await comp.publish("room.1", b"topic") == Ok()
    assert await client.bodies(1) == ["topic"]


async def test_nats_server_restart_mid_traffic_loses_nothing(tmp_path: object) -> None:
    """nats-server (with its JetStream store) restarts while traffic flows: sessions stay open,
    and afterwards a client that drops resumes on another process with nothing lost."""
    server = NatsServer(jetstream=True).start()
    host = FakeHost(server.url)
    try:
        await host.connect()
        comp = await TestComponent(host, "echo").serve()
        port = free_port()
        proc = await start(host, port)
        client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
        sid = (await client.connect())["session_id"]
        await publish_all(comp, sid, ["1", "2"])
        assert await client.bodies(1) == ["1"]
        server.stop(keep_files=True)
        await proc.wait_for_line("disconnected from lattice NATS")
        server.start()
        await proc.wait_for_line("reconnected to lattice NATS", timeout=30)
        assert host.nc is not None
        await round_trip(host.nc)  # the test host (and the component) reconnected too
        await publish_all(comp, sid, ["3"])  # the same connection, after the restart
        assert await client.bodies(2) == ["2", "3"]
        await publish_all(comp, sid, ["4", "5"])
        assert await client.bodies(1) == ["4"]
        await proc.kill()  # and then the provider dies too: the history is in JetStream
        await start(host, port)
        again = await client.connect(resume=True)
        assert again["session_id"] == sid and again["recovered"] is True
        assert await client.bodies(1) == ["5"]
    finally:
        try:
            await host.close()
        finally:
            server.stop()


# --- moving between live instances (from an independent review) -----------------------------


async def test_publish_while_the_session_moves_reaches_the_resumed_client(
    js_host: FakeHost,
) -> None:
    host = js_host
    comp = await TestComponent(host, "echo").serve()
    port_a, port_b = free_port(), free_port()
    proc_a = await start(host, port_a)
    await start(host, port_b)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    await comp.next_event("ws.session.connected")
    comp.gate = asyncio.Event()  # the component is busy with the client's message
    await client.send({"type": "message", "subject": "work", "body": "x"})
    await comp.next()
    resuming = asyncio.create_task(client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws"))
    await proc_a.wait_for_line(f"session {sid} moving to another instance")
    assert await comp.publish(sid, b"during the move") == Ok()  # whichever instance serves it
    again = await asyncio.wait_for(resuming, 10)
    assert again["session_id"] == sid and again["resumed"] is True
    assert await client.bodies(1) == ["during the move"]
    comp.gate.set()
    for i in range(6):  # both instances serve these calls: all reach the new holder
        assert await comp.publish(sid, f"after{i}".encode()) == Ok()
    assert await client.bodies(6) == [f"after{i}" for i in range(6)]


async def test_resume_on_another_instance_while_the_component_is_busy(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port_a, port_b, port_c = free_port(), free_port(), free_port()
    await start(host, port_a)
    await start(host, port_b)
    await start(host, port_c)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    await comp.next_event("ws.session.connected")
    comp.gate = asyncio.Event()  # still handling the client's message during the resume
    await client.send({"type": "message", "subject": "work", "body": "slow"})
    await comp.next()
    client.drop()
    old_token = client.token
    again = await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
    assert again["session_id"] == sid and again["resumed"] is True, again
    comp.gate.set()
    # A token works once: the old one, presented to a third instance, is refused.
    thief = ResumingClient(f"ws://127.0.0.1:{port_c}/ws")
    thief.token = old_token
    assert (await thief.connect(resume=True))["resumed"] is False
    assert await comp.publish(sid, b"still mine") == Ok()
    assert await client.bodies(1) == ["still mine"]


async def test_resume_is_not_refused_when_the_endpoint_is_full(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port, MAX_SESSIONS="1")
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    client.drop()
    await comp.next_event("ws.session.detached")
    await publish_all(comp, sid, ["kept"])
    again = await client.connect(resume=True)  # the detached session fills the endpoint
    assert again["session_id"] == sid and again["recovered"] is True
    assert await client.bodies(1) == ["kept"]


async def test_a_token_presented_at_another_components_endpoint_changes_nothing(
    host: FakeHost,
) -> None:
    comp = await TestComponent(host, "echo").serve()
    await TestComponent(host, "other").serve()
    ports = [free_port(), free_port()]
    for port in ports:
        proc = await host.start_provider(
            WS_PROVIDER,
            link_definitions=[
                *links(host, "echo"),
                *links(host, "other", URI=f"127.0.0.1:{port}/other"),
            ],
            instance_id=str(uuid.uuid4()),
            config={"URI": f"127.0.0.1:{port}/ws"},
        )
        await proc.wait_for_line(" ready: ")
    client = ResumingClient(f"ws://127.0.0.1:{ports[0]}/ws")
    sid = (await client.connect())["session_id"]
    intruder = ResumingClient(f"ws://127.0.0.1:{ports[1]}/other")
    intruder.token = client.token
    assert (await intruder.connect(resume=True))["session_id"] != sid  # refused...
    await publish_all(comp, sid, ["still here"])  # ...and the session was not touched
    assert await client.bodies(1) == ["still here"]


async def test_request_made_before_a_move_is_answered_after_it(host: FakeHost) -> None:
    comp, port_b, client, sid = await two_instances(host)
    ask = asyncio.create_task(comp.request(f"{sid}.ask", b"still there?", 10_000))
    request = await client.recv()
    assert request["subject"] == "ask"
    client.drop()  # before answering; then it resumes on the other instance
    again = await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
    assert again["session_id"] == sid and again["recovered"] is True
    await client.send({"subject": request["reply_to"], "body": "yes"})
    answer = await asyncio.wait_for(ask, 10)
    assert isinstance(answer, Ok) and answer.value is not None and answer.value.body == b"yes"


async def test_a_session_being_closed_for_a_reason_is_not_resumed(host: FakeHost) -> None:
    await TestComponent(host, "echo").serve()
    port = free_port()
    proc = await start(
        host,
        port,
        RATE_LIMIT_MSGS="1",
        RATE_LIMIT_BURST="1",
        RATE_LIMIT_POLICY="close",
        RATE_LIMIT_CLOSE_AFTER="1",
        PING_INTERVAL_SEC="0",
    )
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    assert client.ws is not None
    client.ws.transport.pause_reading()  # it does not answer the close frame: CLOSING
    for i in range(3):
        await client.send({"subject": "spam", "body": str(i)})
    await proc.wait_for_line(f"session {sid} closed: rate limit exceeded")
    again = await client.connect(resume=True)
    assert again["resumed"] is False and again["session_id"] != sid


async def test_a_non_ascii_last_seq_is_a_bad_resume_not_a_crash(host: FakeHost) -> None:
    await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    await client.connect()
    url = f"ws://127.0.0.1:{port}/ws?resume={quote(str(client.token))}&last_seq=%C2%B2"
    async with connect(url, open_timeout=10) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome" and welcome["resumed"] is False


async def test_a_forged_resume_token_cannot_forge_log_lines(host: FakeHost) -> None:
    """The session-id part of `?resume=` is URL-decoded: CR/LF in it must not start a log
    line (nor reach a NATS subject)."""
    await TestComponent(host, "echo").serve()
    port = free_port()
    proc = await start(host, port)
    forged = "ws_%0D%0AFORGED-LOG-LINE-xx"  # the shape of a session id: 22 characters
    async with connect(
        f"ws://127.0.0.1:{port}/ws?resume={forged}.{'A' * 43}", open_timeout=10
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["resumed"] is False
    line = await proc.wait_for_line("resume refused")
    assert "the resume token is malformed" in line
    assert not [ln for ln in proc.stderr_lines if ln.startswith("FORGED")], proc.stderr


async def test_detached_sessions_end_when_their_endpoint_is_replaced(host: FakeHost) -> None:
    """A link update replaces the endpoint: its detached sessions end at once (component
    told), and a resume of one starts a new session rather than reviving it twice over."""
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    client.drop()
    await event_for(comp, "ws.session.detached", sid)
    await host.put_link(links(host, "echo", MAX_SUBSCRIPTIONS="7")[1])  # the handler link
    gone = await event_for(comp, "ws.session.disconnected", sid)
    assert gone["code"] == 1001
    again = await client.connect(resume=True)
    assert again["resumed"] is False and again["session_id"] != sid


async def test_a_link_update_never_leaves_the_path_unserved(host: FakeHost) -> None:
    """While the replaced endpoint is still telling the component its sessions ended (a slow
    component holds the event), the new endpoint already serves the path."""
    comp = await TestComponent(host, "echo").serve()
    port = free_port()
    await start(host, port)
    client = ResumingClient(f"ws://127.0.0.1:{port}/ws")
    sid = (await client.connect())["session_id"]
    client.drop()
    await event_for(comp, "ws.session.detached", sid)
    comp.event_gate = asyncio.Event()
    try:
        await host.put_link(links(host, "echo", MAX_SUBSCRIPTIONS="7")[1])
        await event_for(comp, "ws.session.disconnected", sid)  # held: the old one still ends
        again = await client.connect()
        assert again["session_id"] != sid
    finally:
        comp.event_gate.set()
