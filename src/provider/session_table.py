"""This instance's server-mode sessions: which endpoint has which, and their ends.

* An `Endpoint` is the server endpoint of one (component, link name) pair, with its own
  sessions (connected and detached) and their per-address counts.
* `SessionTable` makes sessions, puts them in the tables (the endpoint's and, for tracked
  sessions, the routing table shared with the provider), keeps detached sessions within their
  bounds, and ends sessions for good. The counting itself is `session_counts` (no I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection

from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

from .admission import at_address_cap
from .closecodes import CloseCode
from .lifecycle import SessionState, transition
from .listener import remote_addr
from .metrics import Metrics
from .pacing import Pacer
from .peers import Peers
from .persistence import SessionPersistence
from .ratelimit import ConnectionRateLimiter, SessionLimiter
from .routing import RoutingTable, may_reach
from .session_counts import (
    AddressCounts,
    address_of,
    beyond_bound,
    first_detached_of,
    remember_ended,
)
from .sessions import Session
from .settings import ServerSettings
from .topics import IndexFull

log = logging.getLogger(__name__)

PairKey = tuple[str, str]  # (component id, link name)
#: Calls `handle-message` on the endpoint's component; returns its Ok/Err, raises
#: `TransportError` when the component cannot be called (`NotServedError`: nobody serves it;
#: `LatticeUnavailable`: no NATS connection; `InvocationTimeout`; otherwise e.g. a trap).
Handler = Callable[[BrokerMessage], Awaitable[Ok | Err]]

SESSION_DISCONNECTED = "ws.session.disconnected"
SESSION_DETACHED = "ws.session.detached"
#: Session events (connected, detached, resumed, disconnected) in flight to an endpoint's
#: component at once; the rest wait their turn, in order per session.
EVENT_CONCURRENCY = 16
#: Session teardowns (a connection gone, a resume window over) per event-loop iteration.
TEARDOWNS_PER_TICK = 8
#: How long a session's last event may wait for its turn (on top of HANDLER_TIMEOUT_SEC).
EVENT_QUEUE_WAIT = 120.0
#: How long a closing session's connection gets to finish its closing handshake.
CLOSE_WAIT = 0.2


@dataclass(eq=False)
class Endpoint:
    """A server endpoint of one (component, link name) pair."""

    key: PairKey
    settings: ServerSettings
    handler: Handler | None
    sessions: dict[str, Session] = field(default_factory=dict)
    conn_limiter: ConnectionRateLimiter | None = None
    #: Session history and state also go to the JetStream store.
    persist: bool = False
    #: Detached sessions, oldest first (they do not count toward MAX_SESSIONS).
    detached: dict[str, Session] = field(default_factory=dict)
    #: Session events being handed to the component at once (`ComponentCalls.call`).
    event_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(EVENT_CONCURRENCY)
    )
    #: Sessions per client address (connected or detached), for MAX_SESSIONS_PER_IP.
    addresses: AddressCounts = field(default_factory=AddressCounts)

    @property
    def live_sessions(self) -> int:
        """Sessions with a connected client."""
        return len(self.sessions) - len(self.detached)

    @property
    def per_ip(self) -> dict[str, int]:
        """Sessions per client address (what admission reads)."""
        return self.addresses.per_ip

    def __post_init__(self) -> None:
        if self.settings.connect_rate_limit:
            self.conn_limiter = ConnectionRateLimiter(self.settings.connect_rate_limit)

    @property
    def component_id(self) -> str:
        """The component that owns this endpoint."""
        return self.key[0]

    def reachable_by(self, component_id: str) -> bool:
        """Session isolation: the owner and the components listed in ALLOWED_PUBLISHERS."""
        return may_reach(component_id, self.component_id, self.settings.allowed_publishers)


async def wait_closed(session: Session, timeout: float = CLOSE_WAIT) -> None:
    """Wait (up to `timeout`) for the session's connection to finish closing."""
    ws = session.ws
    if ws is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), timeout)


