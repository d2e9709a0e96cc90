"""Who gets a WebSocket on a listener, and what everybody else is answered. Sans-I/O.

An upgrade request arrives on a listener shared by several endpoints (one per HTTP path).
`Admission.decide` looks at the request's facts (target, headers, the client's address) and
the endpoints served there, and returns either

* `Accept`: the endpoint, the authenticated identity, whether this is a resume of one of the
  endpoint's sessions, and whether the client's address must first give up its oldest
  detached session (MAX_SESSIONS_PER_IP); or
* an HTTP answer instead of the upgrade: a plain-text refusal (`TextAnswer`: 404, 503, 429,
  401, 403) or a document (`Document`: `/healthz`, `/readyz`, `/metrics`, the demo page).

The checks run in this order, cheapest and least revealing first: the path; the endpoint's
capacity (MAX_SESSIONS; a resume adds no session); the per-address connection rate
(CONNECT_RATE_LIMIT); the origin and the credentials (ALLOWED_ORIGINS, AUTH); the sessions
per address (MAX_SESSIONS_PER_IP, only for an authenticated client, because making room ends
one of the address's sessions). The listener (`provider.listener`) only moves bytes and
applies the decision; the subprotocol (`select_subprotocol`) and the wire format
(`wants_msgpack`) are decided here too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Container, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from . import demo_page
from .auth import BEARER_SUBPROTOCOL, Identity
from .errors import Refused
from .history import ResumeRequest, parse_resume
from .ratelimit import ConnectionRateLimiter
from .settings import ServerSettings

log = logging.getLogger(__name__)

SUBPROTOCOL_JSON = "wasmcloud.messaging.v1"
SUBPROTOCOL_MSGPACK = "wasmcloud.messaging.v1.msgpack"
#: Paths answered on a listener that has an endpoint with HEALTH_ENDPOINTS / METRICS /
#: DEMO_PAGE, when no endpoint is served at that path.
HEALTH_PATHS = ("/healthz", "/readyz")
METRICS_PATH = "/metrics"
PAGE_PATHS = ("/", "/index.html")


class EndpointView(Protocol):
    """What admission reads of an endpoint (`provider.server.Endpoint` is one)."""

    @property
    def settings(self) -> ServerSettings:
        """The endpoint's configuration."""
        ...

    @property
    def sessions(self) -> Container[str]:
        """Ids of the endpoint's sessions (connected or detached)."""
        ...

    @property
    def live_sessions(self) -> int:
        """Sessions with a connected client (what MAX_SESSIONS bounds)."""
        ...

    @property
    def conn_limiter(self) -> ConnectionRateLimiter | None:
        """CONNECT_RATE_LIMIT per client address (None: no limit)."""
        ...

    @property
    def per_ip(self) -> Mapping[str, int]:
        """Sessions per client address (connected or detached)."""
        ...


E = TypeVar("E", bound=EndpointView)


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """The facts of an upgrade request that admission decides on."""

    #: The request target: path and query (`/ws?resume=…`).
    target: str
    #: The request headers (case-insensitive lookups, as websockets' `Headers`).
    headers: Mapping[str, str]
    #: Every `Sec-WebSocket-Protocol` header value, as sent (comma-separated lists).
    protocol_headers: Sequence[str]
    #: The client's IP address (no port, no brackets).
    ip: str
    #: `time.monotonic()` when the request arrived (for CONNECT_RATE_LIMIT).
    now: float

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        return urlsplit(self.target).path


