"""The control plane against a real nats-server, the provider started as the host starts it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from nats.errors import TimeoutError as NatsTimeout

from tests.harness import WS_PROVIDER, FakeHost, ProviderProcess


async def test_health_after_initial_links(host: FakeHost) -> None:
    links = [
        host.consumer_link("comp1", target_config={"k": "v"}),
        host.handler_link("comp1", source_config={"s": "1"}),
    ]
    async with host.events() as events:
        await host.start_provider(link_definitions=links, config={"top": "level"})
        init = await events.expect("init")
        assert init["config"] == {"top": "level"}
        target = await events.expect("link_as_target")
        assert target["link"]["config"] == {"k": "v"}
        source = await events.expect("link_as_source")
        assert source["link"]["config"] == {"s": "1"}
        assert source["link"]["target_id"] == "comp1"
    assert await host.wait_healthy() == {"healthy": True}


async def started(host: FakeHost, **overrides: object) -> None:
    await host.start_provider(**overrides)
    await host.wait_healthy()


async def test_link_put_on_xkey_subject_only(host: FakeHost) -> None:
    await started(host)
    async with host.events() as events:
        # A >= 1.1 host also publishes a compatibility copy on the provider-id subject; a
        # provider with xkeys must not act on it (it would see duplicates and foreign links).
        await host.put_link(host.consumer_link("compA"), via_provider_id=True)
        await host.put_link(host.consumer_link("compB"))
        event = await events.expect("link_as_target")
        assert event["link"]["source_id"] == "compB"
        await events.none_within(0.3)


async def test_link_put_on_provider_id_subject_without_xkeys(host: FakeHost) -> None:
    await started(host, host_xkey_public_key="", provider_xkey_private_key="")
    async with host.events() as events:
        await host.put_link(host.consumer_link("compA"), via_provider_id=True)
        event = await events.expect("link_as_target")
        assert event["link"]["source_id"] == "compA"


async def test_duplicate_update_and_idempotent_delete(host: FakeHost) -> None:
    await started(host)
    link = host.consumer_link("comp1", target_config={"a": "1"})
    async with host.events() as events:
        await host.put_link(link)
        await events.expect("link_as_target")
        await host.put_link(link)  # exact duplicate: ignored
        changed = host.consumer_link("comp1", target_config={"a": "2"})
        await host.put_link(changed)  # same identity, new content: update
        await events.expect("link_deleted_as_target")
        event = await events.expect("link_as_target")
        assert event["link"]["config"] == {"a": "2"}
        await host.del_link(changed)
        await events.expect("link_deleted_as_target")
        await host.del_link(changed)  # second delete: nothing to do
        await host.del_link(host.consumer_link("never-linked"))
        await host.put_link(host.consumer_link("comp2"))
        assert (await events.next())["link"]["source_id"] == "comp2"
    assert (await host.health())["healthy"] is True


async def test_links_keyed_by_full_identity(host: FakeHost) -> None:
    await started(host)
    async with host.events() as events:
        await host.put_link(host.consumer_link("comp1", name="one"))
        await host.put_link(host.consumer_link("comp1", name="two"))
        names = {(await events.expect("link_as_target"))["link"]["link_name"] for _ in range(2)}
        assert names == {"one", "two"}
        await host.del_link(host.consumer_link("comp1", name="one"))
        deleted = await events.expect("link_deleted_as_target")
        assert deleted["link"]["link_name"] == "one"
        await host.del_link(host.consumer_link("comp1", name="two"))
        assert (await events.expect("link_deleted_as_target"))["link"]["link_name"] == "two"


async def test_link_secrets_are_opened_and_never_logged(host: FakeHost) -> None:
    proc = await host.start_provider(
        link_definitions=[host.consumer_link("comp0", target_secrets={"initial": "s3cr3t-0"})]
    )
    await host.wait_healthy()
    async with host.events() as events:
        await host.put_link(
            host.handler_link("comp1", source_secrets={"AUTH_TOKEN": "s3cr3t-1"}),
        )
        event = await events.expect("link_as_source")
        assert event["link"]["secrets"] == {"AUTH_TOKEN": "s3cr3t-1"}
    assert await host.shutdown() == b"shutting down"
    await proc.wait_exit(5)
    assert "s3cr3t" not in proc.stderr
    assert host.provider_xkey.seed not in proc.stderr


async def test_bad_secrets_fail_only_that_link(host: FakeHost) -> None:
    proc = await host.start_provider()
    await host.wait_healthy()
    good_host_key = host.host_xkey
    from wasmcloud_provider_sdk.nkeys import XKey

    host.host_xkey = XKey.generate()  # seal with a key the provider does not trust
    bad = host.consumer_link("evil", target_secrets={"x": "y"})
    host.host_xkey = good_host_key
    async with host.events() as events:
        await host.put_link(bad)
        await host.put_raw(b"{not json")
        await host.put_raw(json.dumps({"target": "x"}).encode())
        await host.put_link(host.link("someone", "else", ["consumer"]))
        await host.put_link(host.consumer_link("good"))
        event = await events.expect("link_as_target")
        assert event["link"]["source_id"] == "good"
    await proc.wait_for_line("secrets could not be opened")
    await proc.wait_for_line("malformed link definition")
    await proc.wait_for_line("does not involve provider")


async def test_failed_hook_is_not_stored(host: FakeHost) -> None:
    await started(host)
    async with host.events() as events:
        await host.put_link(host.consumer_link("comp1", target_config={"fail": "true"}))
        await host.put_link(host.consumer_link("comp1", target_config={"fail": "false"}))
        event = await events.expect("link_as_target")
        assert event["link"]["config"] == {"fail": "false"}


async def test_config_update_and_unhealthy(host: FakeHost) -> None:
    await started(host)
    async with host.events() as events:
        await host.config_update({"unhealthy": "true", "other": "x"})
        event = await events.expect("config_update")
        assert event["config"] == {"unhealthy": "true", "other": "x"}
        await host.config_update({"unhealthy": "true", "other": "x"})  # same again: no-op
        await host.config_update({"unhealthy": "false"})
        assert (await events.expect("config_update"))["config"] == {"unhealthy": "false"}
        await host.config_update({"unhealthy": "true"})
        await events.expect("config_update")
    assert await host.health() == {"healthy": False, "message": "told to be unhealthy"}


async def test_foreign_shutdown_is_ignored(host: FakeHost) -> None:
    proc = await host.start_provider()
    await host.wait_healthy()
    with pytest.raises(NatsTimeout):
        await host.shutdown(host_id="NOTMYHOST", timeout=0.5)
    assert proc.proc.returncode is None
    assert (await host.health())["healthy"] is True


async def test_own_shutdown_replies_and_exits_within_one_second(host: FakeHost) -> None:
    proc = await host.start_provider(link_definitions=[host.consumer_link("comp1")])
    await host.wait_healthy()
    async with host.events() as events:
        reply = await host.shutdown(timeout=0.3)  # the host's default shutdown delay
        assert reply == b"shutting down"
        await events.expect("shutdown")
    assert await proc.wait_exit(1.0) == 0


async def test_sigterm_exits_cleanly(host: FakeHost) -> None:
    proc = await host.start_provider()
    await host.wait_healthy()
    proc.proc.terminate()
    assert await proc.wait_exit(2.0) == 0


@pytest.mark.parametrize("stdin", [b"", b"\r\n", b"garbage!!\r\n"])
async def test_bad_stdin_exits_with_code_2(host: FakeHost, stdin: bytes) -> None:
    from tests.harness import RECORDING_PROVIDER, start_process

    proc = await start_process(RECORDING_PROVIDER, stdin)
    host.processes.append(proc)
    assert await proc.wait_exit(10) == 2
    assert "cannot start: host data" in proc.stderr


async def test_structured_logging_and_level(host: FakeHost) -> None:
    proc = await host.start_provider(structured_logging=True, log_level="info")
    await host.wait_healthy()
    assert await host.shutdown() == b"shutting down"
    await proc.wait_exit(5)
    records = [json.loads(line) for line in proc.stderr_lines if line.strip()]
    assert records, "expected JSON log lines"
    assert {"timestamp", "level", "target", "message"} <= set(records[0])
    assert all(r["level"] != "DEBUG" for r in records)


def lines_of(proc: ProviderProcess) -> list[str]:
    return [line for line in proc.stderr_lines if line.strip()]


async def test_unreachable_nats_is_one_line_naming_the_url(host: FakeHost) -> None:
    from provider.natsserver import free_port

    port = free_port()  # nothing listens there
    started_at = time.monotonic()
    proc = await host.start_provider(
        WS_PROVIDER, lattice_rpc_url=f"nats://wsp:hunter2@127.0.0.1:{port}", log_level="info"
    )
    assert await proc.wait_exit(20) == 1
    assert time.monotonic() - started_at < 10, "took longer than a few seconds"
    [line] = lines_of(proc)  # one line: no warning per attempt, no traceback
    assert f"cannot reach the lattice NATS at nats://<user info>@127.0.0.1:{port}" in line
    assert "connection refused" in line and "5 attempts" in line
    assert "check that nats-server runs there" in line
    assert "hunter2" not in line


async def test_silent_nats_address_gives_up_within_a_few_seconds(host: FakeHost) -> None:
    # Something accepts the TCP connection but never speaks NATS (a wrong port, a proxy, a
    # firewall that swallows packets looks the same to the client): each attempt waits for
    # its timeout, and the attempts together must still end within a few seconds.
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the provider gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started_at = time.monotonic()
        proc = await host.start_provider(
            WS_PROVIDER, lattice_rpc_url=f"nats://127.0.0.1:{port}", log_level="info"
        )
        assert await proc.wait_exit(30) == 1
        elapsed = time.monotonic() - started_at
        assert accepted.is_set()
        assert elapsed < 10, f"gave up after {elapsed:.1f} s"
        [line] = lines_of(proc)
        assert f"cannot reach the lattice NATS at nats://127.0.0.1:{port}" in line
        assert "no NATS answer within 2 s" in line
    finally:
        server.close()
        await server.wait_closed()


async def test_failed_update_keeps_the_previous_link(host: FakeHost) -> None:
    await started(host)
    async with host.events() as events:
        await host.put_link(host.consumer_link("comp1", target_config={"a": "1"}))
        await events.expect("link_as_target")
        await host.put_link(host.consumer_link("comp1", target_config={"fail": "true"}))
        await events.expect("link_deleted_as_target")
        restored = await events.expect("link_as_target")  # the default update re-applies old
        assert restored["link"]["config"] == {"a": "1"}
        # The old link is still stored: deleting it reaches the hook.
        await host.del_link(host.consumer_link("comp1"))
        deleted = await events.expect("link_deleted_as_target")
        assert deleted["link"]["link_name"] == "default"
