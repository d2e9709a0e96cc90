"""Server mode: listeners, endpoints, sessions and routing (DESIGN.md §3-§5).

* A `Listener` is one listening socket (`websockets` asyncio server); several endpoints share
  it by HTTP path.
* An `Endpoint` belongs to one (component, link name) pair.
* The `ServerHub` owns every endpoint and session of this provider instance and implements
  routing for `consumer.publish` / `consumer.request`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError, TooManyFragments
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from wasmcloud_provider_sdk import BrokerMessage, CodecError, Err, Ok, TransportError

from . import demo_page, frames
from .auth import BEARER_SUBPROTOCOL, Identity, Refused
from .metrics import Metrics
from .ratelimit import ConnectionRateLimiter, SessionLimiter
from .sessions import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    Session,
    SessionInfo,
    looks_like_session_id,
    new_reply_token,
    new_session_id,
)
from .settings import ConfigError, ServerSettings
from .tlsfiles import load_cert_chain_pem
from .topics import TopicIndex

log = logging.getLogger(__name__)

PairKey = tuple[str, str]  # (component id, link name)
#: Calls `handle-message` on the endpoint's component; returns its Ok/Err, raises
#: `TransportError` when the component cannot be called.
Handler = Callable[[BrokerMessage], Awaitable[Ok | Err]]

SUBPROTOCOL_JSON = "wasmcloud.messaging.v1"
SUBPROTOCOL_MSGPACK = "wasmcloud.messaging.v1.msgpack"
SESSION_CONNECTED = "ws.session.connected"
SESSION_DISCONNECTED = "ws.session.disconnected"
#: Bounded time to finish in-flight work on shutdown (the host kills us ~300 ms after asking).
SHUTDOWN_FLUSH = 0.1
#: How long to wait for a peer to answer our close frame before dropping the TCP connection.
CLOSE_TIMEOUT = 2.0


def server_tls_context(tls: tuple[str, str]) -> ssl.SSLContext:
    """A TLS 1.2+ server context from PEM texts; ConfigError names what is wrong."""
    cert, key = tls
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        load_cert_chain_pem(ctx, cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise ConfigError(
            "TLS_CERT",
            "<pem>",
            f"a PEM certificate chain with its matching TLS_KEY ({reason})",
        ) from None
    return ctx


class EndpointConflict(ValueError):
    """Another pair already serves this address and path."""


@dataclass(eq=False)
class Endpoint:
    """A server endpoint of one (component, link name) pair."""

    key: PairKey
    settings: ServerSettings
    handler: Handler | None
    sessions: dict[str, Session] = field(default_factory=dict)
    conn_limiter: ConnectionRateLimiter | None = None

    def __post_init__(self) -> None:
        if self.settings.connect_rate_limit:
            self.conn_limiter = ConnectionRateLimiter(self.settings.connect_rate_limit)

    @property
    def component_id(self) -> str:
        """The component that owns this endpoint."""
        return self.key[0]

    def reachable_by(self, component_id: str) -> bool:
        """Session isolation: the owner and the components listed in ALLOWED_PUBLISHERS."""
        return component_id == self.component_id or (
            component_id in self.settings.allowed_publishers
        )


class Listener:
    """One listening socket; routes upgrade requests to endpoints by path."""

    def __init__(self, hub: ServerHub, host: str, port: int) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.endpoints: dict[str, Endpoint] = {}
        self._server: Server | None = None
        self._ssl: ssl.SSLContext | None = None
        self.tls: tuple[str, str] | None = None
        # Identity established on the upgrade request; weak keys, so that an upgrade that
        # fails after the check leaves nothing behind.
        self._identities: weakref.WeakKeyDictionary[ServerConnection, Identity] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def bound_port(self) -> int:
        """The actual port (useful when configured as 0)."""
        assert self._server is not None
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        return self.port

    async def start(self, tls: tuple[str, str] | None = None) -> None:
        """Bind; raises OSError (e.g. address in use) with the address in the message, or
        ConfigError for a TLS certificate and key that cannot be loaded."""
        self.tls = tls
        self._ssl = server_tls_context(tls) if tls else None
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._process_request,
                select_subprotocol=self._select_subprotocol,
                max_size=None,  # set per connection from the endpoint's MAX_MESSAGE_BYTES
                ping_interval=None,  # likewise (PING_INTERVAL_SEC / PING_TIMEOUT_SEC)
                server_header=None,
                close_timeout=CLOSE_TIMEOUT,
                compression=None,  # per connection from the endpoint's COMPRESSION
                ssl=self._ssl,
            )
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for choice in (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON):
            if choice in offered:
                return Subprotocol(choice)
        if BEARER_SUBPROTOCOL in offered:
            return Subprotocol(BEARER_SUBPROTOCOL)  # `bearer, <token>` authentication
        if offered:
            # Accepting without a subprotocol would make browsers abort the connection
            # (1006) with no explanation; refuse the upgrade clearly instead (HTTP 400).
            raise NegotiationError(
                f"unsupported subprotocol(s) {', '.join(offered)}: offer "
                f"{SUBPROTOCOL_JSON} or {SUBPROTOCOL_MSGPACK}, or none"
            )
        return None

    def _health_probe(self, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path not in ("/healthz", "/readyz"):
            return None
        if not any(e.settings.health_endpoints for e in self.endpoints.values()):
            return None
        if path == "/healthz":
            status, body = 200, {"status": "ok"}  # the process serves HTTP on this listener
        else:
            ready, reason = self.hub.readiness()
            status, body = (200 if ready else 503), {"status": "ready" if ready else reason}
        data = json.dumps(body).encode()
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(status, "OK" if status == 200 else "Service Unavailable", headers, data)

    def _metrics(self, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/metrics" or not any(
            e.settings.metrics for e in self.endpoints.values()
        ):
            return None
        data = self.hub.metrics.render().encode()
        headers = Headers(
            [
                ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                ("Content-Length", str(len(data))),
                ("Connection", "close"),
            ]
        )
        return Response(200, "OK", headers, data)

    def _demo_page(self, request: Request) -> Response | None:
        if urlsplit(request.path).path not in ("/", "/index.html"):
            return None
        for path, endpoint in self.endpoints.items():
            if endpoint.settings.demo_page:
                body = demo_page.render(path)
                headers = Headers(
                    [
                        ("Content-Type", "text/html; charset=utf-8"),
                        ("Content-Length", str(len(body))),
                        ("Cache-Control", "no-store"),
                        ("Connection", "close"),
                    ]
                )
                return Response(200, "OK", headers, body)
        return None

    def _endpoint_for(self, request: Request | None) -> Endpoint | None:
        if request is None:
            return None
        return self.endpoints.get(urlsplit(request.path).path.rstrip("/") or "/")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # Keep no per-connection state here: an upgrade can still fail after this (and then
        # the handler never runs), so anything recorded now could leak.
        endpoint = self._endpoint_for(request)
        if endpoint is None:
            probe = self._health_probe(request) or self._metrics(request)
            if probe is not None:
                return probe
            page = self._demo_page(request)
            if page is not None:
                return page
            return connection.respond(http.HTTPStatus.NOT_FOUND, "No WebSocket endpoint here.\n")
        if len(endpoint.sessions) >= endpoint.settings.max_sessions:
            log.warning(
                "endpoint %s full (%d sessions): refusing a client",
                endpoint.settings.path,
                endpoint.settings.max_sessions,
            )
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many sessions on this endpoint.\n"
            )
        settings = endpoint.settings
        if endpoint.conn_limiter is not None:
            ip = _remote_addr(connection).rpartition(":")[0].strip("[]")
            if not endpoint.conn_limiter.allow(ip, time.monotonic()):
                log.info("connection rate limit: refusing %s on %s", ip, settings.path)
                return connection.respond(
                    http.HTTPStatus.TOO_MANY_REQUESTS, "Too many connections, retry later.\n"
                )
        try:
            settings.origins.check(request.headers.get("Origin"))
            offered = [
                p.strip()
                for value in request.headers.get_all("Sec-WebSocket-Protocol")
                for p in value.split(",")
            ]
            identity = settings.auth.authenticate(request.path, request.headers, offered)
        except Refused as exc:
            log.info("upgrade refused (%d) on %s: %s", exc.status, settings.path, exc.reason)
            self.hub.metrics.refused_upgrades[exc.status] += 1
            response = connection.respond(http.HTTPStatus(exc.status), exc.reason + "\n")
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if identity is not None:
            self._identities[connection] = identity
        connection.protocol.max_message_size = settings.max_message_bytes
        connection.ping_interval = settings.ping_interval
        connection.ping_timeout = settings.ping_timeout
        # permessage-deflate per endpoint (the listener is shared, so decide per connection).
        connection.protocol.available_extensions = (
            [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12, compress_settings={"memLevel": 5}
                )
            ]
            if settings.compression
            else []
        )
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        endpoint = self._endpoint_for(connection.request)
        if endpoint is None or self.hub.endpoints.get(endpoint.key) is not endpoint:
            # Removed or replaced between the upgrade check and now.
            await connection.close(CLOSE_GOING_AWAY, "endpoint reconfigured")
            return
        await self.hub.run_session(endpoint, connection, self._identities.pop(connection, None))

    def stop_accepting(self) -> None:
        """Close the listening socket; existing connections are closed by their endpoints."""
        if self._server is not None:
            self._server.close(close_connections=False)

    async def close(self) -> None:
        """Stop accepting and wait (briefly) for the server's own tasks to end."""
        self.stop_accepting()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 0.1)
            self._server = None


