"""Server mode: listeners, endpoints, sessions and routing (README: "Server mode", "Routing").

* A `Listener` is one listening socket (`websockets` asyncio server); several endpoints share
  it by HTTP path.
* An `Endpoint` belongs to one (component, link name) pair.
* The `ServerHub` owns every endpoint and session of this provider instance and carries out
  routing for `consumer.publish` / `consumer.request` (routing.py decides the targets).
* What a client's frame asks for is decided in inbound.py; the hub carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from wasmcloud_provider_sdk import (
    BrokerMessage,
    CodecError,
    Err,
    Ok,
    TransportError,
)

from . import frames, inbound
from .admission import at_address_cap
from .auth import Identity
from .closecodes import CloseCode
from .errors import EndpointConflict, FrameError, NoSuchSession
from .frames import MessageTemplate
from .history import ResumeRequest, new_resume_token, parse_resume
from .ids import looks_like_session_id, new_reply_token, new_session_id
from .lifecycle import (
    MOVING,
    SessionRecord,
    SessionState,
    may_resume,
    replay_for,
    transition,
)
from .listener import Listener as GenericListener
from .listener import remote_addr as _remote_addr
from .listener import remote_ip as _remote_ip
from .listener import wants_msgpack as _wants_msgpack
from .metrics import Metrics
from .moves import MOVE_TIMEOUT, MOVED_MEMORY, SessionMove
from .pacing import Pacer
from .ratelimit import ConnectionRateLimiter, SessionLimiter
from .routing import FanOut, RoutingTable, ToSession, may_reach
from .sessions import (
    Session,
    SessionInfo,
)
from .settings import ServerSettings
from .topics import IndexFull
from .wsadapter import abort, is_closing
from .wsadapter import close_info as _close_info
from .wsadapter import receive as _receive

if TYPE_CHECKING:
    from .jsstore import HistoryStore

log = logging.getLogger(__name__)

PairKey = tuple[str, str]  # (component id, link name)
#: Calls `handle-message` on the endpoint's component; returns its Ok/Err, raises
#: `TransportError` when the component cannot be called (`NotServedError`: nobody serves it;
#: `LatticeUnavailable`: no NATS connection; `InvocationTimeout`; otherwise e.g. a trap).
Handler = Callable[[BrokerMessage], Awaitable[Ok | Err]]

SESSION_CONNECTED = "ws.session.connected"
SESSION_DISCONNECTED = "ws.session.disconnected"
SESSION_RESUMED = "ws.session.resumed"
SESSION_DETACHED = "ws.session.detached"
#: Close code for a connection whose session a newer connection resumed.
SHUTDOWN_FLUSH = 0.06
#: Session events (connected, detached, resumed, disconnected) in flight to an endpoint's
#: component at once; the rest wait their turn, in order per session.
EVENT_CONCURRENCY = 16
#: Session teardowns (a connection gone, a resume window over) per event-loop iteration.
TEARDOWNS_PER_TICK = 8
#: How long a session's last event may wait for its turn (on top of HANDLER_TIMEOUT_SEC).
EVENT_QUEUE_WAIT = 120.0
SHUTDOWN_CLOSE_WAIT = 0.06
SHUTDOWN_STORE_WAIT = 0.04


#: Finds a session this instance does not hold and starts moving it here (from the instance
#: that holds it, else from the store): the session id, the resume request, the endpoint and
#: identity of the client.
FetchMove = Callable[[str, ResumeRequest, "PairKey", str | None], Awaitable[SessionMove | None]]
#: Forwards a targeted publish / request to the instance holding a session now.
ForwardPublish = Callable[[str, BrokerMessage], Awaitable[Ok | Err]]
ForwardRequest = Callable[[str, str, bytes, int], Awaitable[Ok | Err]]
#: How long, and how many, ids of sessions that ended here are remembered, so a publish to
#: one is refused at once ("no such session") without asking the other instances, and a
#: closed session is never moved in again from the store.
ENDED_MEMORY = 600.0
ENDED_MAX = 20_000


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
    #: Session events being delivered to the component at once (see `ServerHub._deliver`).
    event_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(EVENT_CONCURRENCY)
    )
    #: Sessions per client address (connected or detached), for MAX_SESSIONS_PER_IP, and
    #: the address each counted session was counted under.
    per_ip: dict[str, int] = field(default_factory=dict)
    ip_of: dict[str, str] = field(default_factory=dict)

    @property
    def live_sessions(self) -> int:
        """Sessions with a connected client."""
        return len(self.sessions) - len(self.detached)

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


#: The listeners of this hub's endpoints.
Listener = GenericListener[Endpoint]


class ServerHub:
    """Every endpoint, listener and session of this instance; carries out routes and frames."""

    def __init__(self, routes: RoutingTable[Session, Endpoint, Any] | None = None) -> None:
        #: Who a subject names (shared with the provider, which adds its client-mode
        #: connections): the endpoints, tracked sessions, topics and ended ids below are the
        #: table's own.
        self.routes: RoutingTable[Session, Endpoint, Any] = (
            routes if routes is not None else RoutingTable()
        )
        self.endpoints = self.routes.endpoints
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.sessions = self.routes.sessions  # tracked (addressable) sessions
        self.topics = self.routes.topics
        self._closing = False
        self.metrics = Metrics()
        self.metrics.gauges["wsp_sessions_open"] = lambda: sum(
            1
            for e in self.endpoints.values()
            for s in e.sessions.values()
            if s.state is SessionState.OPEN
        )
        self.metrics.gauges["wsp_send_queue_frames"] = lambda: sum(
            s.queued_out for e in self.endpoints.values() for s in e.sessions.values()
        )
        self.metrics.gauges["wsp_endpoints"] = lambda: len(self.endpoints)
        self.metrics.bytes_out_live = lambda: sum(
            s.counters.bytes_out for e in self.endpoints.values() for s in e.sessions.values()
        )
        #: Called when a tracked session opens / ends (scale-out makes it reachable then).
        self.on_session_open: Callable[[Session], Awaitable[None]] | None = None
        self.on_session_close: Callable[[Session], Awaitable[None]] | None = None
        #: Session resume across processes: the JetStream store (None: in memory only) and
        #: how to find a session held elsewhere (the app wires the cluster and the store).
        self.store: HistoryStore | None = None
        self.fetch_move: FetchMove | None = None
        self.forward_publish: ForwardPublish | None = None
        self.forward_request: ForwardRequest | None = None
        #: Requests made here to sessions that moved out: the answer comes back via the
        #: cluster (`resolve_moved_request`). Token -> (session id, future).
        self.moved_requests: dict[str, tuple[str, asyncio.Future[BrokerMessage]]] = {}
        #: Sessions that moved out of this instance: id -> when.
        self.moved_out: dict[str, float] = {}
        #: Sessions that ended here for good: id -> when (oldest first).
        self.ended = self.routes.ended
        #: Session teardowns (detach, end) per loop iteration: a mass disconnect is spread
        #: out so that live sessions keep being served in between.
        self._teardown = Pacer(TEARDOWNS_PER_TICK)
        #: How a moved-in session's client answers a request made on its old instance.
        self.answer_elsewhere: Callable[[str, str, BrokerMessage], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresh: asyncio.Task[None] | None = None
        self.metrics.gauges["wsp_sessions_detached"] = lambda: sum(
            1 for s in self.sessions.values() if s.state is SessionState.DETACHED
        )
        #: Extra readiness condition (the app: lattice NATS connected).
        self.readiness_check: Callable[[], tuple[bool, str]] | None = None

    def readiness(self) -> tuple[bool, str]:
        """Ready to take clients? (`/readyz`: not while shutting down, nor while the provider
        is not connected to its lattice, so a load balancer sends clients elsewhere.)"""
        if self._closing:
            return False, "shutting down"
        check = self.readiness_check
        if check is not None:
            return check()
        return True, "ready"

    def holds(self, session_id: str) -> bool:
        """Is this (tracked) session held by this instance?"""
        return session_id in self.sessions

    def ended_here(self, session_id: str) -> bool:
        """Did this session end on this instance (within `ENDED_MEMORY`)? Session ids are
        never reused and an ended session cannot be resumed: it is gone everywhere."""
        return session_id in self.ended

    def _remember_ended(self, session_id: str) -> None:
        now = time.monotonic()
        ended = self.ended
        while ended:
            oldest, at = next(iter(ended.items()))
            if now - at < ENDED_MEMORY and len(ended) < ENDED_MAX:
                break
            del ended[oldest]
        ended[session_id] = now

    # --- endpoints --------------------------------------------------------------------------

    async def add_endpoint(
        self, key: PairKey, settings: ServerSettings, handler: Handler | None
    ) -> Endpoint:
        """Create (or replace) the endpoint of `key`; raises EndpointConflict or OSError.

        Everything that can fail (address conflict, binding the port) is done before the old
        endpoint is touched, so a failed update leaves the working endpoint as it was.
        """
        existing = self.endpoints.get(key)
        if existing is not None and existing.settings == settings:
            existing.handler = handler
            return existing
        listener = self.listeners.get(settings.address)
        if (
            listener is not None
            and listener.tls != settings.tls
            and any(e is not existing for e in listener.endpoints.values())
        ):
            raise EndpointConflict(
                f"{settings.host}:{settings.port} is shared with other endpoints that use "
                "different TLS settings (TLS_CERT/TLS_KEY must match on one address)"
            )
        if listener is not None and listener.tls != settings.tls:
            # The only endpoint on this address changes its TLS: rebind below.
            await self.remove_endpoint(key, CloseCode.GOING_AWAY, "endpoint reconfigured")
            existing = None
            listener = self.listeners.get(settings.address)
        if listener is not None:
            other = listener.endpoints.get(settings.path)
            if other is not None and other is not existing:
                raise EndpointConflict(
                    f"{settings.host}:{settings.port}{settings.path} is already served for "
                    f"component {other.key[0]!r} (link {other.key[1]!r})"
                )
        else:
            listener = Listener(self, settings.host, settings.port)
            await listener.start(settings.tls)
            self.listeners[settings.address] = listener
        endpoint = Endpoint(key, settings, handler)
        if self.store is not None and settings.resumable and settings.resume_persist:
            try:
                await self.store.ensure(settings.resume_window, settings.resume_history_messages)
                endpoint.persist = True
                self._start_refresh()
            except Exception as exc:
                log.warning(
                    "session resume for %s (link %s) stays in this process: JetStream "
                    "refused the history stream or bucket (%s)",
                    key[0],
                    key[1],
                    exc,
                )
        # The new endpoint takes the path before the old one lets go of its sessions, so a
        # client that reconnects during an update never finds the path unserved.
        if existing is not None:
            self.endpoints.pop(key, None)
            self._unmap(existing)
        listener.endpoints[settings.path] = endpoint
        self.endpoints[key] = endpoint
        if existing is not None:
            await self._retire(existing, CloseCode.GOING_AWAY, "endpoint reconfigured", listener)
        log.info(
            "server endpoint ws://%s:%d%s for component %s (link %s)",
            settings.host,
            listener.bound_port,
            settings.path,
            key[0],
            key[1],
        )
        return endpoint

    def set_handler(self, key: PairKey, handler: Handler | None) -> None:
        """Attach or detach the component handler of an endpoint."""
        endpoint = self.endpoints.get(key)
        if endpoint is not None:
            endpoint.handler = handler

    async def remove_endpoint(
        self, key: PairKey, code: int, reason: str, keep: Listener | None = None
    ) -> None:
        """Close the endpoint's sessions with `code` and stop serving its path (its listener
        closes with its last endpoint, unless it is `keep`)."""
        endpoint = self.endpoints.pop(key, None)
        if endpoint is None:
            return
        self._unmap(endpoint)
        await self._retire(endpoint, code, reason, keep)

    def _unmap(self, endpoint: Endpoint) -> None:
        """Stop routing new connections to `endpoint` (its path serves nothing, or another)."""
        listener = self.listeners.get(endpoint.settings.address)
        if listener is not None and listener.endpoints.get(endpoint.settings.path) is endpoint:
            del listener.endpoints[endpoint.settings.path]

    async def _retire(
        self, endpoint: Endpoint, code: int, reason: str, keep: Listener | None
    ) -> None:
        """Close the sessions of an unmapped endpoint, and its listener if nothing else is on it
        (unless it is `keep`)."""
        key = endpoint.key
        listener = self.listeners.get(endpoint.settings.address)
        sessions = list(endpoint.sessions.values())
        await self._close_sessions(sessions, code, reason)
        # Detached sessions of an endpoint that is gone cannot be resumed here: end them now
        # (a later resume starts a new session on whatever endpoint serves the path then).
        detached = [x for x in sessions if x.state is SessionState.DETACHED]
        await asyncio.gather(*(self._end_session(endpoint, x, code, reason) for x in detached))
        if listener is not None and listener is not keep and not listener.endpoints:
            del self.listeners[endpoint.settings.address]
            await listener.close()
        log.info("server endpoint of %s (link %s) removed", key[0], key[1])

    def bound_port(self, key: PairKey) -> int | None:
        """The port an endpoint actually listens on (None if it has no endpoint)."""
        endpoint = self.endpoints.get(key)
        if endpoint is None:
            return None
        return self.listeners[endpoint.settings.address].bound_port

    async def _close_sessions(self, sessions: list[Session], code: int, reason: str) -> None:
        if not sessions:
            return
        await asyncio.gather(*(s.flush(SHUTDOWN_FLUSH) for s in sessions))
        for session in sessions:
            session.close(code, reason)
        await asyncio.gather(*(self._wait_closed(s) for s in sessions), return_exceptions=True)

    @staticmethod
    async def _wait_closed(session: Session, timeout: float = 0.2) -> None:
        ws = session.ws
        if ws is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), timeout)

    async def close(self) -> None:
        """Graceful shutdown: stop accepting, flush, close every session with 1001 (a session
        of an endpoint that offers resume stays resumable: its state is in the store)."""
        self._closing = True
        if self._refresh is not None:
            self._refresh.cancel()
        listeners = list(self.listeners.values())
        for listener in listeners:
            listener.stop_accepting()
        sessions = [s for e in self.endpoints.values() for s in e.sessions.values()]
        for session in sessions:
            session.resumable = True
        attached = [s for s in sessions if s.state is SessionState.OPEN]
        if attached:
            await asyncio.gather(*(s.flush(SHUTDOWN_FLUSH) for s in attached))
            for session in attached:
                session.close(CloseCode.GOING_AWAY, "server shutting down")
            await asyncio.wait(
                [asyncio.ensure_future(self._wait_closed(s, SHUTDOWN_CLOSE_WAIT)) for s in attached]
            )
        for session in sessions:
            if session.expiry is not None:
                session.expiry.cancel()
            session.cancel_tasks()
            ws = session.ws
            if ws is not None and not is_closing(ws):
                abort(ws)  # it did not answer our close in time
        if self.store is not None:
            await self.store.flush(SHUTDOWN_STORE_WAIT)
        self.endpoints.clear()
        self.listeners.clear()
        await asyncio.gather(*(listener.close() for listener in listeners))

    # --- sessions ---------------------------------------------------------------------------

    def _new_session(
        self,
        endpoint: Endpoint,
        ws: ServerConnection | None,
        session_id: str,
        binary: bool,
        state: SessionState = SessionState.OPEN,
    ) -> Session:
        settings = endpoint.settings
        session = Session(
            id=session_id,
            ws=ws,
            state=state,
            component_id=endpoint.key[0],
            link_name=endpoint.key[1],
            remote_addr=_remote_addr(ws) if ws is not None else "",
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
            session.persist = endpoint.persist and self.store is not None
        return session

    async def _register(self, endpoint: Endpoint, session: Session) -> None:
        """Make a session routable here (and, with scale-out, from the other instances)."""
        endpoint.sessions[session.id] = session
        self.ended.pop(session.id, None)  # alive here (moved back in)
        ip = session.remote_addr.rpartition(":")[0].strip("[]")
        if ip and session.id not in endpoint.ip_of:
            endpoint.ip_of[session.id] = ip
            endpoint.per_ip[ip] = endpoint.per_ip.get(ip, 0) + 1
        if not endpoint.settings.session_tracking:
            return
        self.sessions[session.id] = session
        for pattern in list(session.subscriptions):
            try:
                self.topics.add(pattern, session.id)
            except IndexFull as exc:  # a session moved in: keep it, not this
                session.subscriptions.discard(pattern)
                log.warning("subscription %r dropped: %s", pattern, exc, extra=session.log_fields)
        if self.on_session_open is not None:
            try:
                await self.on_session_open(session)
            except Exception:
                log.exception("session %s: could not make it reachable cluster-wide", session.id)

    def _unregister(self, endpoint: Endpoint, session: Session) -> None:
        endpoint.sessions.pop(session.id, None)
        endpoint.detached.pop(session.id, None)
        self._uncount(endpoint, session.id)
        if self.sessions.get(session.id) is session:
            self.sessions.pop(session.id, None)
        self.topics.remove_all(session.id, session.subscriptions)

    @staticmethod
    def _uncount(endpoint: Endpoint, session_id: str) -> None:
        ip = endpoint.ip_of.pop(session_id, None)
        if ip is not None:
            left = endpoint.per_ip.get(ip, 1) - 1
            if left > 0:
                endpoint.per_ip[ip] = left
            else:
                endpoint.per_ip.pop(ip, None)

    def _keep_detached(self, endpoint: Endpoint, session: Session) -> None:
        """Count a session as detached; past MAX_DETACHED_SESSIONS the oldest ends now."""
        endpoint.detached[session.id] = session
        bound = endpoint.settings.max_detached_sessions
        while len(endpoint.detached) > bound:
            oldest = next(iter(endpoint.detached.values()))
            if oldest.state is SessionState.DETACHED:
                self._evict(endpoint, oldest, "too many detached sessions")
            else:  # being moved or resumed: no longer waiting here
                endpoint.detached.pop(oldest.id, None)

    def room_for(self, endpoint: Endpoint, ip: str) -> bool:
        """May one more session from `ip` open on `endpoint`? At MAX_SESSIONS_PER_IP the
        address's oldest detached session is ended to make room, if it has one."""
        if not at_address_cap(endpoint.settings, ip, endpoint.per_ip.get(ip, 0)):
            return True
        return self.make_room(endpoint, ip)

    def make_room(self, endpoint: Endpoint, ip: str) -> bool:
        """`ip` is at its session cap: end its oldest detached session (its own resume slot
        makes room for its new connection). False when all its sessions are connected."""
        for sid, session in endpoint.detached.items():
            if endpoint.ip_of.get(sid) == ip and session.state is SessionState.DETACHED:
                self._evict(endpoint, session, "too many sessions from its address")
                return True
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _evict(self, endpoint: Endpoint, session: Session, why: str) -> None:
        """End a detached session before its resume window is over (accounted for now, and
        no longer resumable: it is as good as ended)."""
        endpoint.detached.pop(session.id, None)
        self._uncount(endpoint, session.id)
        self._remember_ended(session.id)
        log.info("detached session %s ended early: %s", session.id, why, extra=session.log_fields)

        async def end() -> None:
            await self._teardown.turn()
            if session.state is SessionState.DETACHED:
                reason = f"resume slot freed: {why}"
                await self._end_session(endpoint, session, CloseCode.POLICY, reason)

        self._spawn(end())

    @staticmethod
    def _record_of(session: Session) -> SessionRecord:
        """What the store keeps and a move carries of a session."""
        return SessionRecord(
            session_id=session.id,
            component_id=session.component_id,
            link_name=session.link_name,
            subscriptions=tuple(sorted(session.subscriptions)),
            seq=session.seq,
            resume_hash=session.resume_hash,
            identity=session.identity_key,
            connected_at=session.connected_at,
            detached=session.state is not SessionState.OPEN,
        )

    def _start_refresh(self) -> None:
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        """Rewrite the stored state of connected sessions before its TTL (the resume window)
        ends, so that a session connected for longer can still be resumed after a crash."""
        store = self.store
        assert store is not None
        while True:
            await asyncio.sleep(store.refresh_interval)  # a period, not a synchronisation
            for n, session in enumerate(list(self.sessions.values())):
                if session.persist and session.state is SessionState.OPEN:
                    await store.write_state(self._record_of(session))
                if n % 500 == 499:
                    await asyncio.sleep(0)  # let traffic through between batches

    async def move_in_orphan(self, move: SessionMove) -> bool:
        """Move in a session whose holder is gone (crash, restart), detached: publishes to it
        are kept until its client resumes (with the token it has) or the window ends."""
        record = move.record
        sid = record.session_id
        if sid in self.sessions:
            return True
        endpoint = self.endpoints.get(record.key)
        if endpoint is None or not looks_like_session_id(sid) or not endpoint.persist:
            return False
        session = self._session_from(endpoint, move)
        session.resume_hash = record.resume_hash  # the token its client has still works
        session.identity_key = record.identity
        await self._register(endpoint, session)
        session.start(lambda s, m, i: self._deliver(endpoint, s, m, i))
        session.stop_writer()  # detached: no client to write to
        self._save_state(session)
        self._keep_detached(endpoint, session)
        session.expiry = asyncio.get_running_loop().call_later(
            endpoint.settings.resume_window,
            self._expire,
            endpoint,
            session,
            CloseCode.ABNORMAL,
            "moved in from the store",
        )
        log.info("session %s moved in from the store (its instance is gone): kept", sid)
        return True

    def _save_state(self, session: Session) -> None:
        if session.persist and self.store is not None:
            self.store.save_state(self._record_of(session))

    async def run_session(
        self, endpoint: Endpoint, ws: ServerConnection, identity: Identity | None = None
    ) -> None:
        """Serve one connection from handshake to close: a new session, or a resumed one."""
        settings = endpoint.settings
        binary = _wants_msgpack(ws)
        identity_key = identity.subject if identity is not None else None
        asked: ResumeRequest | str | None = None
        if settings.resumable and ws.request is not None:
            asked = parse_resume(ws.request.path)
        session: Session | None = None
        replay: list[tuple[int, MessageTemplate]] | None = None
        if isinstance(asked, ResumeRequest):
            try:
                found = await self._find_for_resume(endpoint, asked, identity_key)
            except Exception:  # bad stored or handed-over data: a new session, said so
                log.exception("resume of %s failed", asked.session_id)
                found = None
            if found is not None:
                session, replay = found
        elif isinstance(asked, str):
            log.info("resume refused on %s: %s", settings.path, asked)
        resumed = session is not None
        moved_in: list[MessageTemplate] = []
        # Admitted as a resume (which adds no session), but it is not one: a new session must
        # pass the capacity checks a new client passes.
        if (
            session is None
            and isinstance(asked, ResumeRequest)
            and (
                endpoint.live_sessions >= settings.max_sessions
                or not self.room_for(endpoint, _remote_ip(ws))
            )
        ):
            await ws.close(CloseCode.TRY_AGAIN, "no room for a new session, try again later")
            return
        if session is None:
            session = self._new_session(endpoint, ws, new_session_id(), binary)
            session.identity_key = identity_key
            self.metrics.connects += 1
        elif self.sessions.get(session.id) is session:
            session.attach(ws, binary, _remote_addr(ws))  # resumed here
            endpoint.detached.pop(session.id, None)
        else:
            session.ws, session.binary = ws, binary  # moved in from elsewhere
            session.remote_addr = _remote_addr(ws)
            session.detached_at = None
            claim, session.pending_claim = session.pending_claim, None
            if claim is not None:
                # From a live instance: reachable here first (what arrives meanwhile is kept),
                # then claimed; the client learns nothing (no new token) before that worked.
                claimed = await self._move_in(endpoint, session, claim)
                if claimed is None:
                    await ws.close(CloseCode.TRY_AGAIN, "session is moving, resume again")
                    return
                moved_in = claimed
            transition(session, SessionState.OPEN)
        fresh = session.id not in endpoint.sessions
        token = None
        if settings.resumable:
            token, session.resume_hash = new_resume_token(session.id)
        # The welcome, then the replay, go out before anything else can be queued (no await
        # in between): the client sees its session id, then what it missed, then live traffic.
        if settings.welcome:
            session.send(
                frames.encode_welcome(
                    session.id,
                    session.binary,
                    seq=session.seq,
                    resume_token=token,
                    resume_window=settings.resume_window,
                    resumed=resumed if asked is not None else None,
                    recovered=replay is not None,
                )
            )
        for seq, message in replay or ():
            session.send(message.render(seq, session.binary))
        for message in moved_in:  # what reached the session while it moved, in order
            self._send_message(session, message)
        if asked is not None:
            outcome = "recovered" if replay is not None else ("resumed" if resumed else "new")
            self.metrics.resumes[outcome] += 1
        if fresh:
            await self._register(endpoint, session)
            session.start(lambda s, m, i: self._deliver(endpoint, s, m, i))
        self._save_state(session)
        log.debug(
            "session %s %s from %s on %s",
            session.id,
            "resumed" if resumed else "opened",
            session.remote_addr,
            settings.path,
            extra=session.log_fields,
        )
        try:
            if settings.session_events and endpoint.handler is not None:
                event: dict[str, Any] = {
                    "session_id": session.id,
                    "remote_addr": session.remote_addr,
                    "identity": identity.to_json() if identity is not None else None,
                }
                subject = SESSION_CONNECTED
                if resumed:
                    subject = SESSION_RESUMED
                    event["recovered"] = replay is not None
                body = json.dumps(event).encode()
                await session.put_inbound(BrokerMessage(subject, body, session.id), None)
            await self._read_loop(endpoint, session, ws)
        finally:
            await self._connection_ended(endpoint, session, ws)

    async def _find_for_resume(
        self, endpoint: Endpoint, req: ResumeRequest, identity_key: str | None
    ) -> tuple[Session, list[tuple[int, MessageTemplate]] | None] | None:
        """The session a resume request names, with what to replay (None: the gap cannot be
        covered); None when there is no such session for this client (a new one starts)."""
        now = time.monotonic()
        if self.ended_here(req.session_id):
            log.info("resume refused: session %s has ended", req.session_id)
            return None
        session = self.sessions.get(req.session_id)
        if session is not None:
            if session.state is not SessionState.OPEN and (
                session.state is not SessionState.DETACHED
            ):
                log.info("resume refused: session %s is closing or moving", req.session_id)
                return None
            if not may_resume(self._record_of(session), req, endpoint.key, identity_key):
                log.info("resume refused: token does not match session %s", req.session_id)
                return None
            if session.state is SessionState.OPEN:
                # The client is back before we noticed it had gone: the new connection wins.
                old = session.ws
                session.detach()
                if old is not None:
                    asyncio.get_running_loop().create_task(
                        old.close(
                            CloseCode.RESUMED_ELSEWHERE, "session resumed on another connection"
                        )
                    )
            return session, replay_for(session.history, req.last_seq, session.seq, now)
        if self.fetch_move is None:
            return None
        move = await self.fetch_move(req.session_id, req, endpoint.key, identity_key)
        if move is None:
            return None
        return self._rebuild(endpoint, move, req, identity_key)

    def _rebuild(
        self,
        endpoint: Endpoint,
        move: SessionMove,
        req: ResumeRequest,
        identity_key: str | None,
    ) -> tuple[Session, list[tuple[int, MessageTemplate]] | None] | None:
        """A session moving in from another instance or from the store."""
        if not may_resume(move.record, req, endpoint.key, identity_key):
            log.info("resume refused: token does not match session %s", req.session_id)
            return None
        session = self._session_from(endpoint, move)
        session.identity_key = identity_key
        session.pending_claim = move.claim
        session.moved_in = move.claim is not None
        return session, replay_for(session.history, req.last_seq, session.seq, time.monotonic())

    def _session_from(self, endpoint: Endpoint, move: SessionMove) -> Session:
        """A detached session rebuilt from the record and history of a move."""
        record = move.record
        session = self._new_session(endpoint, None, record.session_id, False, SessionState.DETACHED)
        session.connected_at = record.connected_at
        session.subscriptions = set(record.subscriptions)
        session.seq = move.seq
        history = session.ensure_history()
        if history is not None:
            history.restore(move.history, move.dropped_upto, time.monotonic())
        return session

    async def _read_loop(self, endpoint: Endpoint, session: Session, ws: ServerConnection) -> None:
        idle = endpoint.settings.idle_timeout
        while True:
            if session.ws is not ws:
                return  # another connection resumed this session
            try:
                if idle is not None:
                    data = await asyncio.wait_for(_receive(ws), idle)
                else:
                    data = await _receive(ws)
            except TimeoutError:
                session.close(CloseCode.NORMAL, "idle timeout")
                await self._wait_closed(session)
                return
            except ConnectionClosed:
                return
            if data is None:
                session.counters.messages_in += 1
                self._send_error(session, inbound.NOT_UTF8.code, inbound.NOT_UTF8.message)
                continue
            if isinstance(data, str):
                await self._on_frame(endpoint, session, data.encode(), False)
            else:
                await self._on_frame(endpoint, session, data, True)

    async def _on_frame(
        self, endpoint: Endpoint, session: Session, data: bytes, binary: bool
    ) -> None:
        """One frame from the client: counted, rate limited, decoded, then what `inbound`
        decides is carried out here."""
        session.counters.messages_in += 1
        session.counters.bytes_in += len(data)
        self.metrics.messages_in += 1
        self.metrics.bytes_in += len(data)
        limiter = session.limiter
        if limiter is not None and not limiter.allow(len(data), time.monotonic()):
            session.counters.rate_limited += 1
            self.metrics.rate_limited += 1
            refusal = inbound.rate_limited(limiter.strikes, endpoint.settings)
            if isinstance(refusal, inbound.CloseSession):
                log.info(
                    "session %s closed: rate limit exceeded %d times in a row",
                    session.id,
                    limiter.strikes,
                    extra=session.log_fields,
                )
                session.close(refusal.code, refusal.reason)
                return
            self._send_error(session, refusal.code, refusal.message, refusal.frame_id)
            return
        try:
            frame = frames.decode_frame(data, binary)
        except FrameError as exc:
            self._send_error(session, exc.code, exc.message, exc.frame_id)
            return
        action = inbound.decide(
            frame,
            session.id,
            session.subscriptions,
            session.pending_requests,
            endpoint.settings,
            moved_in=session.moved_in and self.answer_elsewhere is not None,
            has_handler=endpoint.handler is not None,
        )
        if type(action) is inbound.ToComponent:  # the hot path first
            if not session.offer_inbound(action.message, action.frame_id):
                # Keep reading (pongs and request answers must get through); tell the client
                # this message was not taken, rather than stalling the whole connection.
                refused = inbound.overloaded(endpoint.settings, action.frame_id)
                self._send_error(session, refused.code, refused.message, refused.frame_id)
        elif isinstance(action, inbound.AnswerRequest):
            pending = session.pending_requests.pop(action.token, None)
            if pending is not None and not pending.done():
                pending.set_result(action.answer)
        elif isinstance(action, inbound.AnswerElsewhere):
            if self.answer_elsewhere is not None:
                await self.answer_elsewhere(session.id, action.token, action.answer)
        elif isinstance(action, inbound.AddSubscription):
            try:
                self.topics.add(action.pattern, session.id)
            except IndexFull as exc:
                log.warning("subscription refused: %s", exc, extra=session.log_fields)
                refused = inbound.index_full(str(exc), action.frame_id)
                self._send_error(session, refused.code, refused.message, refused.frame_id)
                return
            session.subscriptions.add(action.pattern)
        elif isinstance(action, inbound.RemoveSubscription):
            session.subscriptions.discard(action.pattern)
            self.topics.remove(action.pattern, session.id)
        elif isinstance(action, inbound.SendError):
            self._send_error(session, action.code, action.message, action.frame_id)

    def _send_error(
        self, session: Session, code: str, message: str, frame_id: frames.FrameId | None = None
    ) -> None:
        session.counters.errors_sent += 1
        self.metrics.errors[code] += 1
        session.send(frames.encode_error(code, message, frame_id, session.binary))

    async def _deliver(
        self,
        endpoint: Endpoint,
        session: Session,
        msg: BrokerMessage,
        frame_id: frames.FrameId | None,
    ) -> None:
        handler = endpoint.handler
        if handler is None:
            return
        is_event = msg.subject.startswith(frames.RESERVED_PREFIX)
        try:
            if is_event:
                # Paced: thousands of sessions dropping at once must not become thousands of
                # simultaneous calls that a component (one call at a time per instance)
                # cannot answer in time. Waiting for a slot does not count toward the
                # handler timeout.
                async with endpoint.event_slots:
                    started = time.monotonic()
                    async with asyncio.timeout(endpoint.settings.handler_timeout):
                        result = await handler(msg)
            else:
                started = time.monotonic()
                # asyncio.timeout, not wait_for: no extra task per message (bench --profile).
                async with asyncio.timeout(endpoint.settings.handler_timeout):
                    result = await handler(msg)
            self.metrics.handler_latency.observe(time.monotonic() - started)
        except (TransportError, CodecError, TimeoutError) as exc:
            code, text = inbound.delivery_failure(exc, endpoint.settings.handler_timeout)
            self.metrics.delivery_failures[code] += 1
            log.warning(
                "delivery to %s failed (%s): %s",
                endpoint.component_id,
                code,
                str(exc) or type(exc).__name__,
                extra=session.log_fields,
            )
            if not is_event:
                self._send_error(session, code, text, frame_id)
            return
        if isinstance(result, Ok):
            if frame_id is not None and not is_event:
                session.send(frames.encode_ack(frame_id, session.binary))
            return
        if isinstance(result, Err):
            log.info(
                "component %s returned Err for %s: %s",
                endpoint.component_id,
                msg.subject,
                result.message,
                extra=session.log_fields,
            )
            if not is_event:
                self._send_error(session, frames.HANDLER_ERROR, result.message, frame_id)

    async def _connection_ended(
        self, endpoint: Endpoint, session: Session, ws: ServerConnection
    ) -> None:
        """A connection ended: detach its session for a resume, or end it."""
        if session.ws is not ws:
            return  # a resuming connection took the session over
        await self._teardown.turn()  # thousands at once: spread over loop iterations
        if session.ws is not ws:
            return
        code, reason = _close_info(ws)
        self.metrics.disconnects[code] += 1
        settings = endpoint.settings
        keep = (
            settings.resumable
            and self.endpoints.get(endpoint.key) is endpoint
            and (session.resumable or (session.close_code is None and code != CloseCode.NORMAL))
        )
        if not keep:
            await self._end_session(endpoint, session, code, reason)
            return
        self.metrics.bytes_out_closed += session.counters.bytes_out
        session.counters.bytes_out = 0
        session.detach()
        self._save_state(session)
        if self._closing:
            return  # shutting down: the store keeps the session for another process
        self._keep_detached(endpoint, session)
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
        session.expiry = asyncio.get_running_loop().call_later(
            settings.resume_window, self._expire, endpoint, session, code, reason
        )
        log.debug(
            "session %s detached (%s %s): resumable for %gs",
            session.id,
            code,
            reason,
            settings.resume_window,
            extra=session.log_fields,
        )

    def _expire(self, endpoint: Endpoint, session: Session, code: int, reason: str) -> None:
        if session.state is not SessionState.DETACHED:
            return

        async def end() -> None:
            await self._teardown.turn()
            if session.state is SessionState.DETACHED:  # not resumed meanwhile
                await self._end_session(
                    endpoint, session, code, f"{reason} (resume window expired)".strip()
                )

        task = asyncio.get_running_loop().create_task(end())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_session(
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
        self._unregister(endpoint, session)
        if endpoint.settings.session_tracking:
            self._remember_ended(session.id)
        session.fail_pending("session closed before replying")
        if session.persist and self.store is not None and not self._closing:
            self.store.forget(session.id)  # before anything awaits: no resume can load it
        if endpoint.settings.session_tracking and self.on_session_close is not None:
            with contextlib.suppress(Exception):
                await self.on_session_close(session)
        if not self._closing:
            # Deliver what the client sent before it left, then the disconnect event.
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

    async def _move_in(
        self,
        endpoint: Endpoint,
        session: Session,
        claim: Callable[[asyncio.Event], Awaitable[list[MessageTemplate] | None]],
    ) -> list[MessageTemplate] | None:
        """The new holder: make the session reachable here (keeping what arrives), claim it
        from the old holder, and return what to deliver, in order: what reached the old
        holder meanwhile, then what reached this one (each fan-out message once). None: the
        old holder kept it (or is gone): the session is not held here."""
        transition(session, SessionState.MOVING_IN)
        session.moving_buffer = []
        # Messages the client sent before it left are still with the old holder: the
        # component gets them (and their events) before anything from this connection.
        session.inbound_gate = asyncio.Event()
        await self._register(endpoint, session)
        session.start(lambda s, m, i: self._deliver(endpoint, s, m, i))
        buffered = await claim(session.inbound_gate)
        own, session.moving_buffer = session.moving_buffer, []
        if buffered is None:
            log.warning("session %s: the move from another instance failed", session.id)
            transition(session, SessionState.CLOSED)
            self._unregister(endpoint, session)
            if self.on_session_close is not None:
                with contextlib.suppress(Exception):
                    await self.on_session_close(session)
            session.cancel_tasks()
            return None
        seen = {m.mid for m in buffered if m.mid is not None}
        return buffered + [m for m in own if m.mid is None or m.mid not in seen]

    def begin_move_out(
        self, req: ResumeRequest, key: PairKey, identity_key: str | None
    ) -> SessionMove | None:
        """Another instance resumes this session: check everything, then stop serving it here
        (no await: nothing can slip in between) until it claims it or gives up."""
        session = self.sessions.get(req.session_id)
        if session is None or session.state not in (SessionState.OPEN, SessionState.DETACHED):
            return None
        if not may_resume(self._record_of(session), req, key, identity_key):
            log.info("move refused: token does not match session %s", req.session_id)
            return None
        old = session.ws
        if session.state is SessionState.OPEN:
            session.detach()
        if old is not None:
            asyncio.get_running_loop().create_task(
                old.close(CloseCode.RESUMED_ELSEWHERE, "session resumed on another instance")
            )
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        history = session.history
        move = SessionMove(
            self._record_of(session),
            history.entries() if history is not None else [],
            history.dropped_upto if history is not None else session.seq,
            session.seq,
        )
        transition(session, SessionState.MOVING_OUT)
        session.moved = asyncio.Event()
        session.moving_buffer = []
        log.debug("session %s moving to another instance", session.id)
        return move

    async def finish_move_out(
        self,
        session_id: str,
        claimed: bool,
        max_bytes: int,
        on_drained: Callable[[], Awaitable[None]] | None = None,
    ) -> list[MessageTemplate] | None:
        """The old holder: the new holder claimed the session (give it up: return what came
        meanwhile), or did not in time, or what came does not fit one message to it (keep
        the session here, detached, as before: None)."""
        session = self.sessions.get(session_id)
        if session is None or session.state is not SessionState.MOVING_OUT:
            return None
        moved = session.moved
        endpoint = self.endpoints.get((session.component_id, session.link_name))
        if endpoint is None:  # the link went away meanwhile: the session ends
            transition(session, SessionState.CLOSED)
            self._unregister_everywhere(session)
            if self.on_session_close is not None:
                with contextlib.suppress(Exception):
                    await self.on_session_close(session)
            session.cancel_tasks()
            if moved is not None:
                moved.set()
            return None
        buffered = session.moving_buffer
        if not claimed or sum(m.size for m in buffered) > max_bytes:
            if claimed:
                log.warning(
                    "session %s: %d messages arrived during its move, more than one message "
                    "to the new instance holds: kept here (the client resumes again)",
                    session.id,
                    len(buffered),
                )
            transition(session, SessionState.DETACHED)
            session.moving_buffer = []
            for message in buffered:
                self._send_message(session, message)
            self._save_state(session)
            self._keep_detached(endpoint, session)
            session.expiry = asyncio.get_running_loop().call_later(
                endpoint.settings.resume_window,
                self._expire,
                endpoint,
                session,
                CloseCode.ABNORMAL,
                "",
            )
            if moved is not None:
                moved.set()
            return None
        # Give it up: unsubscribe first (sends arriving meanwhile wait for `moved`), then
        # leave the tables, then let the waiters follow the session to its new holder.
        if self.on_session_close is not None:
            with contextlib.suppress(Exception):
                await self.on_session_close(session)
        transition(session, SessionState.CLOSED)
        self._unregister(endpoint, session)
        self.moved_out[session.id] = time.monotonic()
        for token, future in session.pending_requests.items():
            self.moved_requests[token] = (session.id, future)  # answered from the new holder
        session.pending_requests.clear()
        if moved is not None:
            moved.set()

        async def wind_down() -> None:
            # What the client sent before it left still reaches the component, from here;
            # then the new holder may deliver what comes from the client's new connection.
            await session.finish_inbound(None, endpoint.settings.handler_timeout)
            session.cancel_tasks()
            if on_drained is not None:
                with contextlib.suppress(Exception):
                    await on_drained()

        task = asyncio.get_running_loop().create_task(wind_down())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.debug("session %s moved out to another instance", session.id)
        return buffered

    def _unregister_everywhere(self, session: Session) -> None:
        for endpoint in self.endpoints.values():
            if endpoint.sessions.get(session.id) is session:
                self._unregister(endpoint, session)
        if self.sessions.get(session.id) is session:
            self.sessions.pop(session.id, None)
            self.topics.remove_all(session.id, session.subscriptions)

    def recently_moved_out(self, session_id: str) -> bool:
        """Did the session move out of this instance in the last minute? (Sends that still
        reach it are forwarded to the new holder.)"""
        now = time.monotonic()
        for sid in [s for s, t in self.moved_out.items() if now - t > MOVED_MEMORY]:
            del self.moved_out[sid]
        return session_id in self.moved_out

    def resolve_moved_request(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A client answered, on its new instance, a request made here before it moved."""
        entry = self.moved_requests.get(token)
        if entry is not None and entry[0] == session_id and not entry[1].done():
            entry[1].set_result(answer)

    async def _wait_move_out(self, session: Session) -> bool:
        """A targeted send to a session moving out: wait for the move to end (moved or kept:
        `finish_move_out` always says so, within MOVE_TIMEOUT); True if it left."""
        moved = session.moved
        if moved is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), 2 * MOVE_TIMEOUT)
        return self.sessions.get(session.id) is not session

    # --- routing (README "Routing"): carrying out what `RoutingTable.route` decides -----------

    def _send_message(
        self, session: Session, message: MessageTemplate
    ) -> tuple[bool, asyncio.Future[None] | None]:
        """Give `session` the message with its next seq: (taken?, the store's append when the
        session's history is kept in JetStream — the frame waits for it)."""
        if session.state in MOVING:
            session.moving_buffer.append(message)  # delivered when the move is over
            return True, None
        persisted = None
        if session.persist and self.store is not None and session.accepts_messages:
            persisted = self.store.append(session.id, session.seq + 1, message)
        return session.deliver(message, persisted), persisted

    async def publish(
        self, component_id: str, msg: BrokerMessage, mid: str | None = None
    ) -> Ok | Err:
        """`consumer.publish` from `component_id` to this instance's server-mode sessions
        (routing rules 1 and 3). Returns once the message is queued for every target (and
        stored, where history is kept). `mid`: the id of a broadcast/topic publish (the same
        on every instance)."""
        target = self.routes.route(component_id, None, msg.subject)
        if isinstance(target, ToSession):
            return await self.publish_to_session(component_id, target, msg)
        if isinstance(target, FanOut):
            await self.fan_out(target.sessions, msg, mid)
            return Ok()
        return NoSuchSession.of(msg.subject.partition(".")[0])

    async def publish_to_session(
        self, component_id: str, target: ToSession[Session], msg: BrokerMessage
    ) -> Ok | Err:
        """Rule 1: `msg` to one session (queued, and stored where history is kept); a session
        moving to another instance is followed there."""
        session = target.session
        if session.state is SessionState.MOVING_OUT and await self._wait_move_out(session):
            # It moved to another instance: follow it.
            if self.forward_publish is None:
                return NoSuchSession.of(session.id)
            return await self.forward_publish(component_id, msg)
        if not session.accepts_messages:
            return NoSuchSession.of(session.id)
        taken, persisted = self._send_message(
            session, MessageTemplate(target.subject, msg.body, msg.reply_to)
        )
        if persisted is not None:
            await persisted
        if not taken:
            return NoSuchSession.of(session.id)
        self.metrics.messages_out += 1
        return Ok()

    async def fan_out(
        self, sessions: list[Session], msg: BrokerMessage, mid: str | None = None
    ) -> None:
        """Rule 3 (and the library's broadcast): `msg` to each of `sessions`, with its subject;
        returns once queued for each (and stored, where history is kept)."""
        # Encoded once per format (MessageTemplate), stamped with each session's seq.
        message = MessageTemplate(msg.subject, msg.body, msg.reply_to, mid)
        pending = []
        for session in sessions:
            _, persisted = self._send_message(session, message)
            if persisted is not None:
                pending.append(persisted)
        self.metrics.messages_out += len(sessions)
        if pending:
            await asyncio.gather(*pending)

    async def request(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` to one of this instance's server-mode sessions (rule 1)."""
        target = self.routes.route(component_id, None, subject)
        if isinstance(target, ToSession):
            return await self.request_session(component_id, target, subject, body, timeout_ms)
        if isinstance(target, FanOut):
            return Err(f"request needs a session id as subject (got {subject!r})")
        return NoSuchSession.of(subject.partition(".")[0])

    async def request_session(
        self,
        component_id: str,
        target: ToSession[Session],
        subject: str,
        body: bytes,
        timeout_ms: int,
    ) -> Ok | Err:
        """Send `target` a request with a fresh reply token and await the answer. (A detached
        session keeps the request; its client answers it after resuming.)"""
        session = target.session
        sid = session.id
        started = time.monotonic()
        if session.state is SessionState.MOVING_OUT and await self._wait_move_out(session):
            if self.forward_request is None:
                return NoSuchSession.of(sid)
            left = max(1, timeout_ms - int((time.monotonic() - started) * 1000))
            return await self.forward_request(component_id, subject, body, left)
        if not session.accepts_messages:
            return NoSuchSession.of(sid)
        token = new_reply_token()
        future: asyncio.Future[BrokerMessage] = asyncio.get_running_loop().create_future()
        session.pending_requests[token] = future
        try:
            taken, _ = self._send_message(session, MessageTemplate(target.subject, body, token))
            if not taken:
                return NoSuchSession.of(sid)
            try:
                reply = await asyncio.wait_for(future, timeout_ms / 1000)
            except TimeoutError:
                return Err(f"timed out after {timeout_ms} ms waiting for session {sid}")
            except ConnectionError as exc:
                return Err(f"session {sid}: {exc}")
            return Ok(reply)
        finally:
            session.pending_requests.pop(token, None)
            self.moved_requests.pop(token, None)

    async def send_to_session(self, session_id: str, msg: BrokerMessage) -> Ok | Err:
        """Library API: one session, no isolation check (the caller is the operator)."""
        target = self.routes.session(session_id, msg.subject)
        if not isinstance(target, ToSession) or not target.session.accepts_messages:
            return NoSuchSession.of(session_id)
        session = target.session
        taken, persisted = self._send_message(
            session, MessageTemplate(target.subject, msg.body, msg.reply_to)
        )
        if persisted is not None:
            await persisted
        return Ok() if taken else NoSuchSession.of(session_id)

    async def broadcast_all(self, msg: BrokerMessage) -> int:
        """Library API: every session of every endpoint; returns how many were sent to."""
        sessions = self.routes.everyone()
        await self.fan_out(sessions, msg)
        return len(sessions)

    def list_sessions(self, component_id: str | None = None) -> list[SessionInfo]:
        """Tracked sessions, optionally only those `component_id` may reach."""
        return [session.info() for session in self.routes.reachable_by(component_id)]

    def headers_for(self, connection: ServerConnection) -> Headers | None:
        """The upgrade request headers of a connection (for identity checks later)."""
        return connection.request.headers if connection.request is not None else None
