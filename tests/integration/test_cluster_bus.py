"""The cluster bus's NATS callbacks only hand off (a real nats-server, the real incoming half)."""

from __future__ import annotations

import asyncio

import msgpack
import nats

from provider.cluster import LocalCalls, bus_base
from provider.cluster_inbox import ClusterInbox
from provider.natsserver import NatsServer
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


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
    await nc.flush()
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
