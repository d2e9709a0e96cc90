"""The server hub is given its collaborators when built: the other instances (`Peers`) hear
of every tracked session opening and ending, and the readiness check answers `/readyz`."""

from __future__ import annotations

import asyncio

from provider.history import ResumeRequest
from provider.moves import SessionMove
from provider.natsserver import free_port
from provider.server import ServerHub
from provider.settings import server_settings
from tests.wsclient import Client
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


class RecordingPeers:
    """Other instances that hold nothing and write down what they are told."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        #: Sessions made reachable, and whether the caller waited until it was confirmed.
        self.opened: dict[str, bool] = {}

    async def fetch_move(
        self, session_id: str, req: ResumeRequest, key: tuple[str, str], identity: str | None
    ) -> SessionMove | None:
        await self.events.put(("fetch", session_id))
        return None

    async def publish_remote(self, component_id: str, msg: BrokerMessage) -> Ok | Err:
        return Err("unused")

    async def request_remote(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        return Err("unused")

    async def send_answer_back(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        await self.events.put(("answer", session_id))

    async def session_id_opened(self, session_id: str, confirmed: bool = False) -> None:
        if session_id not in self.opened:  # as the cluster link: once per session
            self.opened[session_id] = confirmed
            await self.events.put(("opened", session_id))

    async def session_id_closed(self, session_id: str) -> None:
        await self.events.put(("closed", session_id))


async def http_status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(raw.split()[1])


async def hub_with_endpoint(peers: RecordingPeers, **config: str) -> tuple[ServerHub, int]:
    """A hub over `peers` with one endpoint (`config` on top of its URI) and its port."""
    hub = ServerHub(peers=peers)
    port = free_port()
    settings = server_settings({"URI": f"127.0.0.1:{port}/ws", **config})
    await hub.add_endpoint(("c", "default"), settings, None)
    return hub, port


async def test_peers_hear_of_sessions_and_a_resume_asks_them() -> None:
    peers = RecordingPeers()
    hub, port = await hub_with_endpoint(peers, RESUME_WINDOW_SEC="30")
    try:
        client = await Client.open(f"ws://127.0.0.1:{port}/ws")
        assert await asyncio.wait_for(peers.events.get(), 5) == ("opened", client.session_id)
        # Reachable from the other instances, confirmed, before the client was welcomed.
        assert peers.opened[client.session_id] is True
        # A resume of a session this instance does not hold asks the other instances.
        other = "ws_" + "q" * 22
        stranger = await Client.open(
            f"ws://127.0.0.1:{port}/ws?resume={other}.{'s' * 20}&last_seq=0"
        )
        assert await asyncio.wait_for(peers.events.get(), 5) == ("fetch", other)
        assert (await asyncio.wait_for(peers.events.get(), 5))[0] == "opened"  # a new one
        await hub.remove_endpoint(("c", "default"), 1001, "bye")
        closed = {await asyncio.wait_for(peers.events.get(), 5) for _ in range(2)}
        assert closed == {("closed", client.session_id), ("closed", stranger.session_id)}
    finally:
        await hub.close()


async def test_an_untracked_sessions_id_is_never_made_reachable_elsewhere() -> None:
    # Without session tracking nothing cluster-wide is kept per session: no subscription to
    # make (and none left behind when it ends).
    peers = RecordingPeers()
    hub, port = await hub_with_endpoint(peers, ENABLE_SESSION_TRACKING="false")
    try:
        for _ in range(3):
            client = await Client.open(f"ws://127.0.0.1:{port}/ws")
            await client.close()
        # The same peers, a tracking endpoint: recorded.
        tracked, port2 = await hub_with_endpoint(peers)
        try:
            other = await Client.open(f"ws://127.0.0.1:{port2}/ws")
            assert await asyncio.wait_for(peers.events.get(), 5) == ("opened", other.session_id)
            assert list(peers.opened) == [other.session_id]
        finally:
            await tracked.close()
    finally:
        await hub.close()


async def test_the_readiness_check_given_when_built_answers_readyz() -> None:
    ready = {"now": True}
    hub = ServerHub(readiness_check=lambda: (ready["now"], "ready" if ready["now"] else "no"))
    port = free_port()
    await hub.add_endpoint(("c", "default"), server_settings({"URI": f"127.0.0.1:{port}"}), None)
    try:
        assert await http_status(port, "/readyz") == 200
        ready["now"] = False
        assert await http_status(port, "/readyz") == 503
    finally:
        await hub.close()
