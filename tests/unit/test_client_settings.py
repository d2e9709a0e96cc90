"""Client-mode settings and the backoff schedule (sans-I/O)."""

from __future__ import annotations

import pytest

from provider.backoff import Backoff
from provider.client import tls_context
from provider.settings import ConfigError, client_settings


def test_defaults() -> None:
    s = client_settings({"URI": "ws://example.com/socket"})
    assert s.connect_timeout == 30 and s.format == "envelope" and s.subject == "ws.message"
    assert (s.reconnect, s.reconnect_min, s.reconnect_max) == (True, 0.5, 30.0)
    assert s.outbound_buffer == 1000 and s.outbound_overflow == "error"
    assert not s.secure and tls_context(s) is None


def test_headers_and_token() -> None:
    s = client_settings(
        {
            "URI": "wss://h/x",
            "HEADER_X_API_KEY": "k3y-value",
            "AUTH_TOKEN": "t0ken-value",
            "SUBPROTOCOLS": "a, b",
        }
    )
    assert s.headers == (("x-api-key", "k3y-value"),)
    assert s.auth_token == "t0ken-value" and s.subprotocols == ("a", "b")
    assert "t0ken-value" not in repr(s) and "k3y-value" not in repr(s)  # never in logs


def test_safe_uri_hides_credentials() -> None:
    s = client_settings({"URI": "wss://user:pw@example.com:8443/p?token=secret"})
    assert s.safe_uri == "wss://example.com:8443/p"
    assert "secret" not in repr(s.safe_uri) and "pw" not in s.safe_uri


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"URI": "http://x"}, "URI"),
        ({"URI": "ws://"}, "URI"),
        ({"URI": "ws://h:99999"}, "URI"),
        ({"FORMAT": "xml"}, "FORMAT"),
        ({"RECONNECT_MIN_MS": "0"}, "RECONNECT_MIN_MS"),
        ({"RECONNECT_MIN_MS": "500", "RECONNECT_MAX_MS": "100"}, "RECONNECT_MAX_MS"),
        ({"OUTBOUND_OVERFLOW": "explode"}, "OUTBOUND_OVERFLOW"),
        ({"HEADER_X": "a\r\nInjected: 1"}, "HEADER_X"),
        ({"CONNECT_TIMEOUT_SEC": "0"}, "CONNECT_TIMEOUT_SEC"),
    ],
)
def test_bad_values(config: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        client_settings(config)
    assert info.value.key == key


def test_bad_ca_fails_at_link_time() -> None:
    s = client_settings({"URI": "wss://h/", "TLS_CA": "not a pem"})
    with pytest.raises(ConfigError, match="TLS_CA"):
        tls_context(s)


def test_full_jitter_stays_under_the_growing_cap() -> None:
    values = iter([1.0, 0.5, 0.0, 1.0, 1.0, 1.0, 1.0])
    b = Backoff(0.5, 4.0, "full", rand=lambda: next(values))
    assert [b.next_delay() for _ in range(7)] == [0.5, 0.5, 0.0, 4.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.attempt == 0 and b.cap(0) == 0.5


def test_no_jitter_doubles() -> None:
    b = Backoff(0.1, 1.0, "none")
    assert [round(b.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize(
    "config",
    [
        {"HEADER_HOST": "evil"},
        {"HEADER_SEC_WEBSOCKET_PROTOCOL": "x"},
        {"HEADER_UPGRADE": "h2c"},
        {"HEADER_AUTHORIZATION": "Basic x", "AUTH_TOKEN": "t"},
        {"URI": "ws://user:pw@h/", "AUTH_TOKEN": "t"},
    ],
)
def test_headers_the_handshake_owns_are_refused(config: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        client_settings({"URI": "ws://h/", **config})
    assert "<hidden>" in str(info.value)
    assert "pw" not in str(info.value) and "Basic" not in str(info.value)


def test_server_frames_may_use_session_subjects_in_client_mode() -> None:
    from provider import frames

    raw = b'{"subject": "ws.session.connected", "body": "x"}'
    with pytest.raises(frames.FrameError):
        frames.decode_frame(raw, False)
    assert frames.decode_frame(raw, False, allow_reserved=True).subject == "ws.session.connected"  # type: ignore[union-attr]


def test_session_tracking_key() -> None:
    assert client_settings({"URI": "ws://h/"}).session_tracking is True
    s = client_settings({"URI": "ws://h/", "ENABLE_SESSION_TRACKING": "false"})
    assert s.session_tracking is False
    with pytest.raises(ConfigError, match="ENABLE_SESSION_TRACKING='maybe': true or false"):
        client_settings({"URI": "ws://h/", "ENABLE_SESSION_TRACKING": "maybe"})
