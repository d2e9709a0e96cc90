"""Link puts lost before the provider subscribed are applied from the lattice's own list.

A host publishes a link put once; one published between the host starting the provider and
the provider's subscription is lost. The test host here publishes the puts before the
provider runs (lost the same way) and answers the control interface's `link.get` and
`config.get` as a host does (config names in the list, values per name).
"""

from __future__ import annotations

import asyncio

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost
from tests.wsclient import Client


def server_config(port: int) -> dict[str, str]:
    return {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"}


async def test_put_before_subscription_is_applied_from_the_lattice(host: FakeHost) -> None:
    echo = await TestComponent(host, "echo").serve()
    port = free_port()
    consumer = host.consumer_link("echo")
    handler = host.handler_link("echo", source_config=server_config(port))
    await host.serve_control_interface(
        [host.ctl_link(consumer), host.ctl_link(handler, source_config=["base", "ws-server"])],
        {"base": {"MODE": "client", "URI": "ws://127.0.0.1:1"}, "ws-server": server_config(port)},
    )
    await host.put_link(handler)  # nobody subscribes yet: lost, as on a real host
    proc = await host.start_provider(WS_PROVIDER, link_definitions=[consumer])
    await host.wait_healthy()
    line = await proc.wait_for_line("was put before this provider subscribed: applying it now")
    assert "prov1 -> echo" in line, proc.stderr
    await proc.wait_for_line("prov1 -> echo (wasmcloud:messaging, default) applied as source")
    # Later names win when configs are merged: the endpoint is a server on `port`.
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    connected = await echo.next_event("ws.session.connected")
    assert connected.reply_to == client.session_id
    await client.message("chat", "hi")
    assert (await echo.next()).body == b"hi"
    await client.close()
    # The link it already had (from host data) was not applied twice.
    assert not [ln for ln in proc.stderr_lines if "echo -> prov1" in ln and "applying" in ln]


async def test_missed_link_with_secrets_is_reported_not_applied(host: FakeHost) -> None:
    port = free_port()
    handler = host.handler_link("echo", source_config=server_config(port))
    consumer = host.consumer_link("other")
    await host.serve_control_interface(
        [
            host.ctl_link(handler, source_config=["ws-server", "SECRET_tokens"]),
            host.ctl_link(consumer, target_config=["missing-config"]),
            {"source_id": "broken"},
        ],
        {"ws-server": server_config(port)},
    )
    proc = await host.start_provider(WS_PROVIDER)
    await host.wait_healthy()
    line = await proc.wait_for_line("needs secrets (SECRET_tokens)")
    assert "delete the link and put it again" in line
    line = await proc.wait_for_line("its config could not be read")
    assert "missing-config" in line and "does not exist" in line
    await proc.wait_for_line("ignoring a listed link: a listed link has no valid 'target'")
    # Not applied without its secrets: no endpoint on the port.
    reader = asyncio.open_connection("127.0.0.1", port)
    try:
        await reader
    except OSError:
        pass
    else:
        raise AssertionError("an endpoint was opened without the link's secrets")


async def test_no_control_interface_is_reported(host: FakeHost) -> None:
    proc = await host.start_provider(WS_PROVIDER)
    await host.wait_healthy()
    line = await proc.wait_for_line("no host answered wasmbus.ctl.v1.default.link.get")
    assert "permission to publish to wasmbus.ctl.v1.default.link.get" in line
