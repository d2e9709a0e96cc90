"""Validated settings of a (component, link name) pair from its merged config. Sans-I/O.

Every key is checked when the link arrives; a bad value raises `ConfigError` naming the key,
the value and what is allowed, and fails only that link. Defaults are explained where set.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from . import auth
from .auth import AuthPolicy, OriginPolicy
from .errors import ConfigError as ConfigError

T = TypeVar("T")

DEFAULT_SERVER_PATH = "/ws"

#: Every config key the provider reads, in either mode (upper case; keys are matched
#: case-insensitively). Provider-level config applies to links of both modes, so a key is
#: "known" when any mode reads it. `tests/unit/test_settings.py` checks this set against what
#: the parsers below read and against the README's tables.
KNOWN_KEYS = frozenset(
    {
        # both modes
        "MODE",
        "URI",
        "ENABLE_SESSION_TRACKING",
        "MAX_MESSAGE_BYTES",
        "INBOUND_QUEUE_LIMIT",
        "HANDLER_TIMEOUT_SEC",
        "PING_INTERVAL_SEC",
        "PING_TIMEOUT_SEC",
        # server mode
        "MAX_SESSIONS",
        "SEND_QUEUE_LIMIT",
        "SEND_QUEUE_BYTES",
        "SLOW_CONSUMER",
        "MAX_SESSIONS_PER_IP",
        "MAX_DETACHED_SESSIONS",
        "MAX_SUBSCRIPTION_BYTES",
        "IDLE_TIMEOUT_SEC",
        "BROADCAST_SUBJECT",
        "ALLOWED_PUBLISHERS",
        "WELCOME",
        "SESSION_EVENTS",
        "RESUME_WINDOW_SEC",
        "RESUME_HISTORY_MESSAGES",
        "RESUME_HISTORY_BYTES",
        "RESUME_PERSIST",
        "COMPRESSION",
        "MAX_SUBSCRIPTIONS",
        "AUTH",
        "AUTH_TOKENS",
        "AUTH_SOURCES",
        "JWT_SECRET",
        "JWT_PUBLIC_KEY",
        "JWT_JWKS_FILE",
        "JWT_ALGORITHMS",
        "JWT_AUDIENCE",
        "JWT_ISSUER",
        "JWT_LEEWAY_SEC",
        "ALLOWED_ORIGINS",
        "ALLOW_NO_ORIGIN",
        "TLS_CERT",
        "TLS_KEY",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "RATE_LIMIT_MSGS",
        "RATE_LIMIT_BURST",
        "RATE_LIMIT_BYTES",
        "RATE_LIMIT_POLICY",
        "RATE_LIMIT_CLOSE_AFTER",
        "CONNECT_RATE_LIMIT",
        "DEMO_PAGE",
        "METRICS",
        "HEALTH",
        # client mode
        "CONNECT_TIMEOUT_SEC",
        "AUTH_TOKEN",
        "SUBPROTOCOLS",
        "FORMAT",
        "SUBJECT",
        "RAW_BINARY",
        "RECONNECT",
        "RECONNECT_MIN_MS",
        "RECONNECT_MAX_MS",
        "RECONNECT_JITTER",
        "RECONNECT_RESET_SEC",
        "OUTBOUND_BUFFER",
        "OUTBOUND_BUFFER_BYTES",
        "OUTBOUND_OVERFLOW",
        "TLS_CA",
        "TLS_CA_FILE",
        "TLS_CLIENT_CERT",
        "TLS_CLIENT_KEY",
        "TLS_CLIENT_CERT_FILE",
        "TLS_CLIENT_KEY_FILE",
        "TLS_INSECURE_SKIP_VERIFY",
        "TLS_SERVER_NAME",
        # provider-level telemetry overrides (read by the SDK from the provider config)
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_METRIC_EXPORT_INTERVAL",
    }
)
#: Open-ended families: any key with this prefix is meaningful (`HEADER_X_API_KEY`).
OPEN_KEY_PREFIXES = ("HEADER_",)


def unknown_keys(keys: Iterable[str]) -> list[tuple[str, str | None]]:
    """The keys (as written) that no mode reads, each with the closest known key or None.

    For warnings about misspelled keys: an unknown key is ignored, which otherwise looks like
    the setting not working. Only names are involved, never values.
    """
    found: list[tuple[str, str | None]] = []
    for key in keys:
        upper = key.strip().upper()
        if upper in KNOWN_KEYS or any(
            upper.startswith(p) and len(upper) > len(p) for p in OPEN_KEY_PREFIXES
        ):
            continue
        close = difflib.get_close_matches(upper, KNOWN_KEYS, n=1, cutoff=0.6)
        found.append((key, close[0] if close else None))
    return found


def describe_unknown_keys(unknown: list[tuple[str, str | None]]) -> str:
    """`unknown config key 'MAX_SESIONS' (did you mean MAX_SESSIONS?)`, several joined."""
    parts = [
        f"'{key}' (did you mean {closest}?)" if closest else f"'{key}' (no similar key)"
        for key, closest in unknown
    ]
    noun = "key" if len(parts) == 1 else "keys"
    return f"unknown config {noun} {', '.join(parts)}: ignored"


def _get(config: Mapping[str, str], key: str, default: str) -> str:
    value = config.get(key)
    return default if value is None or value.strip() == "" else value.strip()


def _parse(
    config: Mapping[str, str], key: str, default: T, convert: Callable[[str], T], allowed: str
) -> T:
    raw = config.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return convert(raw.strip())
    except (ValueError, TypeError):
        raise ConfigError(key, raw, allowed) from None


def _explicitly_on(config: Mapping[str, str], key: str) -> bool:
    """Is `key` set, to something other than 0 (off)?"""
    raw = (config.get(key) or "").strip()
    try:
        return bool(raw) and float(raw) != 0
    except ValueError:
        return False  # the key's own parse reports it


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return convert


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return convert


def _choice(*options: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        lowered = text.lower()
        if lowered not in options:
            raise ValueError(text)
        return lowered

    return convert


def mode_of(config: Mapping[str, str]) -> str:
    """`client` (the default, as in the original design) or `server`."""
    return _parse(config, "MODE", "client", _choice("client", "server"), "one of client, server")


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
    host, port, path = parse_listen_uri(_get(config, "URI", "0.0.0.0:8080"))
    rate = _float_range(0, 1e12)
    secs = _float_range(0, 86_400)
    ping_interval = _parse(config, "PING_INTERVAL_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    ping_timeout = _parse(config, "PING_TIMEOUT_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    idle = _parse(config, "IDLE_TIMEOUT_SEC", 0.0, secs, "seconds, 0-86400 (0 = off)")
    publishers = _get(config, "ALLOWED_PUBLISHERS", "")
    broadcast = _get(config, "BROADCAST_SUBJECT", "broadcast")
    if any(c.isspace() for c in broadcast) or "*" in broadcast or ">" in broadcast:
        raise ConfigError("BROADCAST_SUBJECT", broadcast, "a subject without wildcards or spaces")
    return ServerSettings(
        host=host,
        port=port,
        path=path,
        session_tracking=_parse(config, "ENABLE_SESSION_TRACKING", True, _bool, "true or false"),
        max_message_bytes=_parse(
            config, "MAX_MESSAGE_BYTES", 1_048_576, _int_range(64, 1 << 30), "bytes, 64-1073741824"
        ),
        max_sessions=_parse(
            config, "MAX_SESSIONS", 10_000, _int_range(1, 10_000_000), "an integer >= 1"
        ),
        send_queue_limit=_parse(
            config, "SEND_QUEUE_LIMIT", 1024, _int_range(1, 1_000_000), "an integer >= 1"
        ),
        send_queue_bytes=_parse(
            config,
            "SEND_QUEUE_BYTES",
            4 * 1024 * 1024,
            _int_range(1024, 1 << 30),
            "bytes, 1024-1073741824",
        ),
        slow_consumer=_parse(
            config,
            "SLOW_CONSUMER",
            "disconnect",
            _choice("disconnect", "drop_oldest"),
            "one of disconnect, drop_oldest",
        ),
        inbound_queue_limit=_parse(
            config, "INBOUND_QUEUE_LIMIT", 64, _int_range(1, 100_000), "an integer >= 1"
        ),
        demo_page=_parse(config, "DEMO_PAGE", False, _bool, "true or false"),
        health_endpoints=_parse(config, "HEALTH", True, _bool, "true or false"),
        metrics=_parse(config, "METRICS", False, _bool, "true or false"),
        rate_limit_msgs=_parse(config, "RATE_LIMIT_MSGS", 0.0, rate, "messages/s, 0 = off") or None,
        rate_limit_burst=_parse(config, "RATE_LIMIT_BURST", 0.0, rate, "messages, 0 = 2x rate")
        or None,
        rate_limit_bytes=_parse(config, "RATE_LIMIT_BYTES", 0.0, rate, "bytes/s, 0 = off") or None,
        rate_limit_policy=_parse(
            config, "RATE_LIMIT_POLICY", "drop", _choice("drop", "close"), "drop or close"
        ),
        rate_limit_close_after=_parse(
            config, "RATE_LIMIT_CLOSE_AFTER", 10, _int_range(1, 1_000_000), "an integer >= 1"
        ),
        connect_rate_limit=_parse(
            config, "CONNECT_RATE_LIMIT", 20.0, rate, "connections/s per IP, 0 = off"
        )
        or None,
        rate_limit_loopback=_explicitly_on(config, "CONNECT_RATE_LIMIT"),
        session_cap_loopback=_explicitly_on(config, "MAX_SESSIONS_PER_IP"),
        max_sessions_per_ip=_parse(
            config, "MAX_SESSIONS_PER_IP", 1000, _int_range(0, 10_000_000), "an integer >= 0"
        ),
        max_detached_sessions=_parse(
            config,
            "MAX_DETACHED_SESSIONS",
            10_000,
            _int_range(0, 10_000_000),
            "an integer >= 0",
        ),
        auth=auth.auth_policy(config),
        origins=auth.origin_policy(config),
        tls=_server_tls(config),
        max_subscriptions=_parse(
            config, "MAX_SUBSCRIPTIONS", 100, _int_range(0, 100_000), "an integer >= 0"
        ),
        max_subscription_bytes=_parse(
            config,
            "MAX_SUBSCRIPTION_BYTES",
            4096,
            _int_range(1, 10_000_000),
            "characters, >= 1",
        ),
        ping_interval=ping_interval or None,
        ping_timeout=ping_timeout or None,
        idle_timeout=idle or None,
        broadcast_subject=broadcast,
        allowed_publishers=frozenset(p.strip() for p in publishers.split(",") if p.strip()),
        welcome=_parse(config, "WELCOME", True, _bool, "true or false"),
        session_events=_parse(config, "SESSION_EVENTS", True, _bool, "true or false"),
        compression=_parse(config, "COMPRESSION", False, _bool, "on or off"),
        handler_timeout=_parse(
            config, "HANDLER_TIMEOUT_SEC", 30.0, _float_range(0.1, 3600), "seconds, 0.1-3600"
        ),
        resume_window=_parse(
            config,
            "RESUME_WINDOW_SEC",
            120.0,
            _float_range(0, 86_400),
            "seconds, 0-86400 (0 = off)",
        ),
        resume_history_messages=_parse(
            config, "RESUME_HISTORY_MESSAGES", 100, _int_range(1, 100_000), "an integer, 1-100000"
        ),
        resume_history_bytes=_parse(
            config,
            "RESUME_HISTORY_BYTES",
            262_144,
            _int_range(1024, 1 << 30),
            "bytes, 1024-1073741824",
        ),
        resume_persist=_parse(config, "RESUME_PERSIST", True, _bool, "true or false"),
    )


@dataclass(frozen=True)
class ClientSettings:
    """An outbound connection (client mode): where to connect, how, and how to recover."""

    uri: str
    connect_timeout: float = 30.0
    auth_token: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    subprotocols: tuple[str, ...] = ()
    format: str = "envelope"
    subject: str = "ws.message"
    raw_binary: bool = False
    reconnect: bool = True
    #: Full-jitter exponential backoff between 0 and min(max, min * 2**attempt), the scheme
    #: most widely used clients (AWS SDKs, gRPC) follow; 0.5 s to 30 s by default.
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    jitter: str = "full"
    #: A connection that stayed up this long resets the backoff to its first step.
    reconnect_reset: float = 10.0
    #: Messages kept while disconnected (flushed in order after reconnect).
    outbound_buffer: int = 1000
    outbound_overflow: str = "error"
    #: Bytes kept while disconnected, whatever the message count (16 MiB).
    outbound_buffer_bytes: int = 16 * 1024 * 1024
    inbound_queue_limit: int = 64
    handler_timeout: float = 30.0
    max_message_bytes: int = 1_048_576
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    tls_ca: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_client_cert: str | None = field(default=None, repr=False)
    tls_client_key: str | None = field(default=None, repr=False)
    tls_client_cert_file: str | None = None
    tls_client_key_file: str | None = None
    tls_insecure_skip_verify: bool = False
    tls_server_name: str | None = None
    #: Give the connection a session id, list it in `list_ws_clients` and let its owner
    #: address it by that id (routing rule 1); off: neither (the connection still works).
    session_tracking: bool = True

    @property
    def secure(self) -> bool:
        """True for wss://."""
        return self.uri.lower().startswith("wss://")

    @property
    def safe_uri(self) -> str:
        """The URI without user info or query (for logs and health messages)."""
        parts = urlsplit(self.uri)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


