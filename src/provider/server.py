"""Server mode: the parts that serve clients, wired together (README "Server mode").

`ServerHub` builds and composes them, given what it needs when built (the routing table it
shares with the provider, the other instances as `Peers`, the JetStream store):

* endpoints.py: the endpoints and the listeners they are served on;
* session_table.py: the sessions, their tables, detached bounds and ends;
* connection.py: one connection's life (frames in, session detached or ended);
* component_calls.py: what a client sent, to the component; outbound.py: to the clients;
* resume.py and session_moves.py: resuming here, and moving sessions between instances;
* persistence.py: session state and history in JetStream.

Decisions without I/O are admission.py, inbound.py, routing.py, lifecycle.py and
session_counts.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from wasmcloud_provider_sdk import BrokerMessage

from .component_calls import ComponentCalls
from .connection import Connections
from .endpoints import EndpointRegistry, Listener
from .frames import MessageTemplate
from .history import ResumeRequest
from .lifecycle import SessionState
from .metrics import Metrics
from .moves import SessionMove
from .outbound import Outbound
from .peers import NO_PEERS, Peers
from .persistence import SessionPersistence
from .resume import Resumes
from .routing import RoutingTable
from .session_moves import SessionMoves
from .session_table import Endpoint, Handler, PairKey, SessionTable
from .sessions import Session

if TYPE_CHECKING:
    from .jsstore import HistoryStore

__all__ = ["Endpoint", "Handler", "Listener", "PairKey", "ServerHub"]


def _install_gauges(metrics: Metrics, tables: SessionTable) -> None:
    """The gauges `/metrics` and OpenTelemetry read from the session tables."""
    endpoints, tracked = tables.endpoints, tables.sessions
    metrics.gauges["wsp_sessions_open"] = lambda: sum(
        1 for e in endpoints.values() for s in e.sessions.values() if s.state is SessionState.OPEN
    )
    metrics.gauges["wsp_send_queue_frames"] = lambda: sum(
        s.queued_out for e in endpoints.values() for s in e.sessions.values()
    )
    metrics.gauges["wsp_endpoints"] = lambda: len(endpoints)
    metrics.bytes_out_live = lambda: sum(
        s.counters.bytes_out for e in endpoints.values() for s in e.sessions.values()
    )
    metrics.gauges["wsp_sessions_detached"] = lambda: sum(
        1 for s in tracked.values() if s.state is SessionState.DETACHED
    )


class ServerHub:
    """Every endpoint, listener and session of this instance: the server-mode parts, built
    and wired here, and the one object the provider and the cluster's incoming half
    (`cluster_inbox.ClusterInbox`, through `moves.Holder`) use."""

    def __init__(
        self,
        routes: RoutingTable[Session, Endpoint, Any] | None = None,
        *,
        peers: Peers = NO_PEERS,
        store: HistoryStore | None = None,
        readiness_check: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        """`routes`: who a subject names (shared with the provider, which adds its
        client-mode connections); `peers`: the other instances (none: `NO_PEERS`); `store`:
        the JetStream store for resume across processes (None: in memory only);
        `readiness_check`: an extra `/readyz` condition (the lattice connection)."""
        self.routes: RoutingTable[Session, Endpoint, Any] = (
            routes if routes is not None else RoutingTable()
        )
        self.metrics = Metrics()
        persistence = SessionPersistence(store)
        self.tables = SessionTable(self.routes, peers, persistence, self.metrics)
        self.outbound = Outbound(self.routes, peers, self.metrics, store)
        calls = ComponentCalls(self.metrics)
        self.moves = SessionMoves(self.tables, self.outbound, calls, persistence)
        resumes = Resumes(self.tables, peers, calls, persistence)
        self.connections = Connections(
            self.tables,
            resumes,
            self.moves,
            self.outbound,
            calls,
            persistence,
            peers,
            readiness_check,
        )
        self.registry = EndpointRegistry(self.tables, self.connections, persistence)
        self._resumes = resumes
        _install_gauges(self.metrics, self.tables)
        # The tables, by their usual names (the routing table's own).
        self.endpoints = self.routes.endpoints
        self.sessions = self.routes.sessions  # tracked (addressable) sessions
        self.topics = self.routes.topics
        self.listeners = self.registry.listeners
        # Endpoints and listeners (endpoints.py).
        self.add_endpoint = self.registry.add_endpoint
        self.set_handler = self.registry.set_handler
        self.remove_endpoint = self.registry.remove_endpoint
        self.bound_port = self.registry.bound_port
        self.close = self.registry.close
        # Routes carried out (outbound.py).
        self.publish = self.outbound.publish
        self.publish_to_session = self.outbound.publish_to_session
        self.publish_to_session_now = self.outbound.publish_to_session_now
        self.fan_out = self.outbound.fan_out
        self.request = self.outbound.request
        self.request_session = self.outbound.request_session
        self.send_to_session = self.outbound.send_to_session
        self.broadcast_all = self.outbound.broadcast_all
        self.list_sessions = self.outbound.list_sessions

    @property
    def readiness_check(self) -> Callable[[], tuple[bool, str]] | None:
        """Extra readiness condition for `/readyz` (None: ready unless shutting down)."""
        return self.connections.readiness_check

    @readiness_check.setter
    def readiness_check(self, check: Callable[[], tuple[bool, str]] | None) -> None:
        self.connections.readiness_check = check

    def readiness(self) -> tuple[bool, str]:
        """Ready to take clients? (`/readyz`)"""
        return self.connections.readiness()

    # --- moves.Holder: what the other instances ask of this instance's sessions ------------

    def holds(self, session_id: str) -> bool:
        """Is this (tracked) session held by this instance?"""
        return self.tables.holds(session_id)

    def ended_here(self, session_id: str) -> bool:
        """Did this session end on this instance (recently)?"""
        return self.tables.ended_here(session_id)

    def recently_moved_out(self, session_id: str) -> bool:
        """Did the session move out of this instance lately (late sends follow it)?"""
        return self.moves.recently_moved_out(session_id)

    def begin_move_out(
        self, req: ResumeRequest, key: PairKey, identity_key: str | None
    ) -> SessionMove | None:
        """Check a move request and mark the session MOVING_OUT; None: refused."""
        return self.moves.begin_move_out(req, key, identity_key)

    async def finish_move_out(
        self,
        session_id: str,
        claimed: bool,
        max_bytes: int,
        on_drained: Callable[[], Awaitable[None]] | None = None,
    ) -> list[MessageTemplate] | None:
        """Let the session go (what reached it meanwhile) or keep it (None)."""
        return await self.moves.finish_move_out(session_id, claimed, max_bytes, on_drained)

    def resolve_moved_request(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A client answered, on its new instance, a request made here before it moved."""
        self.outbound.resolve_moved_request(session_id, token, answer)

    async def move_in_orphan(self, move: SessionMove) -> bool:
        """Hold a session whose instance is gone, detached; False when it cannot be."""
        return await self._resumes.move_in_orphan(move)