def _remote_addr(connection: ServerConnection) -> str:
    addr = connection.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def _wants_msgpack(connection: ServerConnection) -> bool:
    # A negotiated subprotocol decides; `?format=msgpack` only when none was negotiated.
    if connection.subprotocol is not None:
        return connection.subprotocol == SUBPROTOCOL_MSGPACK
    request = connection.request
    if request is None:
        return False
    query = parse_qs(urlsplit(request.path).query)
    return query.get("format", [""])[0].lower() == "msgpack"


async def _receive(ws: ServerConnection) -> str | bytes | None:
    """The next message: str (text frame), bytes (binary frame), None (text not UTF-8).

    `ServerConnection.recv()` fails the whole connection (1007) on invalid UTF-8; the frame
    contract says a bad frame costs an error frame, not the session. The assembler has
    consumed the message before decoding it, so reading on afterwards is safe.
    """
    try:
        return await ws.recv_messages.get(None)
    except UnicodeDecodeError:
        return None
    except TooManyFragments:
        await ws.close(CLOSE_TOO_BIG, "too many fragments")
        return await ws.recv()
    except EOFError:
        return await ws.recv()  # raises ConnectionClosed with the peer's close code


def _close_info(ws: ServerConnection) -> tuple[int, str]:
    """Why a connection ended: the peer's close frame, else ours (e.g. 1011 on a keepalive
    timeout, 1008 slow consumer), else 1006 (the TCP connection just went away)."""
    close = ws.protocol.close_rcvd or ws.protocol.close_sent
    if close is None:
        return 1006, ""
    return int(close.code), close.reason


