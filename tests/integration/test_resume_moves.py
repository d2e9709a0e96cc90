"""A session moving between live instances (resume on another instance), at the edges: the
old holder stalls or dies mid-move, messages arrive during the move, the move is refused.

Some tests play one side of the cluster protocol themselves (the wire format of
src/provider/moves.py) to hit an exact interleaving; from an independent review.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from typing import Any

import msgpack
import pytest
from nats.errors import TimeoutError as NatsTimeout
from websockets.exceptions import ConnectionClosed

from provider.cluster import PUBLISH_TIMEOUT
from provider.ids import new_session_id
from provider.moves import MOVE_TIMEOUT
from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import FakeHost
from tests.integration.test_resume import ResumingClient, start
from wasmcloud_provider_sdk import Ok

BASE = "wsp.default.prov1"


def pack(obj: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception:
        return None


async def sniff_handover(host: FakeHost, sid: str, on_request: Any, on_reply: Any) -> Any:
    """Calls `on_request()` when an instance asks for `sid` (op handover), then
    `on_reply(answer)` when the holder's answer (with its claim subject) is seen. One
    subscription for both: nats-py runs each subscription's callbacks in its own task, so
    with two the answer's callback could run before the request's (seen under load)."""
    assert host.nc is not None
    subject = f"{BASE}.s.{sid}"

    async def cb(msg: Any) -> None:
        obj = unpack(msg.data)
        if not isinstance(obj, dict):
            return
        if msg.subject == subject and obj.get("op") == "handover":
            on_request()
        elif msg.subject.startswith("_INBOX.") and "claim_to" in obj:
            on_reply(obj)

    sub = await host.nc.subscribe(">", cb=cb)
    await host.nc.flush()
    return sub


@pytest.mark.parametrize("fault", ["stop", "kill"])
async def test_old_holder_stalls_or_dies_mid_move_and_the_session_survives(
    js_host: FakeHost, fault: str
) -> None:
    """B is frozen as soon as its handover request is on the wire and thawed once A's answer
    was seen and A was stopped / killed: 'A gone before the claim', deterministically. The
    client learns nothing before the claim worked: it is told to resume again (1013), with
    the token it has, and that works (A kept the session, or the store has it)."""
    host = js_host
    assert host.nc is not None
    comp = await TestComponent(host, "echo").serve()
    port_a, port_b = free_port(), free_port()
    proc_a = await start(host, port_a)
    proc_b = await start(host, port_b)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    assert await comp.publish(sid, b"1") == Ok()
    assert await client.bodies(1) == ["1"]
    client.drop()
    await comp.next_event("ws.session.detached")
    pid_a, pid_b = proc_a.proc.pid, proc_b.proc.pid

    def on_request() -> None:
        os.kill(pid_b, signal.SIGSTOP)

    def on_reply(_obj: Any) -> None:
        os.kill(pid_a, signal.SIGSTOP if fault == "stop" else signal.SIGKILL)
        os.kill(pid_b, signal.SIGCONT)

    sniffer = await sniff_handover(host, sid, on_request, on_reply)
    try:
        with pytest.raises(ConnectionClosed) as closed:
            await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        await proc_b.wait_for_line(f"session {sid}: the move from another instance failed")
    finally:
        await sniffer.unsubscribe()
        os.kill(pid_b, signal.SIGCONT)
        if fault == "stop":
            os.kill(pid_a, signal.SIGCONT)
    if fault == "stop":  # A wakes after its window (the claim too late, or none): keeps it
        await proc_a.wait_for_line(f"session {sid}: the move to another instance failed")
    again = await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
    assert again["session_id"] == sid and again["resumed"] is True, again
    assert again["recovered"] is True
    assert await comp.publish(sid, b"2") == Ok()
    assert await client.bodies(1) == ["2"]


async def test_topic_messages_keep_their_order_across_a_move(host: FakeHost) -> None:
    """Old holder played by the test; B is a real process."""
    assert host.nc is not None
    nc = host.nc
    comp = await TestComponent(host, "echo").serve()
    port_b = free_port()
    await start(host, port_b)
    sid, secret = new_session_id(), "S" * 43
    holder = await nc.subscribe(f"{BASE}.s.{sid}", queue="holder")
    fanout = await nc.subscribe(f"{BASE}.fanout")
    await nc.flush()
    client = ResumingClient(f"ws://127.0.0.1:{port_b}/ws")
    client.token, client.last_seq = f"{sid}.{secret}", 0
    resuming = asyncio.create_task(client.connect(resume=True))
    handover = await holder.next_msg(timeout=10)
    assert unpack(handover.data)["op"] == "handover"
    assert await comp.publish("room.1", b"t1") == Ok()  # B has no session yet: only A has it
    t1 = unpack((await fanout.next_msg(timeout=10)).data)
    claim_to = nc.new_inbox()
    claims = await nc.subscribe(claim_to, max_msgs=1)
    state = {
        "sid": sid,
        "component": "echo",
        "link": "default",
        "subs": ["room.1"],
        "seq": 0,
        "hash": hashlib.sha256(secret.encode()).digest(),
        "identity": None,
        "connected_at": time.time(),
        "detached": True,
    }
    await nc.publish(
        handover.reply,
        pack(
            {
                "state": state,
                "history": [],
                "dropped_upto": 0,
                "last_seq": 0,
                "complete": True,
                "claim_to": claim_to,
            }
        ),
    )
    claim = await claims.next_msg(timeout=10)  # B made the session reachable and claims it
    assert await comp.publish("room.1", b"t2") == Ok()  # reaches B (kept) and A
    t2 = unpack((await fanout.next_msg(timeout=10)).data)
    buffered = [[t["subject"], t["body"], t["reply_to"], t["mid"]] for t in (t1, t2)]
    await nc.publish(claim.reply, pack({"buffered": buffered}))
    drained_to = unpack(claim.data)["drained_to"]
    await nc.publish(drained_to, b"")
    welcome = await resuming
    assert welcome["session_id"] == sid and welcome["recovered"] is True
    assert await client.bodies(2) == ["t1", "t2"]  # in order, once each


async def test_a_publish_to_a_moving_session_is_delivered_iff_it_got_ok(host: FakeHost) -> None:
    """B asks for the session and never claims it: a publish that reached A meanwhile waits
    for the move to end, then is delivered by A, which kept the session: Ok, and delivered."""
    assert host.nc is not None
    nc = host.nc
    comp = await TestComponent(host, "echo").serve()
    port_a = free_port()
    proc_a = await start(host, port_a)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    client.drop()
    await comp.next_event("ws.session.detached")
    assert client.token is not None
    handover = {
        "op": "handover",
        "sid": sid,
        "secret": client.token.partition(".")[2],
        "last_seq": 0,
        "component": "echo",
        "link": "default",
        "identity": None,
    }
    answer = unpack((await nc.request(f"{BASE}.s.{sid}", pack(handover), timeout=2)).data)
    assert "claim_to" in answer  # ... and B never claims
    forwarded = {"op": "publish", "from": "echo", "subject": sid, "body": b"p1", "reply_to": None}
    try:  # what ClusterLink.publish_remote sends, with its deadline
        reply = await nc.request(
            f"{BASE}.s.{sid}", pack(forwarded), timeout=PUBLISH_TIMEOUT + MOVE_TIMEOUT
        )
        ok = "err" not in unpack(reply.data)
    except NatsTimeout:
        ok = False
    await proc_a.wait_for_line(f"session {sid}: the move to another instance failed")
    assert ok
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True
    assert await client.bodies(1) == ["p1"]


async def test_a_move_with_more_than_fits_is_refused_and_nothing_is_lost(
    small_host: FakeHost,
) -> None:
    host = small_host  # max_payload = 1024
    assert host.nc is not None
    nc = host.nc
    comp = await TestComponent(host, "echo").serve()
    port_a = free_port()
    await start(host, port_a)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    await client.send({"type": "subscribe", "subject": "room.1"})
    assert await comp.publish(sid, b"sync") == Ok()
    assert await client.bodies(1) == ["sync"]
    client.drop()
    await comp.next_event("ws.session.detached")
    assert client.token is not None
    handover = {
        "op": "handover",
        "sid": sid,
        "secret": client.token.partition(".")[2],
        "last_seq": 1,
        "component": "echo",
        "link": "default",
        "identity": None,
    }
    answer = unpack((await nc.request(f"{BASE}.s.{sid}", pack(handover), timeout=2)).data)
    for i in range(2):
        assert await comp.publish("room.1", bytes([65 + i]) * 600) == Ok()
    claimed = unpack((await nc.request(answer["claim_to"], b"", timeout=10)).data)
    assert claimed == {"refused": True}  # A keeps the session rather than drop messages
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["recovered"] is True
    assert await client.bodies(2) == ["A" * 600, "B" * 600]


async def test_component_sees_detached_before_resumed_across_a_move(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    port_a, port_b = free_port(), free_port()
    await start(host, port_a)
    await start(host, port_b)
    client = ResumingClient(f"ws://127.0.0.1:{port_a}/ws")
    sid = (await client.connect())["session_id"]
    await comp.next_event("ws.session.connected")
    comp.gate = asyncio.Event()
    await client.send({"subject": "work", "body": "m1"})
    assert (await comp.next()).body == b"m1"
    client.drop()  # A queues ws.session.detached behind m1
    again = await client.connect(resume=True, url=f"ws://127.0.0.1:{port_b}/ws")
    assert again["session_id"] == sid and again["resumed"] is True
    await client.send({"subject": "work", "body": "m2"})
    comp.gate.set()
    order: list[str] = []
    while len(order) < 3:
        _, msg = await asyncio.wait_for(comp.calls.get(), 10)
        if msg.subject in ("ws.session.detached", "ws.session.resumed") or msg.body == b"m2":
            order.append(msg.subject if msg.subject.startswith("ws.") else "m2")
    assert order == ["ws.session.detached", "ws.session.resumed", "m2"], order
