"""Listening sockets: one `websockets` asyncio server per address, shared by endpoints.

A `Listener` moves bytes and applies decisions: each upgrade request is decided by
`provider.admission` (accept, or an HTTP answer), an accepted connection gets its endpoint's
limits (`wsadapter.configure`) and is handed to the hub (`SessionHost.run_session`), which
serves it until it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import ssl
import time
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from . import admission
from .admission import Accept, Admission, Document, EndpointView, TextAnswer, UpgradeRequest
from .auth import Identity
from .closecodes import CloseCode
from .metrics import Metrics
from .settings import ConfigError
from .tlsfiles import load_cert_chain_pem
from .wsadapter import configure, forget_headers
from .wsfastread import FastReadConnection

log = logging.getLogger(__name__)

#: Whether this OS has SO_REUSEPORT (Linux, the BSDs, macOS; not Windows).
HAS_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
#: How long to wait for a peer to answer our close frame before dropping the TCP connection.
CLOSE_TIMEOUT = 2.0


class ServedEndpoint(EndpointView, Protocol):
    """An endpoint as the listener sees it: admission's view, and the key it is served
    under by the hub."""

    @property
    def key(self) -> tuple[str, str]:
        """(component id, link name)."""
        ...


E = TypeVar("E", bound=ServedEndpoint)


class SessionHost(Protocol[E]):
    """What a listener needs from whoever serves its endpoints' connections
    (`connection.Connections` is one)."""

    @property
    def endpoints(self) -> Mapping[tuple[str, str], E]:
        """The endpoints served now, by key."""
        ...

    @property
    def metrics(self) -> Metrics:
        """`/metrics` and the refused-upgrade counters."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """`/readyz`: ready to take clients, or why not."""
        ...

    def make_room(self, endpoint: E, ip: str) -> bool:
        """End the oldest detached session of `ip` on `endpoint`; False if it has none."""
        ...

    def run_session(
        self, endpoint: E, connection: ServerConnection, identity: Identity | None
    ) -> Awaitable[None]:
        """Serve an accepted connection until it closes."""
        ...


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


class Listener(Generic[E]):
    """One listening socket; routes upgrade requests to endpoints by path."""

    def __init__(self, hub: SessionHost[E], host: str, port: int) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.endpoints: dict[str, E] = {}
        self._server: Server | None = None
        self._ssl: ssl.SSLContext | None = None
        self.tls: tuple[str, str] | None = None
        metrics = hub.metrics
        self.admission = Admission(
            self.endpoints, hub.readiness, metrics.render, metrics.refused_upgrades
        )
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

    async def start(self, tls: tuple[str, str] | None = None, *, reuse_port: bool = False) -> None:
        """Bind; raises OSError (e.g. address in use) with the address in the message, or
        ConfigError for a TLS certificate and key that cannot be loaded.

        `reuse_port`: SO_REUSEPORT where the OS has it (ignored where it does not), so that
        other processes can listen on the same port and the kernel spreads connections."""
        self.tls = tls
        self._ssl = server_tls_context(tls) if tls else None
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                create_connection=FastReadConnection,
                process_request=self._process_request,
                select_subprotocol=self._select_subprotocol,
                max_size=None,  # set per connection from the endpoint's MAX_MESSAGE_BYTES
                ping_interval=None,  # likewise (PING_INTERVAL_SEC / PING_TIMEOUT_SEC)
                server_header=None,
                close_timeout=CLOSE_TIMEOUT,
                compression=None,  # per connection from the endpoint's COMPRESSION
                ssl=self._ssl,
                reuse_port=reuse_port and HAS_REUSE_PORT,
            )
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None

    @staticmethod
    def _select_subprotocol(
        connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        try:
            chosen = admission.select_subprotocol(offered)
        except admission.UnsupportedSubprotocol as exc:
            raise NegotiationError(str(exc)) from None  # websockets answers 400
        return None if chosen is None else Subprotocol(chosen)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            return self._admit(connection, request)
        except Exception as exc:
            # Whatever the request holds, the client gets a 400, never a 500 with a traceback;
            # the log says what failed (the details at debug level).
            log.error(
                "upgrade request for %s could not be processed (%s: %s): answered 400",
                urlsplit(request.path).path,
                type(exc).__name__,
                exc,
            )
            log.debug("upgrade request failure", exc_info=True)
            return _respond(connection, admission.BAD_REQUEST)

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Accept the upgrade (None) or answer it: health, metrics, page, or a refusal."""
        # Keep no per-connection state here: an upgrade can still fail after this (and then
        # the handler never runs), so anything recorded now could leak.
        ip = remote_ip(connection)
        decision = self.admission.decide(
            UpgradeRequest(
                target=request.path,
                headers=request.headers,
                protocol_headers=request.headers.get_all("Sec-WebSocket-Protocol"),
                ip=ip,
                now=time.monotonic(),
            )
        )
        if not isinstance(decision, Accept):
            return _respond(connection, decision)
        endpoint = decision.endpoint
        settings = endpoint.settings
        if decision.needs_room and not self.hub.make_room(endpoint, ip):
            return _respond(connection, admission.address_full(settings, ip))
        if decision.identity is not None:
            self._identities[connection] = decision.identity
        configure(
            connection,
            max_message_bytes=settings.max_message_bytes,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            compression=settings.compression,
        )
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        endpoint = None if request is None else self.admission.endpoint_for(request.path)
        del request  # not kept alive by this frame for the connection's life
        if endpoint is None or self.hub.endpoints.get(endpoint.key) is not endpoint:
            # Removed or replaced between the upgrade check and now.
            await connection.close(CloseCode.GOING_AWAY, "endpoint reconfigured")
            return
        # Admission and authentication have read the headers; an idle session need not
        # keep them (the path stays: the session reads its resume token and format there).
        forget_headers(connection)
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


def _respond(connection: ServerConnection, answer: TextAnswer | Document) -> Response:
    """The websockets response for an admission answer."""
    if isinstance(answer, Document):
        return Response(answer.status, answer.reason, Headers(answer.headers), answer.body)
    response = connection.respond(http.HTTPStatus(answer.status), answer.text)
    for name, value in answer.extra_headers:
        response.headers[name] = value
    return response


def remote_addr(connection: ServerConnection) -> str:
    """The client's `host:port` (`[v6]:port` for IPv6)."""
    addr = connection.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def remote_ip(connection: ServerConnection) -> str:
    """The client's IP address (no port, no brackets)."""
    return remote_addr(connection).rpartition(":")[0].strip("[]")


def wants_msgpack(connection: ServerConnection) -> bool:
    """Does this connection's session speak msgpack (see `admission.wants_msgpack`)?"""
    request = connection.request
    return admission.wants_msgpack(
        connection.subprotocol, request.path if request is not None else None
    )
