"""wadm.yaml at the top level, checked against the shapes of the wadm types (PROTOCOL.md §6.2)
and against our own config validation (every link's config must be accepted as is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.config import merge_config
from provider.settings import client_settings, mode_of, server_settings

MANIFEST = Path(__file__).resolve().parents[2] / "wadm.yaml"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def config_entries(entries: list[dict[str, Any]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for entry in entries:
        assert set(entry) <= {"name", "properties"}, entry
        assert isinstance(entry["name"], str) and entry["name"]
        for key, value in (entry.get("properties") or {}).items():
            assert isinstance(key, str) and isinstance(value, str), (key, value)
            merged[key] = value
    return merged


def test_application_shape(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "core.oam.dev/v1beta1"
    assert manifest["kind"] == "Application"
    assert manifest["metadata"]["name"]
    assert manifest["metadata"]["annotations"]["version"]
    kinds = {c["name"]: c["type"] for c in manifest["spec"]["components"]}
    assert kinds == {"echo": "component", "websocket": "capability"}


def test_provider_image_is_the_archive_the_cli_builds(manifest: dict[str, Any]) -> None:
    [provider] = [c for c in manifest["spec"]["components"] if c["type"] == "capability"]
    image = provider["properties"]["image"]
    assert image == "file://./build/wasmcloud-websocket-provider.par.gz"
    assert provider["properties"]["id"] == "websocket"


def test_links_and_their_config_validate(manifest: dict[str, Any]) -> None:
    components = {c["name"]: c for c in manifest["spec"]["components"]}
    policies = {p["name"] for p in manifest["spec"].get("policies", [])}
    provider = components["websocket"]
    provider_config = config_entries(provider["properties"].get("config", []))
    seen_modes = set()
    for component in components.values():
        for trait in component.get("traits", []):
            if trait["type"] != "link":
                continue
            props = trait["properties"]
            assert props["namespace"] == "wasmcloud" and props["package"] == "messaging"
            assert set(props["interfaces"]) <= {"consumer", "handler"}
            assert props["target"]["name"] in components
            source = props.get("source", {})
            for secret in source.get("secrets", []) + props["target"].get("secrets", []):
                assert secret["properties"]["policy"] in policies
                assert secret["properties"]["key"]
            if "handler" in props["interfaces"]:
                assert component["name"] == "websocket"  # the provider is the source
                link_config = config_entries(source.get("config", []))
                merged = merge_config(provider_config, None, link_config)
                if any(s["name"] == "AUTH_TOKEN" for s in source.get("secrets", [])):
                    merged["AUTH_TOKEN"] = "from-secret"
                mode = mode_of(merged)
                seen_modes.add(mode)
                # Our own validation accepts every value as written in the manifest.
                if mode == "server":
                    assert server_settings(merged).port == 8080
                else:
                    assert client_settings(merged).format == "raw"
            else:
                assert props["target"]["name"] == "websocket"
    assert seen_modes == {"server", "client"}
