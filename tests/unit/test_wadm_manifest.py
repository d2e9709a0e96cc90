"""The wadm manifests at the top level (`wadm.yaml`, `wadm.minimal.yaml`): the shapes of the
wadm types (docs/PROTOCOL.md section 6), our own config validation (every link's
config must be accepted as is), images that the project's own commands build, and the README
naming every prerequisite of the full manifest in order."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.config import merge_config
from provider.packaging.archive import DEFAULT_NAME, DEFAULT_OUT_DIR
from provider.settings import client_settings, mode_of, server_settings, unknown_keys

ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "wadm.yaml"
MINIMAL = ROOT / "wadm.minimal.yaml"
MANIFESTS = [FULL, MINIMAL]
PROVIDER_IMAGE = f"file://./{DEFAULT_OUT_DIR}/{DEFAULT_NAME}.par.gz"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def rust_component_image() -> str:
    """Where `cargo build --release --target wasm32-wasip2` puts examples/rust-component."""
    cargo = tomllib.loads((ROOT / "examples" / "rust-component" / "Cargo.toml").read_text())
    stem = cargo["package"]["name"].replace("-", "_")
    return f"file://./examples/rust-component/target/wasm32-wasip2/release/{stem}.wasm"


def config_entries(entries: list[dict[str, Any]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for entry in entries:
        assert set(entry) <= {"name", "properties"}, entry
        assert isinstance(entry["name"], str) and entry["name"]
        for key, value in (entry.get("properties") or {}).items():
            assert isinstance(key, str) and isinstance(value, str), (key, value)
            merged[key] = value
    return merged


def components_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in manifest["spec"]["components"]}


def links_of(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(owning component name, link properties) for every link trait."""
    return [
        (component["name"], trait["properties"])
        for component in manifest["spec"]["components"]
        for trait in component.get("traits", [])
        if trait["type"] == "link"
    ]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_application_shape(path: Path) -> None:
    manifest = load(path)
    assert manifest["apiVersion"] == "core.oam.dev/v1beta1"
    assert manifest["kind"] == "Application"
    assert manifest["metadata"]["name"]
    assert manifest["metadata"]["annotations"]["version"]
    kinds = {name: c["type"] for name, c in components_of(manifest).items()}
    assert kinds == {"echo": "component", "websocket": "capability"}


def test_the_two_manifests_are_different_applications() -> None:
    assert load(FULL)["metadata"]["name"] != load(MINIMAL)["metadata"]["name"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_provider_image_is_the_archive_the_cli_builds(path: Path) -> None:
    provider = components_of(load(path))["websocket"]
    assert provider["properties"]["image"] == PROVIDER_IMAGE
    assert provider["properties"]["id"] == "websocket"


def test_minimal_manifest_runs_the_rust_example_and_needs_no_secrets() -> None:
    manifest = load(MINIMAL)
    component = components_of(manifest)["echo"]
    assert component["properties"]["image"] == rust_component_image()
    assert "policies" not in manifest["spec"]
    text = MINIMAL.read_text()
    assert "secrets" not in text.split("apiVersion:", 1)[1]  # none, in any component or link


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_links_and_their_config_validate(path: Path) -> None:
    manifest = load(path)
    components = components_of(manifest)
    policies = {p["name"] for p in manifest["spec"].get("policies", [])}
    provider_config = config_entries(components["websocket"]["properties"].get("config", []))
    seen_modes = set()
    for owner, props in links_of(manifest):
        assert props["namespace"] == "wasmcloud" and props["package"] == "messaging"
        assert set(props["interfaces"]) <= {"consumer", "handler"}
        assert props["target"]["name"] in components
        source = props.get("source", {})
        for secret in source.get("secrets", []) + props["target"].get("secrets", []):
            assert secret["properties"]["policy"] in policies
            assert secret["properties"]["key"]
        if "handler" in props["interfaces"]:
            assert owner == "websocket"  # the provider is the source
            link_config = config_entries(source.get("config", []))
            merged = merge_config(provider_config, None, link_config)
            if any(s["name"] == "AUTH_TOKEN" for s in source.get("secrets", [])):
                merged["AUTH_TOKEN"] = "from-secret"
            assert unknown_keys(merged) == []  # no key the provider would ignore
            mode = mode_of(merged)
            seen_modes.add(mode)
            # Our own validation accepts every value as written in the manifest.
            if mode == "server":
                assert server_settings(merged).port == 8080
            else:
                assert client_settings(merged).format == "raw"
        else:
            assert props["target"]["name"] == "websocket"
    assert seen_modes == ({"server", "client"} if path == FULL else {"server"})


def deploy_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Deploying with wadm")
    return readme[start : readme.index("\n## ", start + 1)]


def test_readme_names_every_prerequisite_of_the_full_manifest_in_order() -> None:
    manifest = load(FULL)
    full = deploy_section()
    section = full[full.index("### The full manifest") :]
    [policy] = manifest["spec"]["policies"]
    secret_keys = {
        secret["properties"]["key"]
        for _, props in links_of(manifest)
        for side in (props.get("source", {}), props["target"])
        for secret in side.get("secrets", [])
    }
    client_ports = {
        m.group(1)
        for _, props in links_of(manifest)
        for entry in props.get("source", {}).get("config", [])
        if (m := re.match(r"ws://127\.0\.0\.1:(\d+)/", entry["properties"].get("URI", "")))
    }
    assert secret_keys == {"upstream-token"} and client_ports == {"9001"}
    steps = [
        "python -m provider package",
        *(f"examples/echo_server.py {port}" for port in client_ports),
        "--secrets-topic wasmcloud.secrets",
        "secrets-nats-kv run",
        f"backend: {policy['properties']['backend']}",
        *(f"secrets-nats-kv put {key}" for key in secret_keys),
        *(f"--secret {key}" for key in secret_keys),
        "wash app deploy wadm.yaml",
    ]
    positions = [section.find(step) for step in steps]
    assert all(p >= 0 for p in positions), [
        s for s, p in zip(steps, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions), list(zip(steps, positions, strict=True))
    # The manifest's own comment lists the same steps.
    head = FULL.read_text().split("apiVersion:", 1)[0]
    assert all(step in head for step in steps if not step.startswith("backend:")), head


def test_readme_first_try_builds_what_the_minimal_manifest_loads() -> None:
    section = deploy_section()
    first = section[section.index("### First try") : section.index("### The full manifest")]
    assert "python -m provider package" in first
    assert "--manifest-path examples/rust-component/Cargo.toml" in first
    assert "--target wasm32-wasip2" in first and "--release" in first  # target/…/release
    assert "wash app deploy wadm.minimal.yaml" in first
