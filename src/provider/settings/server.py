"""Server-mode settings: `ServerSettings` and the validation of its keys. Sans-I/O.

(Only `TLS_CERT_FILE` / `TLS_KEY_FILE` read a file: the PEM the listener will serve.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import auth
from ..auth import AuthPolicy, OriginPolicy
from ..errors import ConfigError
from .values import boolean, choice, explicitly_on, float_range, int_range, parse, stripped

DEFAULT_SERVER_PATH = "/ws"


@dataclass(frozen=True)
class ServerSettings:
    """A server endpoint: where it listens and the limits of its sessions."""

    host: str
    port: int
    path: str
    session_tracking: bool = True
    #: Largest frame accepted; bigger ones close the session with 1009. 1 MiB fits typical
    #: chat/event payloads while bounding what one frame can make us buffer.
    max_message_bytes: int = 1_048_576
    #: Per endpoint; beyond it the upgrade is refused with HTTP 503.
    max_sessions: int = 10_000
    #: Outbound messages queued per session before the slow-consumer policy applies.
    send_queue_limit: int = 1024
    #: ... and bytes: a client that never reads pins at most this much (a frame larger than
    #: this is still sent when nothing else is queued). 4 MiB = four maximum-size frames.
    send_queue_bytes: int = 4 * 1024 * 1024
    slow_consumer: str = "disconnect"
    #: Inbound messages per session waiting for the component; beyond it each further
    #: message is refused with `overloaded` (the socket is still read).
    inbound_queue_limit: int = 64
    #: Topic subscriptions per session: each costs memory and matching time on publishes.
    max_subscriptions: int = 100
    #: Characters of all of a session's patterns together: the index costs ~40 bytes of
    #: memory per character in the worst case, kept through the resume window.
    max_subscription_bytes: int = 4096
    #: Serve the demo page at `/` of this listener (the dev mode turns it on).
    demo_page: bool = False
    #: Answer `GET /healthz` and `GET /readyz` on this listener (for load balancers).
    health_endpoints: bool = True
    #: Serve Prometheus metrics at `GET /metrics` on this listener.
    metrics: bool = False
    #: Per session: messages/s (burst, default 2x) and bytes/s; None = no limit.
    rate_limit_msgs: float | None = None
    rate_limit_burst: float | None = None
    rate_limit_bytes: float | None = None
    #: `drop`: the message gets a `rate_limited` error frame; `close`: the same, and after
    #: RATE_LIMIT_CLOSE_AFTER excesses in a row the session is closed with 1008.
    rate_limit_policy: str = "drop"
    rate_limit_close_after: int = 10
    #: New connections per second per client IP (burst 2x); beyond: HTTP 429.
    connect_rate_limit: float | None = 20.0
    #: Sessions (connected or detached) one client address may hold on an endpoint; at the
    #: cap its oldest detached session makes room, else the upgrade gets HTTP 429. 0 = off.
    max_sessions_per_ip: int = 1000
    #: Detached sessions kept for a resume; past it the oldest ends early. They never count
    #: toward MAX_SESSIONS (connected clients only).
    max_detached_sessions: int = 10_000
    #: The per-address limits apply to loopback clients only when configured explicitly (to
    #: a value other than 0): by default a reverse proxy on the same machine, or the dev
    #: mode, is not one "client".
    rate_limit_loopback: bool = False
    session_cap_loopback: bool = False
    #: Who may connect (checked on the upgrade request: 401 / 403 before accepting).
    auth: AuthPolicy = field(default_factory=AuthPolicy)
    origins: OriginPolicy = field(default_factory=OriginPolicy)
    #: TLS for the listener: (certificate chain PEM, key PEM); None = plain ws://.
    tls: tuple[str, str] | None = field(default=None, repr=False)
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    idle_timeout: float | None = None
    broadcast_subject: str = "broadcast"
    allowed_publishers: frozenset[str] = frozenset()
    welcome: bool = True
    session_events: bool = True
    #: How long one `handle-message` call may take before the client gets an error frame.
    handler_timeout: float = 30.0
    #: permessage-deflate. Off by default: it costs CPU on every frame and tens of KiB of
    #: zlib state per session, and most gateway traffic is small JSON. (To be revisited
    #: with the bench harness' figures.)
    compression: bool = False
    #: Session resume (docs/RESUME.md): a client that comes back within this
    #: many seconds gets its session (id, subscriptions, missed messages) back; 0 = off.
    resume_window: float = 120.0
    #: Per session, the messages kept for replay (newest win) and their bytes.
    resume_history_messages: int = 100
    resume_history_bytes: int = 262_144
    #: Also keep history and session state in JetStream (when the lattice has it), so that a
    #: restarted process or another instance can resume the session.
    resume_persist: bool = True
    #: Open the listening socket with SO_REUSEPORT (where the OS has it), so that several
    #: processes of this provider on one machine (`WORKERS`, or separate instances) share
    #: the port and the kernel spreads the connections over them. Off: a second process
    #: on the same address fails to bind, as before.
    reuse_port: bool = True

    @property
    def resumable(self) -> bool:
        """Does this endpoint offer resume? (It needs the session table.)"""
        return self.resume_window > 0 and self.session_tracking

    @property
    def address(self) -> tuple[str, int]:
        """The listening socket this endpoint shares with others on the same address."""
        return (self.host, self.port)


def parse_listen_uri(value: str) -> tuple[str, int, str]:
    """`host:port[/path]` (a `ws://` prefix is tolerated) -> (host, port, path)."""
    allowed = "host:port or host:port/path, e.g. 0.0.0.0:8080/chat"
    text = value.strip()
    for scheme in ("ws://", "wss://", "http://", "https://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    hostport, sep, path = text.partition("/")
    path = "/" + path if sep else DEFAULT_SERVER_PATH
    if hostport.startswith("["):
        host, _, port_text = hostport[1:].partition("]:")
    else:
        host, _, port_text = hostport.rpartition(":")
    if not host or not port_text:
        raise ConfigError("URI", value, allowed)
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError("URI", value, allowed) from None
    if not 0 <= port <= 65535:
        raise ConfigError("URI", value, "port must be 0-65535")
    path = path.rstrip("/") or "/"
    if "?" in path or "#" in path:
        raise ConfigError("URI", value, "the path may not contain '?' or '#'")
    return host, port, path


def _read(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(key, path, f"a readable PEM file ({exc.strerror})") from None


def _server_tls(config: Mapping[str, str]) -> tuple[str, str] | None:
    cert = config.get("TLS_CERT") or (
        _read(config["TLS_CERT_FILE"], "TLS_CERT_FILE") if config.get("TLS_CERT_FILE") else None
    )
    key = config.get("TLS_KEY") or (
        _read(config["TLS_KEY_FILE"], "TLS_KEY_FILE") if config.get("TLS_KEY_FILE") else None
    )
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "TLS_CERT" if cert is None else "TLS_KEY"
        raise ConfigError(missing, "", "both TLS_CERT and TLS_KEY (or their _FILE forms)")
    return cert, key


def server_settings(config: Mapping[str, str]) -> ServerSettings:
    """Validate every server-mode key of a merged config."""
    host, port, path = parse_listen_uri(stripped(config, "URI", "0.0.0.0:8080"))
    rate = float_range(0, 1e12)
    secs = float_range(0, 86_400)
    ping_interval = parse(config, "PING_INTERVAL_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    ping_timeout = parse(config, "PING_TIMEOUT_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    idle = parse(config, "IDLE_TIMEOUT_SEC", 0.0, secs, "seconds, 0-86400 (0 = off)")
    publishers = stripped(config, "ALLOWED_PUBLISHERS", "")
    broadcast = stripped(config, "BROADCAST_SUBJECT", "broadcast")
    if any(c.isspace() for c in broadcast) or "*" in broadcast or ">" in broadcast:
        raise ConfigError("BROADCAST_SUBJECT", broadcast, "a subject without wildcards or spaces")
    return ServerSettings(
        host=host,
        port=port,
        path=path,
        session_tracking=parse(config, "ENABLE_SESSION_TRACKING", True, boolean, "true or false"),
        max_message_bytes=parse(
            config, "MAX_MESSAGE_BYTES", 1_048_576, int_range(64, 1 << 30), "bytes, 64-1073741824"
        ),
        max_sessions=parse(
            config, "MAX_SESSIONS", 10_000, int_range(1, 10_000_000), "an integer >= 1"
        ),
        send_queue_limit=parse(
            config, "SEND_QUEUE_LIMIT", 1024, int_range(1, 1_000_000), "an integer >= 1"
        ),
        send_queue_bytes=parse(
            config,
            "SEND_QUEUE_BYTES",
            4 * 1024 * 1024,
            int_range(1024, 1 << 30),
            "bytes, 1024-1073741824",
        ),
        slow_consumer=parse(
            config,
            "SLOW_CONSUMER",
            "disconnect",
            choice("disconnect", "drop_oldest"),
            "one of disconnect, drop_oldest",
        ),
        inbound_queue_limit=parse(
            config, "INBOUND_QUEUE_LIMIT", 64, int_range(1, 100_000), "an integer >= 1"
        ),
        demo_page=parse(config, "DEMO_PAGE", False, boolean, "true or false"),
        health_endpoints=parse(config, "HEALTH", True, boolean, "true or false"),
        metrics=parse(config, "METRICS", False, boolean, "true or false"),
        rate_limit_msgs=parse(config, "RATE_LIMIT_MSGS", 0.0, rate, "messages/s, 0 = off") or None,
        rate_limit_burst=parse(config, "RATE_LIMIT_BURST", 0.0, rate, "messages, 0 = 2x rate")
        or None,
        rate_limit_bytes=parse(config, "RATE_LIMIT_BYTES", 0.0, rate, "bytes/s, 0 = off") or None,
        rate_limit_policy=parse(
            config, "RATE_LIMIT_POLICY", "drop", choice("drop", "close"), "drop or close"
        ),
        rate_limit_close_after=parse(
            config, "RATE_LIMIT_CLOSE_AFTER", 10, int_range(1, 1_000_000), "an integer >= 1"
        ),
        connect_rate_limit=parse(
            config, "CONNECT_RATE_LIMIT", 20.0, rate, "connections/s per IP, 0 = off"
        )
        or None,
        rate_limit_loopback=explicitly_on(config, "CONNECT_RATE_LIMIT"),
        session_cap_loopback=explicitly_on(config, "MAX_SESSIONS_PER_IP"),
        max_sessions_per_ip=parse(
            config, "MAX_SESSIONS_PER_IP", 1000, int_range(0, 10_000_000), "an integer >= 0"
        ),
        max_detached_sessions=parse(
            config,
            "MAX_DETACHED_SESSIONS",
            10_000,
            int_range(0, 10_000_000),
            "an integer >= 0",
        ),
        auth=auth.auth_policy(config),
        origins=auth.origin_policy(config),
        tls=_server_tls(config),
        max_subscriptions=parse(
            config, "MAX_SUBSCRIPTIONS", 100, int_range(0, 100_000), "an integer >= 0"
        ),
        max_subscription_bytes=parse(
            config,
            "MAX_SUBSCRIPTION_BYTES",
            4096,
            int_range(1, 10_000_000),
            "characters, >= 1",
        ),
        ping_interval=ping_interval or None,
        ping_timeout=ping_timeout or None,
        idle_timeout=idle or None,
        broadcast_subject=broadcast,
        allowed_publishers=frozenset(p.strip() for p in publishers.split(",") if p.strip()),
        welcome=parse(config, "WELCOME", True, boolean, "true or false"),
        session_events=parse(config, "SESSION_EVENTS", True, boolean, "true or false"),
        compression=parse(config, "COMPRESSION", False, boolean, "on or off"),
        handler_timeout=parse(
            config, "HANDLER_TIMEOUT_SEC", 30.0, float_range(0.1, 3600), "seconds, 0.1-3600"
        ),
        resume_window=parse(
            config,
            "RESUME_WINDOW_SEC",
            120.0,
            float_range(0, 86_400),
            "seconds, 0-86400 (0 = off)",
        ),
        resume_history_messages=parse(
            config, "RESUME_HISTORY_MESSAGES", 100, int_range(1, 100_000), "an integer, 1-100000"
        ),
        resume_history_bytes=parse(
            config,
            "RESUME_HISTORY_BYTES",
            262_144,
            int_range(1024, 1 << 30),
            "bytes, 1024-1073741824",
        ),
        resume_persist=parse(config, "RESUME_PERSIST", True, boolean, "true or false"),
        reuse_port=parse(config, "REUSE_PORT", True, boolean, "true or false"),
    )
