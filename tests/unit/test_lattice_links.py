"""The decisions about links missed at start-up, without I/O (`lattice_links`)."""

from __future__ import annotations

import json

import pytest

from wasmcloud_provider_sdk.errors import LinkError
from wasmcloud_provider_sdk.lattice_links import (
    LatticeLink,
    config_get_subject,
    config_values,
    ctl_response,
    link_get_subject,
    links_for,
)

LISTED = {
    "source_id": "prov1",
    "target": "comp1",
    "name": "default",
    "wit_namespace": "wasmcloud",
    "wit_package": "messaging",
    "interfaces": ["handler"],
    "source_config": ["base", "override", "SECRET_tokens"],
    "target_config": ["theirs"],
}


def test_subjects() -> None:
    assert link_get_subject("default") == "wasmbus.ctl.v1.default.link.get"
    assert config_get_subject("lat", "cfg") == "wasmbus.ctl.v1.lat.config.get.cfg"


def test_ctl_response_success_and_refusals() -> None:
    ok = json.dumps({"success": True, "message": "", "response": [1]}).encode()
    assert ctl_response(ok, "link.get") == [1]
    refused = json.dumps({"success": False, "message": "not allowed"}).encode()
    with pytest.raises(LinkError, match=r"link\.get: not allowed"):
        ctl_response(refused, "link.get")
    with pytest.raises(LinkError, match="invalid JSON"):
        ctl_response(b"{", "link.get")
    with pytest.raises(LinkError, match="answered with list"):
        ctl_response(b"[]", "link.get")


def test_links_for_keeps_ours_and_reports_bad_entries() -> None:
    other = dict(LISTED, source_id="compA", target="provB")
    ours_as_target = dict(LISTED, source_id="comp2", target="prov1", interfaces=["consumer"])
    found, problems = links_for([LISTED, other, ours_as_target, {"target": 1}], "prov1")
    assert [link.source_id for link in found] == ["prov1", "comp2"]
    assert problems == ["a listed link has no valid 'source_id'"]
    with pytest.raises(LinkError, match="no list"):
        links_for({"links": []}, "prov1")


def test_resolve_merges_named_configs_in_order_later_wins() -> None:
    link = LatticeLink.from_json(LISTED)
    assert link.secret_names("prov1") == ["SECRET_tokens"]
    assert link.config_names() == {"base", "override", "theirs"}
    resolved = link.resolve(
        {"base": {"MODE": "client", "URI": "x"}, "override": {"URI": "y"}, "theirs": {"A": "1"}}
    )
    assert resolved.source_config == {"MODE": "client", "URI": "y"}
    assert resolved.target_config == {"A": "1"}
    assert resolved.identity == link.identity
    assert resolved.source_secrets is None


def test_own_side_of_the_link() -> None:
    link = LatticeLink.from_json(dict(LISTED, source_id="comp2", target="prov1"))
    assert link.own_config_names("prov1") == ("theirs",)
    assert link.secret_names("prov1") == []


def test_defaults_and_bad_fields() -> None:
    minimal = LatticeLink.from_json({"source_id": "a", "target": "b", "interfaces": []})
    assert minimal.name == "default" and minimal.source_config == ()
    with pytest.raises(LinkError, match="'interfaces'"):
        LatticeLink.from_json(dict(LISTED, interfaces="handler"))
    with pytest.raises(LinkError, match="not a JSON object"):
        LatticeLink.from_json(["a"])


def test_config_values() -> None:
    assert config_values({"a": "1", "b": 2}, "cfg") == {"a": "1", "b": "2"}
    with pytest.raises(LinkError, match="'cfg' does not exist"):
        config_values(None, "cfg")
    with pytest.raises(LinkError, match="not a map"):
        config_values(["a"], "cfg")
