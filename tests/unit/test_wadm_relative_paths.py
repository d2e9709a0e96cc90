"""What `wash app deploy <file>` does to a manifest before sending it, as the realhost wadm
driver repeats it (tests/realhost/wadm.py): relative `file://` images become absolute file
URLs against the manifest's directory; anything else is left as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realhost.wadm import WadmError, load_manifest, resolve_relative_file_paths


def test_relative_file_references_become_absolute_urls(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "p.par.gz").write_bytes(b"")
    (tmp_path / "c.wasm").write_bytes(b"")
    manifest = {
        "spec": {
            "components": [
                {"properties": {"image": "file://./build/p.par.gz"}},
                {"properties": {"image": "file://c.wasm"}},
            ]
        }
    }
    out = resolve_relative_file_paths(manifest, tmp_path)
    images = [c["properties"]["image"] for c in out["spec"]["components"]]
    assert images == [
        f"file://{tmp_path}/build/p.par.gz",
        f"file://{tmp_path}/c.wasm",
    ]


def test_absolute_references_registries_and_other_values_are_left_alone(tmp_path: Path) -> None:
    value = {
        "a": "file:///abs/x.wasm",
        "b": "ghcr.io/wasmcloud/components/echo-messaging-rust:0.2.0",
        "c": ["file://", 3, None, True],
        "d": "URI: file://./not-a-prefix",
    }
    assert resolve_relative_file_paths(value, tmp_path) == value


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WadmError, match=r"file://\./missing.wasm.*does not exist"):
        resolve_relative_file_paths({"image": "file://./missing.wasm"}, tmp_path)


def test_load_manifest_resolves_against_the_manifest_directory(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "c.wasm").write_bytes(b"")
    (app / "m.yaml").write_text(
        "spec:\n  components:\n    - properties:\n        image: file://./c.wasm\n"
    )
    manifest = load_manifest(app / "m.yaml")
    assert manifest["spec"]["components"][0]["properties"]["image"] == (app / "c.wasm").as_uri()