class ServerHub:
    """Every endpoint, listener and session of this instance, and the routing between them."""

    def __init__(self) -> None:
        self.endpoints: dict[PairKey, Endpoint] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.sessions: dict[str, Session] = {}  # tracked (addressable) sessions
        self.topics = TopicIndex()
        self._closing = False
        self.metrics = Metrics()
        self.metrics.gauges["wsp_sessions_open"] = lambda: sum(
            len(e.sessions) for e in self.endpoints.values()
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
            await self.remove_endpoint(key, CLOSE_GOING_AWAY, "endpoint reconfigured")
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
        if existing is not None:
            await self.remove_endpoint(
                key, CLOSE_GOING_AWAY, "endpoint reconfigured", keep=listener
            )
        endpoint = Endpoint(key, settings, handler)
        listener.endpoints[settings.path] = endpoint
        self.endpoints[key] = endpoint
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
        listener = self.listeners.get(endpoint.settings.address)
        if listener is not None and listener.endpoints.get(endpoint.settings.path) is endpoint:
            del listener.endpoints[endpoint.settings.path]
        await self._close_sessions(list(endpoint.sessions.values()), code, reason)
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
    async def _wait_closed(session: Session) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.ws.wait_closed(), 0.2)

    async def close(self) -> None:
        """Graceful shutdown: stop accepting, flush, close every session with 1001."""
        self._closing = True
        listeners = list(self.listeners.values())
        for listener in listeners:
            listener.stop_accepting()
        sessions = [s for e in self.endpoints.values() for s in e.sessions.values()]
        await self._close_sessions(sessions, CLOSE_GOING_AWAY, "server shutting down")
        self.endpoints.clear()
        self.listeners.clear()
        await asyncio.gather(*(listener.close() for listener in listeners))

    # --- sessions ---------------------------------------------------------------------------

    async def run_session(
        self, endpoint: Endpoint, ws: ServerConnection, identity: Identity | None = None
    ) -> None:
        """Serve one connection from handshake to close."""
        settings = endpoint.settings
        session = Session(
            id=new_session_id(),
            ws=ws,
            component_id=endpoint.key[0],
            link_name=endpoint.key[1],
            remote_addr=_remote_addr(ws),
            binary=_wants_msgpack(ws),
            send_queue_limit=settings.send_queue_limit,
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
        endpoint.sessions[session.id] = session
        self.metrics.connects += 1
        if settings.session_tracking:
            self.sessions[session.id] = session
            if self.on_session_open is not None:
                try:
                    await self.on_session_open(session)
                except Exception:
                    log.exception(
                        "session %s: could not make it reachable cluster-wide", session.id
                    )
        session.start(lambda s, m, i: self._deliver(endpoint, s, m, i))
        log.debug(
            "session %s opened from %s on %s",
            session.id,
            session.remote_addr,
            settings.path,
            extra=session.log_fields,
        )
        try:
            if settings.welcome:
                session.send(frames.encode_welcome(session.id, session.binary))
            if settings.session_events and endpoint.handler is not None:
                body = json.dumps(
                    {
                        "session_id": session.id,
                        "remote_addr": session.remote_addr,
                        "identity": identity.to_json() if identity is not None else None,
                    }
                ).encode()
                await session.put_inbound(BrokerMessage(SESSION_CONNECTED, body, session.id), None)
            await self._read_loop(endpoint, session)
        finally:
            await self._end_session(endpoint, session)

    async def _read_loop(self, endpoint: Endpoint, session: Session) -> None:
        idle = endpoint.settings.idle_timeout
        while True:
            try:
                if idle is not None:
                    data = await asyncio.wait_for(_receive(session.ws), idle)
                else:
                    data = await _receive(session.ws)
            except TimeoutError:
                session.close(CLOSE_NORMAL, "idle timeout")
                await self._wait_closed(session)
                return
            except ConnectionClosed:
                return
            if data is None:
                session.counters.messages_in += 1
                self._send_error(session, frames.BAD_UTF8, "text frame is not valid UTF-8")
                continue
            if isinstance(data, str):
                await self._on_frame(endpoint, session, data.encode(), False)
            else:
                await self._on_frame(endpoint, session, data, True)

    async def _on_frame(
        self, endpoint: Endpoint, session: Session, data: bytes, binary: bool
    ) -> None:
        session.counters.messages_in += 1
        session.counters.bytes_in += len(data)
        self.metrics.messages_in += 1
        self.metrics.bytes_in += len(data)
        limiter = session.limiter
        if limiter is not None and not limiter.allow(len(data), time.monotonic()):
            settings = endpoint.settings
            session.counters.rate_limited += 1
            self.metrics.rate_limited += 1
            if settings.rate_limit_policy == "close" and (
                limiter.strikes >= settings.rate_limit_close_after
            ):
                log.info(
                    "session %s closed: rate limit exceeded %d times in a row",
                    session.id,
                    limiter.strikes,
                    extra=session.log_fields,
                )
                session.close(CLOSE_POLICY, "rate limit exceeded")
                return
            self._send_error(
                session, frames.RATE_LIMITED, "rate limit exceeded: this message was dropped"
            )
            return
        try:
            frame = frames.decode_frame(data, binary)
        except frames.FrameError as exc:
            self._send_error(session, exc.code, exc.message, exc.frame_id)
            return
        if isinstance(frame, frames.Subscribe):
            if not endpoint.settings.session_tracking:
                self._send_error(
                    session,
                    frames.UNSUPPORTED,
                    "this endpoint keeps no subscriptions (ENABLE_SESSION_TRACKING=false)",
                )
                return
            if looks_like_session_id(frame.pattern.partition(".")[0]):
                self._send_error(
                    session,
                    frames.BAD_SUBJECT,
                    "a topic cannot start with a session id (publishes to it go to the session)",
                    frame.frame_id,
                )
                return
            limit = endpoint.settings.max_subscriptions
            if frame.pattern not in session.subscriptions and len(session.subscriptions) >= limit:
                self._send_error(
                    session,
                    frames.TOO_MANY_SUBSCRIPTIONS,
                    f"at most {limit} subscriptions per session (MAX_SUBSCRIPTIONS)",
                    frame.frame_id,
                )
                return
            session.subscriptions.add(frame.pattern)
            self.topics.add(frame.pattern, session.id)
            return
        if isinstance(frame, frames.Unsubscribe):
            session.subscriptions.discard(frame.pattern)
            self.topics.remove(frame.pattern, session.id)
            return
        reply_to = f"{session.id}.{frame.reply_to}" if frame.reply_to else session.id
        pending = session.pending_requests.pop(frame.subject, None)
        if pending is not None:
            if not pending.done():
                # The answer's reply-to is provider-set too: a client must not be able to
                # point a component at another session, a topic or the broadcast subject.
                pending.set_result(BrokerMessage(frame.subject, frame.body, reply_to))
            return
        if endpoint.handler is None:
            self._send_error(
                session,
                frames.NO_HANDLER,
                "this endpoint has no handler link: messages cannot be delivered",
                frame.frame_id,
            )
            return
        if not session.offer_inbound(
            BrokerMessage(frame.subject, frame.body, reply_to), frame.frame_id
        ):
            # Keep reading (pongs and request answers must get through); tell the client
            # this message was not taken, rather than stalling the whole connection.
            self._send_error(
                session,
                frames.OVERLOADED,
                f"the component is behind ({endpoint.settings.inbound_queue_limit} messages "
                "queued for it): this message was not delivered, retry later",
                frame.frame_id,
            )

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
            started = time.monotonic()
            # asyncio.timeout, not wait_for: no extra task per message (bench --profile).
            async with asyncio.timeout(endpoint.settings.handler_timeout):
                result = await handler(msg)
            self.metrics.handler_latency.observe(time.monotonic() - started)
        except (TransportError, CodecError, TimeoutError) as exc:
            log.warning(
                "delivery to %s failed: %s", endpoint.component_id, exc, extra=session.log_fields
            )
            if not is_event:
                self._send_error(
                    session, frames.DELIVERY_FAILED, "the component could not be reached", frame_id
                )
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

    async def _end_session(self, endpoint: Endpoint, session: Session) -> None:
        from .sessions import SessionState

        session.state = SessionState.CLOSED
        endpoint.sessions.pop(session.id, None)
        self.metrics.bytes_out_closed += session.counters.bytes_out  # same step: monotonic
        self.sessions.pop(session.id, None)
        self.topics.remove_all(session.id, session.subscriptions)
        session.fail_pending("session closed before replying")
        if endpoint.settings.session_tracking and self.on_session_close is not None:
            with contextlib.suppress(Exception):
                await self.on_session_close(session)
        code, reason = _close_info(session.ws)
        self.metrics.disconnects[code] += 1
        if not self._closing:
            # Deliver what the client sent before it left, then the disconnect event.
            event = None
            if endpoint.settings.session_events and endpoint.handler is not None:
                body = json.dumps(
                    {"session_id": session.id, "code": code, "reason": reason}
                ).encode()
                event = BrokerMessage(SESSION_DISCONNECTED, body, session.id)
            await session.finish_inbound(event, endpoint.settings.handler_timeout)
        session.cancel_tasks()
        log.debug("session %s closed (%s %s)", session.id, code, reason, extra=session.log_fields)

    # --- routing (DESIGN.md §5) -------------------------------------------------------------

    def _reachable(self, component_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.reachable_by(component_id)]

    def _target_session(self, component_id: str, subject: str) -> tuple[Session | None, str]:
        sid, _, rest = subject.partition(".")
        session = self.sessions.get(sid)
        if session is None:
            return None, ""
        endpoint = self.endpoints.get((session.component_id, session.link_name))
        if endpoint is None or not endpoint.reachable_by(component_id):
            return None, ""  # isolation: other components' sessions do not exist for you
        return session, rest or sid

    def publish(self, component_id: str, msg: BrokerMessage) -> Ok | Err:
        """`consumer.publish` from `component_id` (DESIGN.md §5 rules, in order)."""
        subject = msg.subject
        first = subject.partition(".")[0]
        if looks_like_session_id(first):
            session, frame_subject = self._target_session(component_id, subject)
            if session is None or not session.send(
                frames.encode_message(frame_subject, msg.body, msg.reply_to, session.binary)
            ):
                return Err(f"no such session: {first}")
            return Ok()
        # Rule 2 for the endpoints whose broadcast subject this is, rule 3 for the others.
        targets: list[Session] = []
        topic_keys = set()
        for endpoint in self._reachable(component_id):
            if endpoint.settings.broadcast_subject == subject:
                targets.extend(endpoint.sessions.values())
            else:
                topic_keys.add(endpoint.key)
        if topic_keys:
            for sid in self.topics.match(subject):
                session = self.sessions.get(sid)
                if session is not None and (session.component_id, session.link_name) in topic_keys:
                    targets.append(session)
        self._fan_out(targets, subject, msg)
        return Ok()

    def _fan_out(self, sessions: list[Session], subject: str, msg: BrokerMessage) -> None:
        # Encode once per format, not once per session.
        encoded: dict[bool, str | bytes] = {}
        for session in sessions:
            frame = encoded.get(session.binary)
            if frame is None:
                frame = frames.encode_message(subject, msg.body, msg.reply_to, session.binary)
                encoded[session.binary] = frame
            session.send(frame)
        self.metrics.messages_out += len(sessions)

    async def request(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` to a session: send with a fresh reply token, await the answer."""
        first = subject.partition(".")[0]
        if not looks_like_session_id(first):
            return Err(f"request needs a session id as subject (got {subject!r})")
        session, frame_subject = self._target_session(component_id, subject)
        if session is None:
            return Err(f"no such session: {first}")
        token = new_reply_token()
        future: asyncio.Future[BrokerMessage] = asyncio.get_running_loop().create_future()
        session.pending_requests[token] = future
        try:
            if not session.send(frames.encode_message(frame_subject, body, token, session.binary)):
                return Err(f"no such session: {first}")
            try:
                reply = await asyncio.wait_for(future, timeout_ms / 1000)
            except TimeoutError:
                return Err(f"timed out after {timeout_ms} ms waiting for session {first}")
            except ConnectionError as exc:
                return Err(f"session {first}: {exc}")
            return Ok(reply)
        finally:
            session.pending_requests.pop(token, None)

    def send_to_session(self, session_id: str, msg: BrokerMessage) -> Ok | Err:
        """Library API: one session, no isolation check (the caller is the operator)."""
        session = self.sessions.get(session_id)
        if session is None or not session.send(
            frames.encode_message(msg.subject, msg.body, msg.reply_to, session.binary)
        ):
            return Err(f"no such session: {session_id}")
        return Ok()

    def broadcast_all(self, msg: BrokerMessage) -> int:
        """Library API: every session of every endpoint; returns how many were sent to."""
        sessions = [s for e in self.endpoints.values() for s in e.sessions.values()]
        self._fan_out(sessions, msg.subject, msg)
        return len(sessions)

    def list_sessions(self, component_id: str | None = None) -> list[SessionInfo]:
        """Tracked sessions, optionally only those `component_id` may reach."""
        out = []
        for session in self.sessions.values():
            if component_id is not None:
                endpoint = self.endpoints.get((session.component_id, session.link_name))
                if endpoint is None or not endpoint.reachable_by(component_id):
                    continue
            out.append(session.info())
        return out

    def headers_for(self, connection: ServerConnection) -> Headers | None:
        """The upgrade request headers of a connection (for identity checks later)."""
        return connection.request.headers if connection.request is not None else None
