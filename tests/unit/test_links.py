"""Link identity, role detection, put classification and secret field formats."""

from __future__ import annotations

import base64

import pytest

from wasmcloud_provider_sdk.errors import LinkError, SecretError
from wasmcloud_provider_sdk.links import InterfaceLinkDefinition, LinkTable, PutKind, Role, role_of
from wasmcloud_provider_sdk.nkeys import XKey
from wasmcloud_provider_sdk.secrets import SecretValue, open_link_secrets, seal_link_secrets


def link(**kw: object) -> InterfaceLinkDefinition:
    base: dict[str, object] = {
        "source_id": "comp1",
        "target": "prov1",
        "name": "default",
        "wit_namespace": "wasmcloud",
        "wit_package": "messaging",
        "interfaces": ["consumer"],
    }
    base.update(kw)
    return InterfaceLinkDefinition.model_validate(base)


def test_roles() -> None:
    assert role_of(link(), "prov1") is Role.TARGET
    assert role_of(link(source_id="prov1", target="comp1"), "prov1") is Role.SOURCE
    with pytest.raises(LinkError, match="does not involve"):
        role_of(link(), "other")


def test_classification() -> None:
    table = LinkTable()
    first = link(target_config={"a": "1"})
    assert table.classify(first) is PutKind.NEW
    table.store(first)
    assert table.classify(link(target_config={"a": "1"})) is PutKind.DUPLICATE
    assert table.classify(link(target_config={"a": "2"})) is PutKind.UPDATE
    assert table.classify(link(interfaces=["consumer", "x"])) is PutKind.UPDATE
    # Another name is another link, not an overwrite (the Rust SDK's peer-id keying bug).
    other = link(name="second")
    assert table.classify(other) is PutKind.NEW
    table.store(other)
    assert len(table) == 2


def test_idempotent_remove() -> None:
    table = LinkTable()
    table.store(link())
    assert table.remove(link().identity) is not None
    assert table.remove(link().identity) is None


def test_missing_name_defaults() -> None:
    assert link(name="").name == "default"
    assert link(name=None).name == "default"


def test_secret_formats() -> None:
    assert link(target_secrets=None).target_secrets is None
    assert link(target_secrets=[1, 2, 3]).target_secrets == b"\x01\x02\x03"
    assert link(target_secrets=base64.b64encode(b"abc").decode()).target_secrets == b"abc"
    with pytest.raises(ValueError, match="0-255"):
        link(target_secrets=[256])


def test_open_sealed_link_secrets() -> None:
    host, prov = XKey.generate(), XKey.generate()
    sealed = seal_link_secrets(
        {"token": SecretValue(kind="String", value="t0k")},
        host,
        XKey.from_public_key(prov.public_key),
    )
    parsed = link(target_secrets=sealed)
    opened = open_link_secrets(parsed.target_secrets, prov, XKey.from_public_key(host.public_key))
    assert opened["token"].as_str() == "t0k"
    assert open_link_secrets(None, prov, host) == {}
    with pytest.raises(SecretError, match="no xkeys"):
        open_link_secrets(b"xkv1...", None, None)
    wrong = XKey.generate()
    with pytest.raises(SecretError):
        open_link_secrets(parsed.target_secrets, wrong, host)


def test_bytes_secret() -> None:
    value = SecretValue(kind="Bytes", value=[104, 105])
    assert value.as_bytes() == b"hi" and value.as_str() == "hi"
    assert "104" not in repr(value)
