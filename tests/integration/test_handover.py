"""Handing a consumer call over to the instance that holds its session: the instance the
host's call lands on re-publishes the raw invocation to the holder, which answers the host
directly (wasmcloud_provider_sdk.wrpc_handover)."""

from __future__ import annotations

import time

from nats.aio.msg import Msg

from tests.components import TestComponent
from tests.harness import FakeHost
from tests.integration.test_scale_out import CALLS, start_instances
from tests.wsclient import Client
from wasmcloud_provider_sdk import Err, Ok
from wasmcloud_provider_sdk.wrpc_handover import EXPORT_HEADER


async def test_a_call_landing_elsewhere_is_handed_over_and_answered_by_the_holder(
    host: FakeHost,
) -> None:
    assert host.nc is not None
    comp = await TestComponent(host, "comp1").serve()
    _, holder = await start_instances(host, 2)
    client = await Client.open(holder.url)
    await comp.next_event("ws.session.connected")
    on_session: list[Msg] = []
    handshakes: list[Msg] = []

    async def seen_on_session(msg: Msg) -> None:
        on_session.append(msg)

    async def seen_in_inboxes(msg: Msg) -> None:
        if msg.reply and not msg.data and not msg.subject.endswith(".results"):
            handshakes.append(msg)

    subs = [
        await host.nc.subscribe(f"wsp.default.prov1.s.{client.session_id}", cb=seen_on_session),
        await host.nc.subscribe("_INBOX.>", cb=seen_in_inboxes),
    ]
    await host.nc.flush()
    for i in range(CALLS):
        assert await comp.publish(client.session_id, str(i).encode()) == Ok()
    assert [(await client.recv())["body"] for _ in range(CALLS)] == [str(i) for i in range(CALLS)]
    await host.nc.flush()
    for sub in subs:
        await sub.unsubscribe()
    # Some calls landed on the other instance: each was handed over as one message...
    assert on_session, "no call landed on the other instance"
    assert all(m.headers and EXPORT_HEADER in m.headers for m in on_session), on_session
    # ...and every call was answered by the holder (its handshakes all name its inbox).
    assert len(handshakes) == CALLS
    assert len({m.reply.rpartition(".")[0] for m in handshakes}) == 1


async def test_no_holder_is_err_no_such_session_at_once(host: FakeHost) -> None:
    comp = await TestComponent(host, "comp1").serve()
    await start_instances(host, 2)
    ghost = "ws_" + "G" * 22
    for _ in range(CALLS):
        started = time.monotonic()
        assert await comp.publish(ghost, b"x") == Err(f"no such session: {ghost}")
        assert time.monotonic() - started < 1.0  # not a timeout: nats-server said so
