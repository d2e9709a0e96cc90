"""Client-mode settings: `ClientSettings` and the validation of its keys. Sans-I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigError
from .server import parse_listen_uri
from .values import boolean, choice, float_range, int_range, parse, stripped


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
        uri = parse(config, "URI", "ws://127.0.0.1:8080", _client_uri, "")
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
    secs = float_range(0, 86_400)
    fmt = parse(config, "FORMAT", "envelope", choice("envelope", "raw"), "envelope or raw")
    min_ms = parse(config, "RECONNECT_MIN_MS", 500, int_range(1, 3_600_000), "milliseconds >= 1")
    max_ms = parse(
        config, "RECONNECT_MAX_MS", 30_000, int_range(1, 86_400_000), "milliseconds >= 1"
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
        p.strip() for p in stripped(config, "SUBPROTOCOLS", "").split(",") if p.strip()
    )
    ping_interval = parse(config, "PING_INTERVAL_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    ping_timeout = parse(config, "PING_TIMEOUT_SEC", 20.0, secs, "seconds, 0-86400 (0 = off)")
    return ClientSettings(
        uri=uri,
        connect_timeout=parse(
            config, "CONNECT_TIMEOUT_SEC", 30.0, float_range(0.01, 3600), "seconds, 0.01-3600"
        ),
        auth_token=auth_token,
        headers=headers,
        subprotocols=subprotocols,
        format=fmt,
        subject=stripped(config, "SUBJECT", "ws.message"),
        raw_binary=parse(config, "RAW_BINARY", False, boolean, "true or false"),
        reconnect=parse(config, "RECONNECT", True, boolean, "true or false"),
        reconnect_min=min_ms / 1000,
        reconnect_max=max_ms / 1000,
        jitter=parse(config, "RECONNECT_JITTER", "full", choice("full", "none"), "full or none"),
        reconnect_reset=parse(config, "RECONNECT_RESET_SEC", 10.0, secs, "seconds, 0-86400"),
        outbound_buffer=parse(
            config, "OUTBOUND_BUFFER", 1000, int_range(0, 10_000_000), "an integer >= 0"
        ),
        outbound_buffer_bytes=parse(
            config,
            "OUTBOUND_BUFFER_BYTES",
            16 * 1024 * 1024,
            int_range(1024, 1 << 40),
            "bytes >= 1024",
        ),
        outbound_overflow=parse(
            config,
            "OUTBOUND_OVERFLOW",
            "error",
            choice("error", "drop_oldest"),
            "error or drop_oldest",
        ),
        inbound_queue_limit=parse(
            config, "INBOUND_QUEUE_LIMIT", 64, int_range(1, 100_000), "an integer >= 1"
        ),
        handler_timeout=parse(
            config, "HANDLER_TIMEOUT_SEC", 30.0, float_range(0.1, 3600), "seconds, 0.1-3600"
        ),
        max_message_bytes=parse(
            config, "MAX_MESSAGE_BYTES", 1_048_576, int_range(64, 1 << 30), "bytes, 64-1073741824"
        ),
        ping_interval=ping_interval or None,
        ping_timeout=ping_timeout or None,
        tls_ca=config.get("TLS_CA") or None,
        tls_ca_file=config.get("TLS_CA_FILE") or None,
        tls_client_cert=config.get("TLS_CLIENT_CERT") or None,
        tls_client_key=config.get("TLS_CLIENT_KEY") or None,
        tls_client_cert_file=config.get("TLS_CLIENT_CERT_FILE") or None,
        tls_client_key_file=config.get("TLS_CLIENT_KEY_FILE") or None,
        tls_insecure_skip_verify=parse(
            config, "TLS_INSECURE_SKIP_VERIFY", False, boolean, "true or false"
        ),
        tls_server_name=config.get("TLS_SERVER_NAME") or None,
        session_tracking=parse(config, "ENABLE_SESSION_TRACKING", True, boolean, "true or false"),
    )