@dataclass(frozen=True, slots=True)
class Accept(Generic[E]):
    """Accept the upgrade for `endpoint`."""

    endpoint: E
    #: The authenticated peer (None with AUTH=none).
    identity: Identity | None
    #: A resume of one of the endpoint's sessions (it adds no session; its token is checked
    #: when the session starts).
    resuming: bool = False
    #: The address is at MAX_SESSIONS_PER_IP: its oldest detached session must end to make
    #: room (when it has none, answer `address_full` instead).
    needs_room: bool = False


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """A plain-text HTTP answer (UTF-8) instead of the upgrade; `extra_headers` are added to
    the usual ones (Date, Connection, Content-Length, Content-Type)."""

    status: int
    text: str
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Document:
    """A complete HTTP answer (health probe, metrics, the demo page)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


Answer = TextAnswer | Document

NOT_FOUND = TextAnswer(404, "No WebSocket endpoint here.\n")
ENDPOINT_FULL = TextAnswer(503, "Too many sessions on this endpoint.\n")
TOO_MANY_CONNECTIONS = TextAnswer(429, "Too many connections, retry later.\n")
TOO_MANY_SESSIONS = TextAnswer(429, "Too many sessions from your address.\n")
BAD_REQUEST = TextAnswer(400, "Bad request.\n")


class UnsupportedSubprotocol(ValueError):
    """The client offered subprotocols, none of which this provider speaks."""


def is_loopback(ip: str) -> bool:
    """Is `ip` a loopback address (IPv4, IPv6, or IPv4-mapped IPv6)?"""
    return ip.startswith("127.") or ip == "::1" or ip.startswith("::ffff:127.")


def rate_limit_applies(settings: ServerSettings, ip: str) -> bool:
    """Does CONNECT_RATE_LIMIT apply to `ip`? (Loopback only when configured.)"""
    return settings.rate_limit_loopback or not is_loopback(ip)


def at_address_cap(settings: ServerSettings, ip: str, sessions_of_ip: int) -> bool:
    """Has `ip` as many sessions as MAX_SESSIONS_PER_IP allows (0: no cap; loopback only
    when configured)? Then a new session needs one of its detached sessions to end."""
    cap = settings.max_sessions_per_ip
    return (
        bool(cap)
        and (settings.session_cap_loopback or not is_loopback(ip))
        and (sessions_of_ip >= cap)
    )


def address_full(settings: ServerSettings, ip: str) -> TextAnswer:
    """The answer to a client whose address is at MAX_SESSIONS_PER_IP with no detached
    session to give up (logged)."""
    log.info(
        "session cap: refusing %s on %s (%d sessions)",
        ip,
        settings.path,
        settings.max_sessions_per_ip,
    )
    return TOO_MANY_SESSIONS


def offered_subprotocols(protocol_headers: Sequence[str]) -> list[str]:
    """The subprotocols a client offered, in order, from its Sec-WebSocket-Protocol headers."""
    return [p.strip() for value in protocol_headers for p in value.split(",")]


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer: the frame format (msgpack first, then JSON), else `bearer`
    (token authentication), else none when none was offered.

    Raises `UnsupportedSubprotocol` when the client offered only others: accepting without a
    subprotocol would make browsers abort the connection (1006) with no explanation, so the
    upgrade is refused clearly instead (HTTP 400).
    """
    for choice in (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON):
        if choice in offered:
            return choice
    if BEARER_SUBPROTOCOL in offered:
        return BEARER_SUBPROTOCOL  # `bearer, <token>` authentication
    if offered:
        raise UnsupportedSubprotocol(
            f"unsupported subprotocol(s) {', '.join(offered)}: offer "
            f"{SUBPROTOCOL_JSON} or {SUBPROTOCOL_MSGPACK}, or none"
        )
    return None


def wants_msgpack(subprotocol: str | None, target: str | None) -> bool:
    """Does the session speak msgpack? A negotiated subprotocol decides; `?format=msgpack`
    only when none was negotiated."""
    if subprotocol is not None:
        return subprotocol == SUBPROTOCOL_MSGPACK
    if target is None:
        return False
    query = parse_qs(urlsplit(target).query)
    return query.get("format", [""])[0].lower() == "msgpack"


def resumes_a_session_here(endpoint: EndpointView, target: str) -> bool:
    """A resume of one of this endpoint's sessions (it adds no session: never refused for
    MAX_SESSIONS; the token is checked later, like any resume)."""
    if not endpoint.settings.resumable:
        return False
    asked = parse_resume(target)
    return isinstance(asked, ResumeRequest) and asked.session_id in endpoint.sessions


def _document(status: int, content_type: str, body: bytes, *, no_store: bool) -> Document:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if no_store:
        headers.append(("Cache-Control", "no-store"))
    headers.append(("Connection", "close"))
    reason = "OK" if status == 200 else "Service Unavailable"
    return Document(status, reason, tuple(headers), body)


