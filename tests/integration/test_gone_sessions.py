"""Publishes to sessions that are gone answer at once, also while sessions churn.

Under a real host a component's instance takes one call at a time; a publish that waits
seconds for a session that has closed holds up every other session of that component.
"""

from __future__ import annotations

import asyncio
import time

from nats.aio.msg import Msg

from provider.natsserver import free_port
from tests.components import ConsumerCaller, TestComponent, encode_unit_result
from tests.harness import WS_PROVIDER, FakeHost
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, InvocationContext, Ok

#: The failure these tests catch took 7 s (a cluster request to a holder that never
#: answered); a gone session must be answered long before this.
AT_ONCE = 1.0


async def deploy(host: FakeHost, component: str, **extra: str) -> int:
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws", **extra}
    await host.start_provider(
        WS_PROVIDER,
        link_definitions=[
            host.consumer_link(component),
            host.handler_link(component, source_config=config),
        ],
    )
    await host.wait_healthy()
    return port


async def test_publish_to_a_session_that_closed_here_never_asks_elsewhere(
    host: FakeHost,
) -> None:
    """Even when something on the lattice still answers to the session's subject and never
    replies (a stale subscription), a session that closed here is refused at once."""
    comp = await TestComponent(host, "echo").serve()
    port = await deploy(host, "echo")
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    sid = client.session_id
    await client.close()
    await comp.next_event("ws.session.disconnected")
    assert host.nc is not None
    silent: list[Msg] = []

    async def never_answer(msg: Msg) -> None:
        silent.append(msg)

    await host.nc.subscribe(f"wsp.default.prov1.s.{sid}", queue="holder", cb=never_answer)
    await host.nc.flush()
    started = time.monotonic()
    assert await comp.publish(sid, b"late") == Err(f"no such session: {sid}")
    assert await comp.request(f"{sid}.r", b"?", timeout_ms=5000) == Err(f"no such session: {sid}")
    assert time.monotonic() - started < AT_ONCE
    assert silent == []


class OnePermitEcho(TestComponent):
    """Like a wasm component with one instance: one call at a time, and every call (session
    events included) publishes back to its reply-to, as the real-host echo component does."""

    def __init__(self, host: FakeHost, component_id: str) -> None:
        super().__init__(host, component_id)
        self.permit = asyncio.Lock()
        self.event_publishes: list[tuple[str, float, Ok | Err]] = []

    async def _handle(self, ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        async with self.permit:
            assert msg.reply_to is not None
            started = time.monotonic()
            caller = ConsumerCaller(self.host, self.id)
            result = await caller.publish(BrokerMessage(msg.reply_to, msg.body, None))
            if msg.subject.startswith("ws.session."):
                self.event_publishes.append((msg.subject, time.monotonic() - started, result))
            await self.calls.put((ctx, msg))
        return encode_unit_result(Ok())


async def test_churn_does_not_hold_up_live_sessions(host: FakeHost) -> None:
    comp = await OnePermitEcho(host, "echo").serve()
    port = await deploy(host, "echo")
    url = f"ws://127.0.0.1:{port}/ws"
    live = [await Client.open(url) for _ in range(20)]

    async def come_and_go(n: int) -> None:
        client = await Client.open(url)
        await client.message("chat", f"short-lived {n}")
        await client.close()

    async def keep_going(client: Client, rounds: int) -> None:
        for n in range(rounds):
            await client.message("chat", f"{client.session_id} {n}")
            while True:
                frame = await client.recv(timeout=10)
                if frame.get("subject") == "chat" or frame.get("body", "").startswith(
                    client.session_id
                ):
                    break

    await asyncio.gather(*(come_and_go(n) for n in range(20)), *(keep_going(c, 3) for c in live))
    # Every short-lived session's events were answered: the disconnect echoes at once with
    # "no such session", never a timeout.
    expected_events = 20 + 20 + 20  # connected (40 sessions) + disconnected (20)
    while len(comp.event_publishes) < expected_events:
        await asyncio.wait_for(comp.calls.get(), 20)
    gone = [r for s, _, r in comp.event_publishes if s == "ws.session.disconnected"]
    assert len(gone) == 20
    assert all(isinstance(r, Err) and r.message.startswith("no such session: ") for r in gone)
    slowest = max(d for _, d, _ in comp.event_publishes)
    assert slowest < AT_ONCE, comp.event_publishes
    for client in live:
        await client.close()


class SlowOnePermit(TestComponent):
    """One call at a time, 20 ms each: a burst of session events must be paced to it."""

    def __init__(self, host: FakeHost, component_id: str) -> None:
        super().__init__(host, component_id)
        self.permit = asyncio.Lock()
        self.events = 0

    async def _handle(self, ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        async with self.permit:
            await asyncio.sleep(0.02)  # the component's own work (not a synchronisation)
            if msg.subject == "ws.session.detached":
                self.events += 1
            await self.calls.put((ctx, msg))
        return encode_unit_result(Ok())


async def test_a_mass_disconnect_is_paced_to_the_component(host: FakeHost) -> None:
    """200 sessions drop at once; the component takes 20 ms per call, one at a time, and
    HANDLER_TIMEOUT_SEC is 1 s: unpaced, most detach events would time out (200 calls in
    flight at once, the last answered after 4 s); paced, every one is delivered."""
    comp = await SlowOnePermit(host, "echo").serve()
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws", "HANDLER_TIMEOUT_SEC": "1"}
    proc = await host.start_provider(
        WS_PROVIDER,
        link_definitions=[
            host.consumer_link("echo"),
            host.handler_link("echo", source_config=config),
        ],
    )
    await host.wait_healthy()
    clients = [await Client.open(f"ws://127.0.0.1:{port}/ws") for _ in range(200)]
    for client in clients:
        client.ws.transport.abort()
    while comp.events < 200:
        await asyncio.wait_for(comp.calls.get(), 10)
    assert not [ln for ln in proc.stderr_lines if "delivery to echo failed" in ln]
