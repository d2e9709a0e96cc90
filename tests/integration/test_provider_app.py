"""`python -m provider` started as the host starts it: health, links, consumer results."""

from __future__ import annotations

from tests.components import ConsumerCaller as Caller
from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess
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


def lines_with(proc: ProviderProcess, needle: str) -> list[str]:
    return [line for line in proc.stderr_lines if needle in line]


async def test_misspelled_keys_are_warned_once_per_link_without_values(host: FakeHost) -> None:
    server = {"MODE": "server", "URI": "127.0.0.1:0", "MAX_SESIONS": "s3cr3t-value-1"}
    proc = await host.start_provider(
        WS_PROVIDER,
        config={"PING_INTERVAL": "s3cr3t-value-2", "HEADER_X_TRACE": "1"},
        link_definitions=[host.consumer_link("comp1", target_config=server)],
    )
    await host.wait_healthy()
    # The pair's other link makes the provider apply the pair's config again: no new warning.
    await host.put_link(host.handler_link("comp1", source_config={"WELCOME": "true"}))
    await proc.wait_for_line("prov1 -> comp1 (wasmcloud:messaging, default) applied as source")
    [link_warning] = lines_with(proc, "MAX_SESIONS")
    assert "link comp1 -> prov1 (default), target config" in link_warning
    assert "did you mean MAX_SESSIONS?" in link_warning and "WARNING" in link_warning
    [provider_warning] = lines_with(proc, "'PING_INTERVAL'")
    assert "provider config" in provider_warning
    assert "did you mean PING_INTERVAL_SEC?" in provider_warning
    assert not lines_with(proc, "HEADER_X_TRACE")  # open-ended: HEADER_<name>
    # A config update warns about keys not reported before, and only those.
    await host.config_update({"PING_INTERVAL": "s3cr3t-value-2", "IDLE_TIMEOUT": "3"})
    await proc.wait_for_line("'IDLE_TIMEOUT' (did you mean IDLE_TIMEOUT_SEC?)")
    assert len(lines_with(proc, "'PING_INTERVAL'")) == 1
    assert "s3cr3t-value" not in proc.stderr


async def test_a_link_that_fails_is_reported_once_and_never_as_applied(host: FakeHost) -> None:
    proc = await host.start_provider(WS_PROVIDER)
    await host.wait_healthy()
    # A listen address without MODE=server: client mode, which needs a ws:// URL.
    await host.put_link(host.consumer_link("comp2", target_config={"URI": "127.0.0.1:0/x"}))
    line = await proc.wait_for_line("comp2 -> prov1")
    assert "kept, not in effect" in line and "add MODE=server" in line, line
    # Links are applied in order: once a later link is applied, comp2's outcome is final.
    server = {"MODE": "server", "URI": "127.0.0.1:0/y"}
    await host.put_link(host.consumer_link("comp3", target_config=server))
    await proc.wait_for_line("comp3 -> prov1 (wasmcloud:messaging, default) applied as target")
    assert len(lines_with(proc, "comp2 -> prov1")) == 1
    assert not [x for x in lines_with(proc, "comp2") if "applied" in x]
    health = await host.health()
    assert "misconfigured comp2/default" in health["message"]
