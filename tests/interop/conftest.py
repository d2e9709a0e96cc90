"""Builds the Go wRPC peer (interop/go) once per session; skips where Go is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from bench.gostandins import find_go

GO_DIR = Path(__file__).resolve().parents[2] / "interop" / "go"


@pytest.fixture(scope="session")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> str:
    go = find_go()
    if go is None:
        if os.environ.get("CI"):
            pytest.fail("Go is required for the interop tests in CI but is not installed")
        pytest.skip("Go is not installed: skipping interop tests against wrpc.io/go")
    out = tmp_path_factory.mktemp("go") / "wrpc-interop"
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    result = subprocess.run(
        [go, "build", "-o", str(out), "."],
        cwd=GO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building the Go interop peer failed:\n{result.stderr}")
    return str(out)
