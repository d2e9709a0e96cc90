"""The provider's error hierarchy (`provider.errors`)."""

from __future__ import annotations

import pytest

from provider import auth, settings
from provider.errors import ConfigError, PackageError, UsageError, WebSocketProviderError


def test_every_error_is_a_provider_error() -> None:
    for error in (ConfigError, PackageError, UsageError):
        assert issubclass(error, WebSocketProviderError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(UsageError, PackageError)


def test_config_error_names_key_value_and_what_is_allowed() -> None:
    error = ConfigError("MAX_SESSIONS", "lots", "a whole number, 0-1000000")
    assert str(error) == "invalid MAX_SESSIONS='lots': a whole number, 0-1000000"
    assert (error.key, error.allowed) == ("MAX_SESSIONS", "a whole number, 0-1000000")


def test_redacted_config_error_hides_the_value() -> None:
    hidden = ConfigError("AUTH_TOKENS", "s3cret", "at least one token").redacted()
    assert "s3cret" not in str(hidden)
    assert str(hidden) == "invalid AUTH_TOKENS (value from a secret, not shown): at least one token"
    assert (hidden.key, hidden.allowed) == ("AUTH_TOKENS", "at least one token")


def test_settings_and_auth_raise_the_one_config_error() -> None:
    assert settings.ConfigError is ConfigError
    with pytest.raises(ConfigError, match="AUTH='sometimes'"):
        auth.auth_policy({"AUTH": "sometimes"})
    with pytest.raises(WebSocketProviderError, match="URI"):
        settings.server_settings({"URI": "nowhere"})
