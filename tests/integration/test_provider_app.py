"""`python -m provider` started as the host starts it: health, links, consumer results."""

from __future__ import annotations

from tests.components import ConsumerCaller as Caller
from tests.harness import WS_PROVIDER, FakeHost
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


async def test_provider_answers_health_and_consumer_calls(host: FakeHost) -> None:
    server = {"MODE": "server", "URI": "127.0.0.1:0"}
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=[host.consumer_link("comp1", target_config=server)]
    )
    health = await host.wait_healthy()
    assert health["healthy"] is True
    caller = Caller(host)
    ghost = "ws_" + "x" * 22
    assert await caller.publish(BrokerMessage(ghost, b"x")) == Err(f"no such session: {ghost}")
    # Not a session id: a topic nobody subscribed to is not an error.
    assert await caller.publish(BrokerMessage("nobody", b"x")) == Ok()
    assert await caller.publish(BrokerMessage("x", b""), source="stranger") == Err(
        "component not linked: stranger (link 'default')"
    )
    assert await caller.request("nobody", b"x", source="stranger") == Err(
        "component not linked: stranger (link 'default')"
    )
    # A link added later is honoured at once.
    await host.put_link(
        host.consumer_link("late", target_config={"MODE": "server", "URI": "127.0.0.1:0/late"})
    )
    await proc.wait_for_line("link late -> prov1")
    assert await caller.publish(BrokerMessage(ghost, b""), source="late") == Err(
        f"no such session: {ghost}"
    )
    assert await host.shutdown() == b"shutting down"
    assert await proc.wait_exit(1.0) == 0


async def test_provider_survives_nats_restart() -> None:
    from provider.natsserver import NatsServer

    server = NatsServer().start()
    host = FakeHost(server.url)
    try:
        await host.connect()
        proc = await host.start_provider(WS_PROVIDER)
        await host.wait_healthy()
        server.stop()
        await proc.wait_for_line("disconnected from lattice NATS")
        server = NatsServer(port=server.port).start()
        await proc.wait_for_line("reconnected to lattice NATS", timeout=30)
        # The test host's own client reconnects too; health is answered again.
        assert host.nc is not None
        await host.nc.flush(timeout=10)
        assert (await host.health(timeout=10))["healthy"] is True
    finally:
        await host.close()
        server.stop()
