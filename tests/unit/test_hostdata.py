"""HostData parsing: good, empty, garbage, unknown fields, and the exact host line format."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wasmcloud_provider_sdk.errors import HostDataError
from wasmcloud_provider_sdk.hostdata import encode_host_data, parse_host_data

EXAMPLE: dict[str, Any] = {
    "host_id": "NBXHJQ",
    "lattice_rpc_prefix": "default",
    "link_name": "default",
    "lattice_rpc_user_jwt": "",
    "lattice_rpc_user_seed": "",
    "lattice_rpc_url": "nats://127.0.0.1:4222",
    "provider_key": "myapp-messaging",
    "env_values": {},
    "instance_id": "2f1c8a6e-5b8e-4d0f-9c55-0c1f6a9f3b21",
    "link_definitions": [
        {
            "source_id": "myapp-messaging",
            "target": "myapp-echo",
            "name": "default",
            "wit_namespace": "wasmcloud",
            "wit_package": "messaging",
            "interfaces": ["handler"],
            "source_config": {"subscriptions": "wasmcloud.echo"},
            "target_config": {},
            "source_secrets": None,
            "target_secrets": None,
        }
    ],
    "cluster_issuers": [],
    "config": {"cluster_uris": "nats://127.0.0.1:4222"},
    "secrets": {"tok": {"kind": "String", "value": "s3cret"}},
    "host_xkey_public_key": "",
    "provider_xkey_private_key": "",
    "default_rpc_timeout_ms": 2000,
    "structured_logging": False,
    "log_level": "info",
    "otel_config": {
        "enable_observability": False,
        "protocol": "Http",
        "additional_ca_paths": [],
        "trace_level": "info",
    },
}


def line(obj: object) -> bytes:
    return base64.b64encode(json.dumps(obj).encode()) + b"\r\n"


def test_parses_the_host_line() -> None:
    hd = parse_host_data(line(EXAMPLE))
    assert hd.provider_key == "myapp-messaging"
    assert hd.lattice == "default"
    assert hd.link_definitions[0].source_config == {"subscriptions": "wasmcloud.echo"}
    assert hd.secrets["tok"].as_str() == "s3cret"
    assert hd.otel_config.protocol == "http"
    assert hd.default_rpc_timeout_ms == 2000
    assert not hd.has_xkeys


def test_secrets_never_in_repr() -> None:
    hd = parse_host_data(line(EXAMPLE | {"lattice_rpc_user_seed": "SUSEEDSEED"}))
    assert "s3cret" not in repr(hd) and "SUSEEDSEED" not in repr(hd)
    assert "s3cret" not in str(hd.secrets)


def test_every_field_has_a_default() -> None:
    hd = parse_host_data(line({}))
    assert hd.nats_url == "nats://127.0.0.1:4222"
    assert hd.link_definitions == [] and hd.config == {}
    assert hd.log_level is None and not hd.structured_logging


def test_unknown_fields_are_ignored() -> None:
    hd = parse_host_data(line(EXAMPLE | {"future_field": [1, 2], "otel_config": {"x": 1}}))
    assert hd.provider_key == "myapp-messaging"


def test_round_trip_encoding() -> None:
    hd = parse_host_data(line(EXAMPLE))
    again = parse_host_data(encode_host_data(hd))
    assert again.link_definitions == hd.link_definitions
    assert encode_host_data(EXAMPLE).endswith(b"\r\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\r\n", "empty"),
        (b"%%% not base64 %%%\r\n", "base64"),
        (base64.b64encode(b"{not json") + b"\r\n", "JSON"),
        (base64.b64encode(b"[1,2]") + b"\r\n", "JSON object"),
        (line({"link_definitions": [{"target": "x"}]}), "link_definitions.0.source_id"),
        (line({"structured_logging": "maybe"}), "structured_logging"),
    ],
)
def test_bad_input_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(HostDataError, match=message):
        parse_host_data(data)
