"""A pair's links and what their config says, without a host or socket (provider.links)."""

from __future__ import annotations

import logging

import pytest

from provider.links import (
    DEFAULT_HANDLER_CALL_TIMEOUT,
    PairLinks,
    ReportedKeys,
    warn_unknown_link_keys,
)
from wasmcloud_provider_sdk import LinkConfig
from wasmcloud_provider_sdk.secrets import SecretValue

KEY = ("comp", "default")


def link(side: str, config: dict[str, str], secrets: dict[str, str] | None = None) -> LinkConfig:
    consumer = side == "target"
    return LinkConfig(
        source_id="comp" if consumer else "prov",
        target_id="prov" if consumer else "comp",
        link_name="default",
        wit_namespace="wasmcloud",
        wit_package="messaging",
        interfaces=("consumer",) if consumer else ("handler",),
        config=config,
        secrets={k: SecretValue(kind="String", value=v) for k, v in (secrets or {}).items()},
    )


def test_effective_config_layers_provider_consumer_handler_then_secrets() -> None:
    links = PairLinks()
    assert not links.has_link(KEY)
    links.consumer[KEY] = link("target", {"mode": "server", "URI": "a"}, {"auth_token": "s1"})
    links.handler[KEY] = link("source", {"URI": "b", "PATH": "/x"}, {"URI": "c"})
    assert links.has_link(KEY)
    merged = links.effective_config(KEY, {"MODE": "client", "MAX_CLIENTS": "5"})
    assert merged == {
        "MODE": "server",
        "MAX_CLIENTS": "5",
        "URI": "c",  # a secret beats config of the same name
        "PATH": "/x",
        "AUTH_TOKEN": "s1",
    }
    assert links.secret_names(KEY) == {"AUTH_TOKEN", "URI"}
    assert links.effective_config(("other", "default"), {"MODE": "client"}) == {"MODE": "client"}


@pytest.mark.parametrize(
    ("provider", "link_value", "timeout"),
    [
        ({}, None, DEFAULT_HANDLER_CALL_TIMEOUT),
        ({}, "5", 6.0),
        ({"HANDLER_TIMEOUT_SEC": "2"}, None, 3.0),
        ({}, "0", 1.1),  # at least 0.1 s, plus the second
        ({}, "soon", DEFAULT_HANDLER_CALL_TIMEOUT),
    ],
)
def test_handler_call_timeout_is_a_second_over_handler_timeout(
    provider: dict[str, str], link_value: str | None, timeout: float
) -> None:
    links = PairLinks()
    config = {} if link_value is None else {"HANDLER_TIMEOUT_SEC": link_value}
    links.handler[KEY] = link("source", config)
    assert links.handler_call_timeout(KEY, provider) == pytest.approx(timeout)


def test_unknown_link_keys_are_warned_once_per_link(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "provider.links")
    old = link("target", {"MODE": "server", "MAX_CLIENT": "v4lue-never-logged"})
    warn_unknown_link_keys(old, "target")
    [first] = [r.getMessage() for r in caplog.records]
    assert first.startswith("link comp -> prov (default), target config: ")
    assert "MAX_CLIENT" in first and "v4lue-never-logged" not in first
    caplog.clear()
    # An update: only keys the old link did not have.
    warn_unknown_link_keys(link("target", {"max_client": "4", "PTH": "/"}), "target", old)
    [second] = [r.getMessage() for r in caplog.records]
    assert "PTH" in second and "MAX_CLIENT" not in second.upper()


def test_provider_keys_are_reported_once_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "provider.links")
    reported = ReportedKeys()
    reported.report({"MODEE": "server", "MODE": "server"})
    reported.report({"modee": "x"})
    reported.report({"PATHH": "/"})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "MODEE" in messages[0] and "PATHH" in messages[1]
    assert all(m.startswith("provider config: ") for m in messages)
