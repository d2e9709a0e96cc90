"""The cluster bus's NATS callbacks only hand off (a real nats-server, the real incoming half)."""

from __future__ import annotations

import asyncio

import msgpack
import nats
import nats.errors
import pytest

from provider.cluster import ClusterLink, LocalCalls, bus_base
from provider.cluster_inbox import ClusterInbox
from provider.natsserver import NatsServer
from tests.integration.test_natswire import py_flush
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok
from wasmcloud_provider_sdk.natswire import NatsWire


async def test_a_slow_local_delivery_does_not_hold_back_the_fan_out(
    nats_server: NatsServer,
) -> None:
    """A fan-out message whose local delivery waits (e.g. for the JetStream store) does not
    stall the subscription: the next one is delivered meanwhile, in order."""
    nc = await nats.connect(nats_server.url)
    peer = await nats.connect(nats_server.url)
    got: list[bytes] = []
    second = asyncio.Event()
    release = asyncio.Event()

    async def publish_local(_component: str, msg: BrokerMessage, _mid: str | None) -> Ok | Err:
        got.append(msg.body)
        if msg.body == b"1":
            await release.wait()  # the first delivery is slow
        else:
            second.set()
        return Ok()

    async def request_local(_c: str, _s: str, _b: bytes, _t: int) -> Ok | Err:
        return Err("unused")

    cluster = ClusterInbox(nc, bus_base("default", "prov1"), "me")
    await cluster.start(LocalCalls(publish_local, request_local, list))
    await py_flush(nc)  # the subscriptions are on the server before the peer publishes
    try:
        for body in (b"1", b"2"):
            payload = {
                "origin": "another",
                "from": "echo",
                "subject": "room.1",
                "body": body,
                "reply_to": None,
                "mid": body.decode(),
            }
            await peer.publish("wsp.default.prov1.fanout", msgpack.packb(payload))
        await peer.flush()
        await asyncio.wait_for(second.wait(), 5)
        assert got == [b"1", b"2"]
    finally:
        release.set()
        await cluster.stop()
        await peer.close()
        await nc.close()


async def test_a_sessions_subject_on_the_wire_costs_no_task(nats_server: NatsServer) -> None:
    """Under a host the sessions' subjects are subscribed on the wRPC connection (`Wire`):
    a session held here adds no task (nats-py gives every subscription a queue and a task,
    ~4 KB for each session), and a targeted request for it is still answered here."""
    nc = await nats.connect(nats_server.url)
    peer = await nats.connect(nats_server.url)
    wire = await NatsWire.connect(nats_server.url)
    delivered: list[bytes] = []

    async def publish_local(_component: str, msg: BrokerMessage, _mid: str | None) -> Ok | Err:
        delivered.append(msg.body)
        return Ok()

    async def request_local(_c: str, _s: str, _b: bytes, _t: int) -> Ok | Err:
        return Err("unused")

    base = bus_base("default", "prov1")
    inbox = ClusterInbox(nc, base, "me")
    link = ClusterLink(
        nc, base, "me", inbox.on_session_message, inbox.on_session_nats_message, wire=wire
    )
    await inbox.start(LocalCalls(publish_local, request_local, list))
    try:
        before = len(asyncio.all_tasks())
        for n in range(50):
            await link.session_id_opened(f"ws_{n:022d}")
        assert len(asyncio.all_tasks()) == before
        await wire.flush()
        request = {"from": "echo", "subject": f"ws_{7:022d}", "body": b"hi", "reply_to": None}
        answer = await peer.request(f"{base}.s.ws_{7:022d}", msgpack.packb(request), timeout=5)
        assert msgpack.unpackb(answer.data) == {"ok": True}
        assert delivered == [b"hi"]
        await link.session_id_closed(f"ws_{7:022d}")
        await wire.flush()
        with pytest.raises(nats.errors.NoRespondersError):
            await peer.request(f"{base}.s.ws_{7:022d}", msgpack.packb(request), timeout=5)
    finally:
        await link.stop()
        await inbox.stop()
        await wire.close()
        await peer.close()
        await nc.close()
