"""The provider process runs on the event loop the provider config `EVENT_LOOP` picks
(`auto`, the default: uvloop where installed; `uvloop`; `asyncio`), and works the same on
each."""

from __future__ import annotations

import importlib.util

import pytest

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost
from tests.integration.test_workers import server_links
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Ok

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed here")


@pytest.mark.parametrize(
    ("config", "loop_name"),
    [
        pytest.param({}, "uvloop", marks=needs_uvloop, id="default"),
        pytest.param({"event_loop": " AsyncIO "}, "asyncio", id="asyncio"),
        pytest.param({"EVENT_LOOP": "uvloop"}, "uvloop", marks=needs_uvloop, id="uvloop"),
        pytest.param({"EVENT_LOOP": "auto"}, "uvloop", marks=needs_uvloop, id="auto"),
    ],
)
async def test_the_provider_runs_on_the_loop_the_config_picks(
    host: FakeHost, config: dict[str, str], loop_name: str
) -> None:
    comp = await TestComponent(host, "comp1").serve()
    port = free_port()
    proc = await host.start_provider(
        WS_PROVIDER, link_definitions=server_links(host, port), config=config, log_level="debug"
    )
    line = await proc.wait_for_line("event loop: ")
    assert line.split("event loop: ", 1)[1].startswith(loop_name), line
    await proc.wait_for_line(" ready: ")
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    try:
        # Both directions: a client's message reaches the component, a publish the client.
        await client.message("chat", "hello", reply_to="r1")
        assert await comp.next() == BrokerMessage("chat", b"hello", f"{client.session_id}.r1")
        assert await comp.publish(client.session_id, b"back") == Ok()
        assert (await client.recv())["body"] == "back"
    finally:
        await client.close()


@pytest.mark.parametrize("value", ["fast", "trio", ""])
async def test_a_bad_event_loop_value_is_an_error_naming_the_key(
    host: FakeHost, value: str
) -> None:
    proc = await host.start_provider(WS_PROVIDER, config={"EVENT_LOOP": value})
    assert await proc.wait_exit(20) == 2
    assert f"invalid provider config EVENT_LOOP={value!r}" in proc.stderr, proc.stderr
