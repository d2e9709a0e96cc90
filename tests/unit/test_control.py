"""The control plane's sans-I/O part: subjects, and reading link, config and shutdown messages."""

from __future__ import annotations

import json

import pytest

from wasmcloud_provider_sdk.control import (
    ControlSubjects,
    link_description,
    parse_config_update,
    parse_link_definition,
    shutdown_host_id,
    side_config,
)
from wasmcloud_provider_sdk.errors import LinkError
from wasmcloud_provider_sdk.links import Role
from wasmcloud_provider_sdk.secrets import SecretValue

LINK = {
    "source_id": "comp1",
    "target": "prov1",
    "name": "default",
    "wit_namespace": "wasmcloud",
    "wit_package": "messaging",
    "interfaces": ["consumer"],
    "source_config": {"side": "source"},
    "target_config": {"side": "target"},
}


def test_subjects_put_on_the_xkey_the_rest_on_the_provider_id() -> None:
    subjects = ControlSubjects.for_provider("lat", "prov1", "XKEY")
    assert subjects.link_put == "wasmbus.rpc.lat.XKEY.linkdefs.put"
    assert subjects.link_del == "wasmbus.rpc.lat.prov1.linkdefs.del"
    assert subjects.health == "wasmbus.rpc.lat.prov1.health"
    assert subjects.shutdown == "wasmbus.rpc.lat.prov1.default.shutdown"
    assert subjects.config_update == "wasmbus.rpc.lat.prov1.config.update"


def test_parse_link_definition() -> None:
    link = parse_link_definition(json.dumps(LINK).encode())
    assert (link.source_id, link.target, link.name) == ("comp1", "prov1", "default")


def test_a_malformed_link_names_the_fields_never_the_values() -> None:
    bad = dict(LINK, interfaces="s3cret-not-a-list")
    with pytest.raises(LinkError) as info:
        parse_link_definition(json.dumps(bad).encode())
    assert "interfaces" in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(LinkError, match="payload"):
        parse_link_definition(b"[1, 2]")


def test_parse_config_update() -> None:
    assert parse_config_update(b'{"a": 1, "b": "x"}') == {"a": "1", "b": "x"}
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_config_update(b"[1]")
    with pytest.raises(json.JSONDecodeError):
        parse_config_update(b"{nope")


def test_shutdown_host_id() -> None:
    assert shutdown_host_id(b'{"host_id": "NHOST"}') == "NHOST"
    assert shutdown_host_id(b"{}") == ""
    assert shutdown_host_id(b"not json") == ""
    assert shutdown_host_id(b"[1]") == ""
    assert shutdown_host_id(b'{"host_id": 7}') is None  # no host's id is a number


def test_side_config_is_our_side_of_the_link() -> None:
    link = parse_link_definition(json.dumps(LINK).encode())
    secret = {"token": SecretValue(kind="String", value="x")}
    as_target = side_config(link, Role.TARGET, secret)
    assert as_target.config == {"side": "target"} and as_target.secrets == secret
    assert side_config(link, Role.SOURCE, {}).config == {"side": "source"}
    assert as_target.identity == link.identity
    assert link_description(link) == "comp1 -> prov1 (wasmcloud:messaging, default)"