class Admission(Generic[E]):
    """The admission decisions of one listener.

    `endpoints` is the listener's live map of path -> endpoint (read at each decision);
    `readiness` answers `/readyz`, `render_metrics` `/metrics`; `refused_upgrades` counts
    the refusals for origin and credentials, by HTTP status.
    """

    def __init__(
        self,
        endpoints: Mapping[str, E],
        readiness: Callable[[], tuple[bool, str]],
        render_metrics: Callable[[], str],
        refused_upgrades: MutableMapping[int, int],
    ) -> None:
        self.endpoints = endpoints
        self.readiness = readiness
        self.render_metrics = render_metrics
        self.refused_upgrades = refused_upgrades

    def endpoint_for(self, target: str) -> E | None:
        """The endpoint served at the target's path (a trailing slash does not matter)."""
        return self.endpoints.get(urlsplit(target).path.rstrip("/") or "/")

    def decide(self, request: UpgradeRequest) -> Accept[E] | Answer:
        """Accept the upgrade, or answer it: health, metrics, page, or a refusal (logged).

        Keeps no per-connection state: an upgrade can still fail after this.
        """
        endpoint = self.endpoint_for(request.target)
        if endpoint is None:
            return self.other_request(request.path) or NOT_FOUND
        settings = endpoint.settings
        ip = request.ip
        # A resume of one of this endpoint's sessions adds none (its token is checked later;
        # if that fails, the session start checks the capacity again before a new session).
        resuming = resumes_a_session_here(endpoint, request.target)
        if not resuming and endpoint.live_sessions >= settings.max_sessions:
            log.warning(
                "endpoint %s full (%d sessions): refusing a client",
                settings.path,
                settings.max_sessions,
            )
            return ENDPOINT_FULL
        limiter = endpoint.conn_limiter
        if (
            rate_limit_applies(settings, ip)
            and limiter is not None
            and not limiter.allow(ip, request.now)
        ):
            log.info("connection rate limit: refusing %s on %s", ip, settings.path)
            return TOO_MANY_CONNECTIONS
        try:
            settings.origins.check(request.headers.get("Origin"))
            offered = offered_subprotocols(request.protocol_headers)
            identity: Identity | None = settings.auth.authenticate(
                request.target, request.headers, offered
            )
        except Refused as exc:
            log.info("upgrade refused (%d) on %s: %s", exc.status, settings.path, exc.reason)
            self.refused_upgrades[exc.status] += 1
            extra = (("WWW-Authenticate", "Bearer"),) if exc.status == 401 else ()
            return TextAnswer(exc.status, exc.reason + "\n", extra)
        # Only for an authenticated client: making room ends one of the address's sessions.
        needs_room = not resuming and at_address_cap(settings, ip, endpoint.per_ip.get(ip, 0))
        return Accept(endpoint, identity, resuming, needs_room)

    def other_request(self, path: str) -> Document | None:
        """A health probe, metrics or the demo page, when an endpoint here offers it."""
        return self.health_probe(path) or self.metrics(path) or self.demo_page(path)

    def health_probe(self, path: str) -> Document | None:
        """`/healthz` (the process serves HTTP here) and `/readyz` (`readiness`), when an
        endpoint has HEALTH_ENDPOINTS."""
        if path not in HEALTH_PATHS:
            return None
        if not any(e.settings.health_endpoints for e in self.endpoints.values()):
            return None
        if path == "/healthz":
            status, body = 200, {"status": "ok"}
        else:
            ready, reason = self.readiness()
            status, body = (200 if ready else 503), {"status": "ready" if ready else reason}
        data = json.dumps(body).encode()
        return _document(status, "application/json", data, no_store=True)

    def metrics(self, path: str) -> Document | None:
        """`/metrics` (Prometheus text), when an endpoint has METRICS."""
        if path != METRICS_PATH or not any(e.settings.metrics for e in self.endpoints.values()):
            return None
        data = self.render_metrics().encode()
        return _document(200, "text/plain; version=0.0.4; charset=utf-8", data, no_store=False)

    def demo_page(self, path: str) -> Document | None:
        """The demo page of the first endpoint here with DEMO_PAGE, at `/` or `/index.html`."""
        if path not in PAGE_PATHS:
            return None
        for endpoint_path, endpoint in self.endpoints.items():
            if endpoint.settings.demo_page:
                body = demo_page.render(endpoint_path)
                return _document(200, "text/html; charset=utf-8", body, no_store=True)
        return None
