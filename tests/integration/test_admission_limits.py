"""Admission under hostile clients: detached sessions never lock live clients out, one
address cannot take every slot, connections are rate limited per address."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost
from tests.integration.test_resume import ResumingClient


async def deploy(host: FakeHost, **config: str) -> str:
    port = free_port()
    settings = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws", **config}
    await host.start_provider(
        WS_PROVIDER,
        link_definitions=[
            host.consumer_link("echo"),
            host.handler_link("echo", source_config=settings),
        ],
    )
    await host.wait_healthy()
    return f"ws://127.0.0.1:{port}/ws"


async def status_of(url: str) -> int:
    try:
        async with connect(url, open_timeout=5) as ws:
            await ws.recv()
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


class Events:
    """Every delivery to the component, kept: waits look back as well as forward."""

    def __init__(self, comp: TestComponent) -> None:
        self.comp = comp
        self.seen: list[tuple[str, dict[str, object]]] = []

    async def wait(
        self, subject: str, count: int = 1, session_id: str | None = None
    ) -> list[dict[str, object]]:
        while True:
            found = [
                body
                for subj, body in self.seen
                if subj == subject and session_id in (None, body["session_id"])
            ]
            if len(found) >= count:
                return found
            _, msg = await asyncio.wait_for(self.comp.calls.get(), 10)
            if msg.subject.startswith("ws.session."):
                self.seen.append((msg.subject, json.loads(msg.body)))


async def aborted_sessions(url: str, events: Events, n: int) -> list[str]:
    """Open `n` sessions and drop their connections (no close frame): all detached."""
    sids = []
    for _ in range(n):
        client = ResumingClient(url)
        sids.append((await client.connect())["session_id"])
        client.drop()
    await events.wait("ws.session.detached", n)
    return sids


async def test_detached_sessions_do_not_count_toward_max_sessions(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    url = await deploy(host, MAX_SESSIONS="5", CONNECT_RATE_LIMIT="0")
    await aborted_sessions(url, Events(comp), 5)
    # Five detached sessions, none connected: a live client is welcome.
    assert await status_of(url) == 101


async def test_one_address_cannot_take_every_slot(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    url = await deploy(host, MAX_SESSIONS_PER_IP="3", CONNECT_RATE_LIMIT="0")
    live = [await connect(url) for _ in range(3)]
    assert await status_of(url) == 429  # all three connected: refused
    await live[0].close()
    assert await status_of(url) == 101
    for ws in live[1:]:
        await ws.close()
    # At the cap with detached sessions: the oldest of them makes room.
    events = Events(comp)
    first, *_ = await aborted_sessions(url, events, 3)
    assert await status_of(url) == 101
    [gone] = await events.wait("ws.session.disconnected", session_id=first)
    assert "too many sessions from its address" in str(gone["reason"])


async def test_detached_sessions_are_bounded(host: FakeHost) -> None:
    comp = await TestComponent(host, "echo").serve()
    url = await deploy(host, MAX_DETACHED_SESSIONS="2", CONNECT_RATE_LIMIT="0")
    events = Events(comp)
    first, *_ = await aborted_sessions(url, events, 3)
    [gone] = await events.wait("ws.session.disconnected")
    assert gone["session_id"] == first
    assert "too many detached sessions" in str(gone["reason"])


async def test_connection_rate_limit_per_address(host: FakeHost) -> None:
    await TestComponent(host, "echo").serve()
    url = await deploy(host, CONNECT_RATE_LIMIT="2")
    statuses = await asyncio.gather(*(status_of(url) for _ in range(12)))
    assert 429 in statuses and 101 in statuses


async def test_a_bogus_resume_does_not_bypass_the_caps(host: FakeHost) -> None:
    """A resume of one's own live session with a wrong secret is admitted as a resume, but
    it does not become a new session past the caps."""
    await TestComponent(host, "echo").serve()
    url = await deploy(host, MAX_SESSIONS_PER_IP="2", MAX_SESSIONS="5", CONNECT_RATE_LIMIT="0")
    first, second = ResumingClient(url), ResumingClient(url)
    sid = (await first.connect())["session_id"]
    await second.connect()
    assert await status_of(url) == 429
    async with connect(f"{url}?resume={sid}.{'A' * 43}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


async def test_making_room_needs_an_authenticated_client(host: FakeHost) -> None:
    """At its cap, an address's detached session is ended only for a client that passed
    authentication: an anonymous request gets 401 and the session stays resumable."""
    comp = await TestComponent(host, "echo").serve()
    url = await deploy(
        host,
        MAX_SESSIONS_PER_IP="1",
        CONNECT_RATE_LIMIT="0",
        AUTH="token",
        AUTH_TOKENS="s3cret",
        AUTH_SOURCES="query",
    )
    client = ResumingClient(f"{url}?access_token=s3cret")
    sid = (await client.connect())["session_id"]
    client.drop()
    await Events(comp).wait("ws.session.detached")
    assert await status_of(url) == 401
    again = await client.connect(resume=True)
    assert again["session_id"] == sid and again["resumed"] is True