class SessionTable:
    """Makes, tracks, detaches and ends this instance's server-mode sessions."""

    def __init__(
        self,
        routes: RoutingTable[Session, Endpoint, Any],
        peers: Peers,
        persistence: SessionPersistence,
        metrics: Metrics,
    ) -> None:
        self.routes = routes
        self.endpoints = routes.endpoints
        #: Tracked (addressable) sessions, by id: the routing table's.
        self.sessions = routes.sessions
        self.topics = routes.topics
        #: Sessions that ended here for good: id -> when (oldest first).
        self.ended = routes.ended
        self.peers = peers
        self.persistence = persistence
        self.metrics = metrics
        #: Shutting down: detached sessions are left to the store, ends tell no component.
        self.closing = False
        #: Session teardowns (detach, end) per loop iteration: a mass disconnect is spread
        #: out so that live sessions keep being served in between.
        self.teardown = Pacer(TEARDOWNS_PER_TICK)
        self._tasks: set[asyncio.Task[None]] = set()

    def holds(self, session_id: str) -> bool:
        """Is this (tracked) session held by this instance?"""
        return session_id in self.sessions

    def ended_here(self, session_id: str) -> bool:
        """Did this session end on this instance (within `ENDED_MEMORY`)? Session ids are
        never reused and an ended session cannot be resumed: it is gone everywhere."""
        return session_id in self.ended

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in a task this table keeps until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def new_session(
        self,
        endpoint: Endpoint,
        ws: ServerConnection | None,
        session_id: str,
        binary: bool,
        state: SessionState = SessionState.OPEN,
    ) -> Session:
        """A session of `endpoint` with its settings applied (not in any table yet)."""
        settings = endpoint.settings
        session = Session(
            id=session_id,
            ws=ws,
            state=state,
            component_id=endpoint.key[0],
            link_name=endpoint.key[1],
            remote_addr=remote_addr(ws) if ws is not None else "",
            binary=binary,
            send_queue_limit=settings.send_queue_limit,
            send_queue_bytes=settings.send_queue_bytes,
            slow_consumer=settings.slow_consumer,
            inbound_limit=settings.inbound_queue_limit,
        )
        if settings.rate_limit_msgs or settings.rate_limit_bytes:
            session.limiter = SessionLimiter(
                settings.rate_limit_msgs,
                settings.rate_limit_burst,
                settings.rate_limit_bytes,
                time.monotonic(),
            )
        if settings.resumable:
            session.history_limits = (
                settings.resume_history_messages,
                settings.resume_history_bytes,
                settings.resume_window,
            )
            session.persist = endpoint.persist and self.persistence.store is not None
        return session

    async def register(self, endpoint: Endpoint, session: Session, confirmed: bool = False) -> None:
        """Make a session routable here (and, with scale-out, from the other instances;
        `confirmed`: returns once they can reach it)."""
        endpoint.sessions[session.id] = session
        self.ended.pop(session.id, None)  # alive here (moved back in)
        endpoint.addresses.count(session.id, address_of(session.remote_addr))
        if not endpoint.settings.session_tracking:
            return
        self.sessions[session.id] = session
        for pattern in list(session.subscriptions):
            try:
                self.topics.add(pattern, session.id)
            except IndexFull as exc:  # a session moved in: keep it, not this
                session.subscriptions.discard(pattern)
                log.warning("subscription %r dropped: %s", pattern, exc, extra=session.log_fields)
        try:
            await self.peers.session_id_opened(session.id, confirmed)
        except Exception:
            log.exception("session %s: could not make it reachable cluster-wide", session.id)

    def unregister(self, endpoint: Endpoint, session: Session) -> None:
        """Take a session out of the tables (not routable here any more)."""
        endpoint.sessions.pop(session.id, None)
        endpoint.detached.pop(session.id, None)
        endpoint.addresses.uncount(session.id)
        if self.sessions.get(session.id) is session:
            self.sessions.pop(session.id, None)
        self.topics.remove_all(session.id, session.subscriptions)

    def unregister_everywhere(self, session: Session) -> None:
        """Take a session out of the tables when its endpoint may be gone already."""
        for endpoint in self.endpoints.values():
            if endpoint.sessions.get(session.id) is session:
                self.unregister(endpoint, session)
        if self.sessions.get(session.id) is session:
            self.sessions.pop(session.id, None)
            self.topics.remove_all(session.id, session.subscriptions)

    async def unreachable(self, session: Session) -> None:
        """Tell the other instances the session is no longer held here (errors ignored)."""
        with contextlib.suppress(Exception):
            await self.peers.session_id_closed(session.id)

    def keep_detached(self, endpoint: Endpoint, session: Session) -> None:
        """Count a session as detached; past MAX_DETACHED_SESSIONS the oldest ends now."""
        endpoint.detached[session.id] = session
        for oldest in beyond_bound(endpoint.detached, endpoint.settings.max_detached_sessions):
            if oldest.state is SessionState.DETACHED:  # else being moved or resumed
                self._evict(endpoint, oldest, "too many detached sessions")

    def room_for(self, endpoint: Endpoint, ip: str) -> bool:
        """May one more session from `ip` open on `endpoint`? At MAX_SESSIONS_PER_IP the
        address's oldest detached session is ended to make room, if it has one."""
        if not at_address_cap(endpoint.settings, ip, endpoint.addresses.of(ip)):
            return True
        return self.make_room(endpoint, ip)

    def make_room(self, endpoint: Endpoint, ip: str) -> bool:
        """`ip` is at its session cap: end its oldest detached session (its own resume slot
        makes room for its new connection). False when all its sessions are connected."""
        session = first_detached_of(
            endpoint.detached,
            ip,
            endpoint.addresses.ip_of,
            lambda s: s.state is SessionState.DETACHED,
        )
        if session is None:
            return False
        self._evict(endpoint, session, "too many sessions from its address")
        return True

    def _evict(self, endpoint: Endpoint, session: Session, why: str) -> None:
        """End a detached session before its resume window is over (accounted for now, and
        no longer resumable: it is as good as ended)."""
        endpoint.detached.pop(session.id, None)
        endpoint.addresses.uncount(session.id)
        remember_ended(self.ended, session.id, time.monotonic())
        log.info("detached session %s ended early: %s", session.id, why, extra=session.log_fields)

        async def end() -> None:
            await self.teardown.turn()
            if session.state is SessionState.DETACHED:
                reason = f"resume slot freed: {why}"
                await self.end_session(endpoint, session, CloseCode.POLICY, reason)

        self.spawn(end())

    def expire_later(self, endpoint: Endpoint, session: Session, code: int, reason: str) -> None:
        """End the (detached) session when its resume window is over, unless resumed."""
        session.expiry = asyncio.get_running_loop().call_later(
            endpoint.settings.resume_window, self._expire, endpoint, session, code, reason
        )

    def _expire(self, endpoint: Endpoint, session: Session, code: int, reason: str) -> None:
        if session.state is not SessionState.DETACHED:
            return

        async def end() -> None:
            await self.teardown.turn()
            if session.state is SessionState.DETACHED:  # not resumed meanwhile
                await self.end_session(
                    endpoint, session, code, f"{reason} (resume window expired)".strip()
                )

        self.spawn(end())

    async def end_session(
        self, endpoint: Endpoint, session: Session, code: int, reason: str
    ) -> None:
        """The session is over for good: tables, cluster, store, events."""
        if session.state is SessionState.CLOSED:
            return  # ended already (e.g. its endpoint went away while it was being ended)
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        transition(session, SessionState.CLOSED)
        self.metrics.bytes_out_closed += session.counters.bytes_out  # same step: monotonic
        session.counters.bytes_out = 0
        self.unregister(endpoint, session)
        if endpoint.settings.session_tracking:
            remember_ended(self.ended, session.id, time.monotonic())
        session.fail_pending("session closed before replying")
        if not self.closing:
            self.persistence.forget(session)  # before anything awaits: no resume can load it
        if endpoint.settings.session_tracking:
            await self.unreachable(session)
        if not self.closing:
            # Hand the component what the client sent before it left, then the disconnect
            # event.
            event = None
            if endpoint.settings.session_events and endpoint.handler is not None:
                body = json.dumps(
                    {"session_id": session.id, "code": code, "reason": reason}
                ).encode()
                event = BrokerMessage(SESSION_DISCONNECTED, body, session.id)
            await session.finish_inbound(
                event, endpoint.settings.handler_timeout + EVENT_QUEUE_WAIT
            )
        session.cancel_tasks()
        log.debug("session %s closed (%s %s)", session.id, code, reason, extra=session.log_fields)


def offer_detached_event(endpoint: Endpoint, session: Session, code: int, reason: str) -> None:
    """Tell the endpoint's component (if it wants session events) that the session lost its
    connection and waits for a resume: queued behind what its client sent, so the component
    sees them first. Also when a resuming connection takes the session over before the old
    one was seen to drop, so that a `ws.session.resumed` always follows a detach."""
    settings = endpoint.settings
    if settings.session_events and endpoint.handler is not None:
        body = json.dumps(
            {
                "session_id": session.id,
                "code": code,
                "reason": reason,
                "resume_window_sec": settings.resume_window,
            }
        ).encode()
        session.offer_inbound(BrokerMessage(SESSION_DETACHED, body, session.id), None)
