"""End to end under a real wasmCloud 1.x host (wasmcloud-host 0.27.1 = wasmCloud v1.9.2).

A JetStream nats-server, the test host (tests/realhost/host), the provider archive built by
`python -m provider package` started with `provider.start` from a `file://` reference, the
Rust component (examples/rust-component, wasm32-wasip2) scaled with `component.scale`, links
put with `link.put` in both orders (provider running first / links before the provider), and
WebSocket clients: welcome and the component's greeting (a `ws.session.connected` event echoed
back), echo, broadcast, topics, `consumer.request` answered by a client, link delete and
re-put, provider stop, host stop.

Run on request: `make e2e-host`, or `pytest -m realhost tests/realhost` once the host, the
component and (for the frozen case) PyInstaller are there; see conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from provider.natsserver import free_port
from tests.realhost.conftest import Lattice
from tests.realhost.ctl import CtlError, link
from tests.wsclient import Client

pytestmark = [pytest.mark.realhost, pytest.mark.timeout(300)]

PROVIDER_ID = "websocket-provider"
COMPONENT_ID = "ws-component"
ENDPOINT_CONFIG = "ws-endpoint"


def handler_link() -> dict[str, Any]:
    """provider -> component on `handler`, with the server-mode config on the provider's side
    (README "Server mode": the source config of the provider's handler link)."""
    return link(PROVIDER_ID, COMPONENT_ID, ["handler"], source_config=[ENDPOINT_CONFIG])


def consumer_link() -> dict[str, Any]:
    """component -> provider on `consumer`: what lets the component's imports reach us."""
    return link(COMPONENT_ID, PROVIDER_ID, ["consumer"])


async def open_when_listening(url: str, timeout: float = 30.0) -> Client:
    """Connect as soon as the endpoint accepts: the provider opens it when it has the link."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.open(url)
        except (OSError, InvalidHandshake) as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{url} not accepting after {timeout}s: {e!r}") from None
            await asyncio.sleep(0.1)  # a refused connect is immediate; pace the retries


async def refused(url: str, timeout: float = 10.0) -> Exception:
    """Wait until the endpoint refuses new clients (connection refused or an HTTP error)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await Client.open(url)
        except (OSError, InvalidHandshake) as e:
            return e
        await client.close()
        if time.monotonic() >= deadline:
            raise AssertionError(f"{url} still accepts clients after {timeout}s")
        await asyncio.sleep(0.1)


async def greeted(client: Client) -> None:
    """The component answers `ws.session.connected` with `<session>.greeting`."""
    frame = await client.recv()
    assert frame["type"] == "message", frame
    assert frame["subject"] == "greeting", frame
    assert frame["body"] == f"hello {client.session_id}", frame


async def expect_message(client: Client, subject: str, body: Any) -> dict[str, Any]:
    frame = await client.recv()
    assert frame["type"] == "message", frame
    assert (frame["subject"], frame["body"]) == (subject, body), frame
    return frame


async def expect_closed(client: Client, code: int, timeout: float = 10.0) -> None:
    """The server closes the session with `code`; any frame before that is a failure."""
    try:
        frame = await client.recv(timeout)
    except ConnectionClosed as e:
        assert e.rcvd is not None and e.rcvd.code == code, e
        return
    raise AssertionError(f"expected close {code}, got frame {frame}")


async def put_links(lat: Lattice, order: str) -> None:
    links = [handler_link(), consumer_link()]
    if order == "links-first":
        links.reverse()
    for ld in links:
        mark = lat.events.mark
        await lat.ctl.link_put(ld)
        ends = (ld["source_id"], ld["target"])

        def this_link(data: dict[str, Any], ends: tuple[str, str] = ends) -> bool:
            return (data.get("source_id"), data.get("target")) == ends

        await lat.events.wait("linkdef_set", this_link, failure="linkdef_set_failed", after=mark)


def same_link(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("source_id", "target", "name", "wit_namespace", "wit_package", "interfaces")
    return all(a.get(k) == b.get(k) for k in keys)


@pytest.mark.parametrize(
    ("archive_mode", "order"),
    [
        ("launcher", "provider-first"),
        ("launcher", "links-first"),
        ("frozen", "provider-first"),
    ],
)
async def test_provider_and_component_under_a_real_host(
    lattice: Lattice,
    request: pytest.FixtureRequest,
    component_wasm: Path,
    archive_mode: str,
    order: str,
) -> None:
    lat = lattice
    archive: Path = request.getfixturevalue(f"{archive_mode}_archive")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    await lat.ctl.config_put(ENDPOINT_CONFIG, {"MODE": "server", "URI": f"127.0.0.1:{port}/ws"})

    async def start_provider() -> None:
        started = await lat.ctl.provider_start_and_wait(
            lat.events, lat.host_id, PROVIDER_ID, f"file://{archive}"
        )
        assert started.data["host_id"] == lat.host_id
        await lat.wait_provider_serving(PROVIDER_ID)

    async def scale_component() -> None:
        await lat.ctl.component_scale_and_wait(
            lat.events, lat.host_id, COMPONENT_ID, f"file://{component_wasm}", 1
        )

    if order == "provider-first":
        # The provider runs first; the links reach it on its linkdefs.put subject.
        await start_provider()
        await scale_component()
        await put_links(lat, order)
    else:
        # The links exist before the provider: they reach it in its HostData.
        await scale_component()
        await put_links(lat, order)
        await start_provider()

    # link.get: both links, with config NAMES (values stay in the config store).
    links = await lat.ctl.wait_links(
        lambda ls: all(
            any(same_link(x, want) for x in ls) for want in (handler_link(), consumer_link())
        )
    )
    print("link.get response links:", json.dumps(links, indent=1))
    got = {(x["source_id"], x["target"]): x for x in links}
    assert got[(PROVIDER_ID, COMPONENT_ID)]["source_config"] == [ENDPOINT_CONFIG]
    assert got[(PROVIDER_ID, COMPONENT_ID)]["target_config"] == []
    assert got[(COMPONENT_ID, PROVIDER_ID)]["source_config"] == []

    inventory = await lat.ctl.host_inventory(lat.host_id)
    assert [p["id"] for p in inventory["providers"]] == [PROVIDER_ID], inventory
    assert [c["id"] for c in inventory["components"]] == [COMPONENT_ID], inventory

    # --- sessions: welcome, then the component's answer to ws.session.connected -------------
    a = await open_when_listening(url)
    await greeted(a)
    b = await Client.open(url)
    await greeted(b)
    assert a.session_id != b.session_id

    # echo: reply-to is the session (no reply_to) or `<session>.<reply_to>`
    await a.message("echo.test", "hi")
    await expect_message(a, a.session_id, "hi")
    await a.message("echo.test", "with reply", reply_to="r1")
    await expect_message(a, "r1", "with reply")

    # broadcast: every session, the sender included
    await a.message("broadcast", "to everyone")
    await expect_message(a, "broadcast", "to everyone")
    await expect_message(b, "broadcast", "to everyone")

    # topics: only the subscriber. B's frames are handled in order, so once its echo is back
    # its subscription is in place.
    await b.send({"type": "subscribe", "subject": "news.*"})
    await b.message("sync", "ok")
    await expect_message(b, b.session_id, "ok")
    await a.message("topic.news.today", "headline")
    await expect_message(b, "news.today", "headline")
    await a.message("echo.test", "after news")
    await expect_message(a, a.session_id, "after news")  # A got no news frame first

    # consumer.request: the component asks the client, the client answers, the answer
    # comes back through the component
    await a.message("ask", "what is six times seven?")
    question = await a.recv()
    assert (question["subject"], question["body"]) == ("ask", "what is six times seven?")
    token = question["reply_to"]
    assert isinstance(token, str) and token.startswith("rq_"), question
    await a.message(token, "42")
    await expect_message(a, a.session_id, "42")

    # --- link delete: the endpoint's sessions close with 1001, the endpoint goes away ---------
    mark = lat.events.mark
    await lat.ctl.link_del(PROVIDER_ID)
    await lat.events.wait(
        "linkdef_deleted", lambda d: d.get("source_id") == PROVIDER_ID, after=mark
    )
    await expect_closed(a, 1001)
    await expect_closed(b, 1001)
    await refused(url)
    links = await lat.ctl.wait_links(lambda ls: not any(same_link(x, handler_link()) for x in ls))
    assert any(same_link(x, consumer_link()) for x in links), links

    # --- the link again: the endpoint is back ---------------------------------------------
    mark = lat.events.mark
    await lat.ctl.link_put(handler_link())
    await lat.events.wait(
        "linkdef_set",
        lambda d: d.get("source_id") == PROVIDER_ID,
        failure="linkdef_set_failed",
        after=mark,
    )
    c = await open_when_listening(url)
    await greeted(c)
    await c.message("echo.test", "back")
    await expect_message(c, c.session_id, "back")

    # --- provider stop: sessions close with 1001, the host reports it stopped ----------------
    mark = lat.events.mark
    await lat.ctl.provider_stop(lat.host_id, PROVIDER_ID)
    await expect_closed(c, 1001)
    await lat.events.wait(
        "provider_stopped", lambda d: d.get("provider_id") == PROVIDER_ID, after=mark
    )
    await refused(url)
    inventory = await lat.ctl.host_inventory(lat.host_id)
    assert inventory["providers"] == [], inventory
    with pytest.raises(CtlError, match="not running"):
        await lat.ctl.provider_stop(lat.host_id, PROVIDER_ID)

    # --- host stop: SIGTERM, clean exit ----------------------------------------------------
    assert await lat.host.stop() == 0, lat.host.log_tail()


async def test_link_get_returns_config_names_not_values(lattice: Lattice) -> None:
    """What `link.get` carries: config NAMES as given to `link.put` (a name starting with
    SECRET names a secret reference and is listed the same way), never values or secrets.
    Needs no provider or component: the host stores links between any two ids."""
    lat = lattice
    await lat.ctl.config_put("cfg-a", {"MODE": "server", "URI": "127.0.0.1:1/ws"})
    await lat.ctl.config_put("cfg-b", {"AUTH": "token"})
    # A secret reference lives in the config store under a SECRET… name (the host only checks
    # that the name exists when the link is put; resolving it needs a secrets backend).
    await lat.ctl.config_put(
        "SECRET_ws_tokens", {"key": "ws_tokens", "backend": "nats-kv", "field": "AUTH_TOKENS"}
    )
    ld = link(
        "prov-x",
        "comp-x",
        ["handler"],
        name="named",
        source_config=["cfg-a", "cfg-b", "SECRET_ws_tokens"],
        target_config=["cfg-b"],
    )
    await lat.ctl.link_put(ld)
    links = await lat.ctl.wait_links(lambda ls: any(same_link(x, ld) for x in ls))
    print("link.get response links:", json.dumps(links, indent=1))
    (got,) = [x for x in links if same_link(x, ld)]
    assert got == ld  # exactly the Link as put: names only, nothing resolved, nothing added

    # A config name that does not exist is refused at link.put.
    with pytest.raises(CtlError, match="not found"):
        await lat.ctl.link_put(
            link("prov-x", "comp-y", ["handler"], name="other", source_config=["missing"])
        )
