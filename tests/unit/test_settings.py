"""Server settings from merged config: defaults, validation messages, URI parsing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from provider.config import merge_config
from provider.settings import (
    KNOWN_KEYS,
    ConfigError,
    client_settings,
    describe_unknown_keys,
    mode_of,
    parse_listen_uri,
    server_settings,
    unknown_keys,
)
from wasmcloud_provider_sdk import SecretValue


def test_defaults() -> None:
    s = server_settings({})
    assert (s.host, s.port, s.path) == ("0.0.0.0", 8080, "/ws")
    assert s.max_message_bytes == 1_048_576 and s.max_sessions == 10_000
    assert s.send_queue_limit == 1024 and s.slow_consumer == "disconnect"
    assert (s.ping_interval, s.ping_timeout, s.idle_timeout) == (20.0, 20.0, None)
    assert s.broadcast_subject == "broadcast" and s.welcome and s.session_events
    assert s.compression is False and s.session_tracking is True
    assert s.resume_window == 120 and s.resumable and s.resume_persist
    assert (s.resume_history_messages, s.resume_history_bytes) == (100, 262_144)
    assert mode_of({}) == "client"
    # Hostile clients: limits on by default (loopback clients exempt unless configured).
    assert s.send_queue_bytes == 4 * 1024 * 1024
    assert (s.connect_rate_limit, s.max_sessions_per_ip) == (20.0, 1000)
    assert s.max_detached_sessions == 10_000
    assert not s.rate_limit_loopback and not s.session_cap_loopback
    explicit = server_settings({"MAX_SESSIONS_PER_IP": "5", "CONNECT_RATE_LIMIT": "0"})
    assert explicit.session_cap_loopback and not explicit.rate_limit_loopback


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080, "/ws")),
        ("127.0.0.1:9000/chat", ("127.0.0.1", 9000, "/chat")),
        ("ws://localhost:1/a/b/", ("localhost", 1, "/a/b")),
        ("[::1]:8080/x", ("::1", 8080, "/x")),
    ],
)
def test_listen_uri(uri: str, expected: tuple[str, int, str]) -> None:
    assert parse_listen_uri(uri) == expected


@pytest.mark.parametrize("uri", ["8080", "host:", ":80", "host:notaport", "h:99999", "h:1/a?b"])
def test_bad_listen_uri(uri: str) -> None:
    with pytest.raises(ConfigError, match="URI"):
        parse_listen_uri(uri)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("MAX_SESSIONS", "0", "an integer >= 1"),
        ("MAX_MESSAGE_BYTES", "big", "bytes"),
        ("SLOW_CONSUMER", "panic", "disconnect, drop_oldest"),
        ("PING_INTERVAL_SEC", "-1", "seconds"),
        ("WELCOME", "perhaps", "true or false"),
        ("BROADCAST_SUBJECT", "all.*", "without wildcards"),
        ("COMPRESSION", "gzip", "on or off"),
        ("RESUME_WINDOW_SEC", "forever", "seconds"),
        ("RESUME_HISTORY_MESSAGES", "0", "1-100000"),
        ("RESUME_HISTORY_BYTES", "10", "bytes"),
        ("RESUME_PERSIST", "maybe", "true or false"),
    ],
)
def test_bad_values_name_key_value_and_allowed(key: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        server_settings({key: value})
    message = str(info.value)
    assert key in message and repr(value) in message and allowed in message


def test_resume_needs_a_window_and_the_session_table() -> None:
    assert not server_settings({"RESUME_WINDOW_SEC": "0"}).resumable
    assert not server_settings({"ENABLE_SESSION_TRACKING": "false"}).resumable


def test_zero_turns_timers_off() -> None:
    s = server_settings({"PING_INTERVAL_SEC": "0", "IDLE_TIMEOUT_SEC": "0"})
    assert s.ping_interval is None and s.idle_timeout is None


def test_merge_order_and_case() -> None:
    merged = merge_config(
        {"mode": "client", "a": "provider"},
        {"MODE": "server", "b": "consumer"},
        {"Mode": "server", "a": "handler"},
        {"auth_token": SecretValue(kind="String", value="s")},
    )
    assert merged == {"MODE": "server", "A": "handler", "B": "consumer", "AUTH_TOKEN": "s"}


# --- misspelled keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "closest"),
    [
        ("MAX_SESIONS", "MAX_SESSIONS"),
        ("max_sesions", "MAX_SESSIONS"),  # as written, matched case-insensitively
        ("PING_INTERVAL", "PING_INTERVAL_SEC"),
        ("MDOE", "MODE"),
        ("AUTH_TOKNS", "AUTH_TOKENS"),
        ("SESION_EVENTS", "SESSION_EVENTS"),
        ("COLOUR", None),
    ],
)
def test_unknown_key_names_the_closest_known_key(key: str, closest: str | None) -> None:
    assert unknown_keys([key]) == [(key, closest)]


def test_known_and_open_ended_keys_are_not_reported() -> None:
    keys = ["MODE", "uri", "Max_Sessions", "HEADER_X_API_KEY", "header_authorization_2"]
    assert unknown_keys(keys) == []
    assert unknown_keys(["HEADER_"]) == [("HEADER_", None)]  # the prefix alone names nothing


def test_unknown_key_message_names_keys_never_values() -> None:
    message = describe_unknown_keys(unknown_keys(["MAX_SESIONS", "COLOUR"]))
    assert message == (
        "unknown config keys 'MAX_SESIONS' (did you mean MAX_SESSIONS?), "
        "'COLOUR' (no similar key): ignored"
    )


class Recording(dict[str, str]):
    """A config that records every key the parsers look up."""

    def __init__(self, data: dict[str, str]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: object = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def test_known_keys_are_exactly_what_the_parsers_read(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}')
    read: set[str] = set()
    for config in (
        {"MODE": "server", "AUTH": "jwt", "JWT_SECRET": "s", "JWT_JWKS_FILE": str(jwks)},
        {"MODE": "server", "AUTH": "token", "AUTH_TOKENS": "t"},
    ):
        recording = Recording(config)
        mode_of(recording)
        server_settings(recording)
        read |= recording.read
    recording = Recording({"MODE": "client", "URI": "ws://127.0.0.1:1"})
    client_settings(recording)
    read |= recording.read
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_METRIC_EXPORT_INTERVAL",
    }
    sdk = {"WORKERS", "EVENT_LOOP"}  # read by the SDK (`workers`, `eventloop`)
    assert read | otel | sdk == KNOWN_KEYS


def test_known_keys_are_the_readme_tables() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented: set[str] = set()
    for line in readme.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    assert "HEADER_" in documented or "HEADER_<NAME>" in readme
    documented.discard("HEADER_")
    otel = {k for k in KNOWN_KEYS if k.startswith("OTEL_")}
    assert all(k in readme for k in otel)  # documented in prose (Observability)
    assert documented >= KNOWN_KEYS - otel, sorted(KNOWN_KEYS - otel - documented)
    config_like = {k for k in documented if k not in KNOWN_KEYS and "_" in k}
    assert not config_like, f"documented but not read: {sorted(config_like)}"


def test_a_listen_address_without_mode_server_says_to_add_it() -> None:
    with pytest.raises(ConfigError) as info:
        client_settings({"URI": "0.0.0.0:8080/ws"})
    assert "MODE is not set" in str(info.value) and "add MODE=server" in str(info.value)
    with pytest.raises(ConfigError) as info:
        client_settings({"MODE": "client", "URI": "127.0.0.1:9000"})
    assert "MODE is client" in str(info.value) and "add MODE=server" in str(info.value)
    with pytest.raises(ConfigError) as info:  # not a listen address: the usual message
        client_settings({"URI": "ftp://example.com"})
    assert "MODE=server" not in str(info.value)
