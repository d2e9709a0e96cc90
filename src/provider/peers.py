"""What this instance's server side asks of the other instances (the cluster bus), as one port.

The hub is given a `Peers` when it is built: the cluster bus's outgoing half under a host
(`cluster.ClusterLink`), or `NO_PEERS` when this process is alone (library use, tests), so no
part checks for "is there a cluster?" itself. The hub's `moves.Holder` side is handed to the
incoming half (`cluster_inbox.ClusterInbox`) when it starts, never to the link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .errors import NoSuchSession

if TYPE_CHECKING:
    from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

    from .history import ResumeRequest
    from .moves import SessionMove

PairKey = tuple[str, str]


class Peers(Protocol):
    """The other instances of this provider, as the server side needs them."""

    async def fetch_move(
        self, session_id: str, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | None:
        """Start moving a session this instance does not hold here (from the instance that
        holds it, else from the store); None when there is none for this client."""
        ...

    async def publish_remote(self, component_id: str, msg: BrokerMessage) -> Ok | Err:
        """A targeted publish to the instance holding the session now."""
        ...

    async def request_remote(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """A targeted request to the instance holding the session now."""
        ...

    async def send_answer_back(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A moved-in session's client answered a request made on its old instance."""
        ...

    async def session_id_opened(self, session_id: str, confirmed: bool = False) -> None:
        """A session held here: make it reachable from the other instances (`confirmed`:
        return only once they can reach it, e.g. before a resumed client is welcomed)."""
        ...

    async def session_id_closed(self, session_id: str) -> None:
        """A session is no longer held here."""
        ...


class NoPeers:
    """This instance is alone: nothing is held elsewhere, nothing to tell anyone."""

    async def fetch_move(
        self, session_id: str, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | None:
        """Nobody else holds it: None."""
        return None

    async def publish_remote(self, component_id: str, msg: BrokerMessage) -> Ok | Err:
        """No such session (it is not here, and there is nowhere else)."""
        return NoSuchSession.of(msg.subject.partition(".")[0])

    async def request_remote(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """No such session (it is not here, and there is nowhere else)."""
        return NoSuchSession.of(subject.partition(".")[0])

    async def send_answer_back(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """Nothing to send it to."""

    async def session_id_opened(self, session_id: str, confirmed: bool = False) -> None:
        """Nobody to tell."""

    async def session_id_closed(self, session_id: str) -> None:
        """Nobody to tell."""


#: The `Peers` of a provider instance that is alone.
NO_PEERS: Peers = NoPeers()