RESERVED_HEADERS = frozenset({"host", "connection", "upgrade", "content-length"})


def _client_uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise ValueError(value)
    _ = parts.port  # raises ValueError on a bad port
    if parts.username is not None and parts.password is None:
        raise ValueError(value)  # websockets needs user:password; a bare token goes elsewhere
    return value


def _is_listen_address(value: str) -> bool:
    """`0.0.0.0:8080/ws`-like (no scheme, or http): what server mode's URI looks like."""
    text = value.strip()
    if "://" in text and not text.lower().startswith(("http://", "https://")):
        return False
    try:
        parse_listen_uri(text)
    except ConfigError:
        return False
    return True


def _redact_uri(value: str) -> str:
    parts = urlsplit(value)
    if "@" in parts.netloc:
        return value.replace(parts.netloc, "<user info>@" + parts.netloc.rpartition("@")[2], 1)
    return value


def client_settings(config: Mapping[str, str]) -> ClientSettings:
    """Validate every client-mode key of a merged config."""
    try:
        uri = _parse(config, "URI", "ws://127.0.0.1:8080", _client_uri, "")
    except ConfigError:
        if _is_listen_address(config.get("URI", "")):
            # The usual slip: a server endpoint whose MODE was left out (or misspelled).
            mode = "MODE is not set" if "MODE" not in config else "MODE is client"
            raise ConfigError(
                "URI",
                config.get("URI", ""),
                f"{mode}, so the URI must be a ws:// or wss:// URL to connect to; this is "
                "an address to listen on: add MODE=server to serve WebSocket clients there",
            ) from None
        raise ConfigError(
            "URI",
            _redact_uri(config.get("URI", "")),
            "a ws:// or wss:// URL with a host (user info as user:password; tokens go in "
            "AUTH_TOKEN), e.g. wss://example.com/socket",
        ) from None
    secs = _float_range(0, 86_400)
    fmt = _parse(config, "FORMAT", "envelope", _choice("envelope", "raw"), "envelope or raw")
    min_ms = _parse(config, "RECONNECT_MIN_MS", 500, _int_range(1, 3_600_000), "milliseconds >= 1")
    max_ms = _parse(
        config, "RECONNECT_MAX_MS", 30_000, _int_range(1, 86_400_000), "milliseconds >= 1"
    )
    if max_ms < min_ms:
        raise ConfigError("RECONNECT_MAX_MS", str(max_ms), f"at least RECONNECT_MIN_MS ({min_ms})")
    headers = tuple(
        (key[len("HEADER_") :].replace("_", "-").lower(), value)
        for key, value in config.items()
        if key.startswith("HEADER_") and len(key) > len("HEADER_")
    )
    auth_token = config.get("AUTH_TOKEN") or None
    for name, value in headers:
        key = f"HEADER_{name.upper().replace('-', '_')}"
        if "\r" in value or "\n" in value or not all(c.isalnum() or c == "-" for c in name):
            raise ConfigError(
                key,
                "<hidden>",
                "a header name of letters, digits and '_', and a value without line breaks",
            )
        if name in RESERVED_HEADERS or name.startswith("sec-websocket-"):
            raise ConfigError(
                key,
                "<hidden>",
                "a header the WebSocket handshake sets (use URI, SUBPROTOCOLS or AUTH_TOKEN)",
            )
        if name == "authorization" and auth_token:
            raise ConfigError(
                key, "<hidden>", "not together with AUTH_TOKEN (which sends Authorization itself)"
            )
    if auth_token and urlsplit(uri).username is not None:
        raise ConfigError(
            "URI",
            "<hidden>",
            "no user info in the URI together with AUTH_TOKEN (both send an Authorization header)",
        )
    subprotocols = tuple(
        p.strip() for p in _get(config, "SUBPROTOCOLS", "").split(",") if p.strip()
    )
    ping_interval = _parse(config, "PING_INTERVAL_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    ping_timeout = _parse(config, "PING_TIMEOUT_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    return ClientSettings(
        uri=uri,
        connect_timeout=_parse(
            config, "CONNECT_TIMEOUT_SEC", 30.0, _float_range(0.01, 3600), "seconds, 0.01-3600"
        ),
        auth_token=auth_token,
        headers=headers,
        subprotocols=subprotocols,
        format=fmt,
        subject=_get(config, "SUBJECT", "ws.message"),
        raw_binary=_parse(config, "RAW_BINARY", False, _bool, "true or false"),
        reconnect=_parse(config, "RECONNECT", True, _bool, "true or false"),
        reconnect_min=min_ms / 1000,
        reconnect_max=max_ms / 1000,
        jitter=_parse(config, "RECONNECT_JITTER", "full", _choice("full", "none"), "full or none"),
        reconnect_reset=_parse(config, "RECONNECT_RESET_SEC", 10.0, secs, "seconds, 0-86400"),
        outbound_buffer=_parse(
            config, "OUTBOUND_BUFFER", 1000, _int_range(0, 10_000_000), "an integer >= 0"
        ),
        outbound_buffer_bytes=_parse(
            config,
            "OUTBOUND_BUFFER_BYTES",
            16 * 1024 * 1024,
            _int_range(1024, 1 << 40),
            "bytes >= 1024",
        ),
        outbound_overflow=_parse(
            config,
            "OUTBOUND_OVERFLOW",
            "error",
            _choice("error", "drop_oldest"),
            "error or drop_oldest",
        ),
        inbound_queue_limit=_parse(
            config, "INBOUND_QUEUE_LIMIT", 64, _int_range(1, 100_000), "an integer >= 1"
        ),
        handler_timeout=_parse(
            config, "HANDLER_TIMEOUT_SEC", 30.0, _float_range(0.1, 3600), "seconds, 0.1-3600"
        ),
        max_message_bytes=_parse(
            config, "MAX_MESSAGE_BYTES", 1_048_576, _int_range(64, 1 << 30), "bytes, 64-1073741824"
        ),
        ping_interval=ping_interval or None,
        ping_timeout=ping_timeout or None,
        tls_ca=config.get("TLS_CA") or None,
        tls_ca_file=config.get("TLS_CA_FILE") or None,
        tls_client_cert=config.get("TLS_CLIENT_CERT") or None,
        tls_client_key=config.get("TLS_CLIENT_KEY") or None,
        tls_client_cert_file=config.get("TLS_CLIENT_CERT_FILE") or None,
        tls_client_key_file=config.get("TLS_CLIENT_KEY_FILE") or None,
        tls_insecure_skip_verify=_parse(
            config, "TLS_INSECURE_SKIP_VERIFY", False, _bool, "true or false"
        ),
        tls_server_name=config.get("TLS_SERVER_NAME") or None,
        session_tracking=_parse(config, "ENABLE_SESSION_TRACKING", True, _bool, "true or false"),
    )
