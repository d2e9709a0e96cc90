"""The link-config keys of both modes: which exist, the mode a config selects, and the
warning for a key nobody reads (with the closest known key). Sans-I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from .values import choice, parse

#: Every config key the provider reads, in either mode (upper case; keys are matched
#: case-insensitively). Provider-level config applies to links of both modes, so a key is
#: "known" when any mode reads it. `tests/unit/test_settings.py` checks this set against what
#: the parsers (server.py, client.py) read and against the README's tables.
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
        "REUSE_PORT",
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
        # provider-level: worker processes and the event loop (read by the SDK from the
        # provider config)
        "WORKERS",
        "EVENT_LOOP",
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


def mode_of(config: Mapping[str, str]) -> str:
    """`client` (the default, as in the original design) or `server`."""
    return parse(config, "MODE", "client", choice("client", "server"), "one of client, server")
