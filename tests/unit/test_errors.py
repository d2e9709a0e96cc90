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


def test_no_such_session_is_a_type_and_an_ordinary_err_on_the_wire() -> None:
    from provider.errors import NoSuchSession
    from wasmcloud_provider_sdk.messaging import Err, encode_unit_result

    error = NoSuchSession.of("ws_abc")
    assert isinstance(error, Err) and isinstance(error, NoSuchSession)
    assert error.message == "no such session: ws_abc"
    assert not isinstance(Err("no such session: ws_abc"), NoSuchSession)  # the text is not it
    assert error == Err("no such session: ws_abc") and Err("no such session: ws_abc") == error
    assert error != Err("no such session: ws_xyz")
    assert encode_unit_result(error) == encode_unit_result(Err("no such session: ws_abc"))


def test_no_such_session_equals_the_plain_err_with_its_text() -> None:
    from provider.errors import NoSuchSession
    from wasmcloud_provider_sdk.messaging import Err

    error = NoSuchSession.of("ws_abc")
    assert error == Err("no such session: ws_abc") and Err("no such session: ws_abc") == error
    assert hash(error) == hash(Err("no such session: ws_abc"))
    assert error != Err("no such session: ws_other") and error != "no such session: ws_abc"


def test_every_product_error_is_under_the_one_base() -> None:
    import provider.errors as errors

    classes = [
        getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), BaseException)
    ]
    assert len(classes) >= 11
    assert all(issubclass(c, errors.WebSocketProviderError) for c in classes)
