"""Server settings from merged config: defaults, validation messages, URI parsing."""

from __future__ import annotations

import pytest

from provider.config import merge_config
from provider.settings import ConfigError, mode_of, parse_listen_uri, server_settings
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
    assert s.max_detached_sessions == 10_000 and s.limit_loopback is False
    assert server_settings({"MAX_SESSIONS_PER_IP": "5"}).limit_loopback is True


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
