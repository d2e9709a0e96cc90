"""The do-nothing `Peers` of a provider instance that is alone."""

from __future__ import annotations

from provider.errors import NoSuchSession
from provider.history import ResumeRequest
from provider.peers import NO_PEERS, NoPeers, Peers
from wasmcloud_provider_sdk import BrokerMessage


async def test_alone_nothing_is_held_elsewhere() -> None:
    peers: Peers = NO_PEERS
    assert isinstance(peers, NoPeers)
    request = ResumeRequest("ws_a", "secret", 0)
    assert await peers.fetch_move("ws_a", request, ("c", "default"), None) is None
    published = await peers.publish_remote("c", BrokerMessage("ws_a.x", b""))
    assert isinstance(published, NoSuchSession)
    assert published.message == "no such session: ws_a"
    requested = await peers.request_remote("c", "ws_b", b"", 100)
    assert isinstance(requested, NoSuchSession)
    assert requested.message == "no such session: ws_b"


async def test_alone_there_is_nobody_to_tell() -> None:
    await NO_PEERS.session_id_opened("ws_a")
    await NO_PEERS.session_id_closed("ws_a")
    await NO_PEERS.send_answer_back("ws_a", "t", BrokerMessage("x", b""))
