"""The bench's stand-ins in Go (bench/go): built once per source, used where `go` exists.

    bench-echo component <nats url> <lattice> <component id> <provider id>
    bench-echo nats-echo <nats url>

The echo component speaks the same wRPC as `bench.echo_core` and baseline (b)/(c)'s
responder does what `bench.baselines nats-echo` does, each at a fraction of the Python
stand-ins' CPU: every server-side process shares one core, so the less the stand-ins take,
the more the figures say about the servers. Where Go is missing, the Python stand-ins run
instead (`stand_ins()` says which, and the report prints it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"
BUILD_TIMEOUT = 300.0
#: `BENCH_STAND_INS=python` forces the Python stand-ins (e.g. to compare the two).
FORCE_ENV = "BENCH_STAND_INS"


def find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.exists() else None


def stand_ins() -> str:
    """ "go" when the Go stand-ins run, else "python"."""
    if os.environ.get(FORCE_ENV, "").lower() == "python":
        return "python"
    return "go" if find_go() is not None else "python"


@cache
def binary() -> str:
    """The built stand-in binary (built on first use, cached by the sources' hash)."""
    go = find_go()
    if go is None:
        raise RuntimeError("Go is not installed: the Go stand-ins cannot be built")
    digest = hashlib.sha256()
    for path in sorted(GO_DIR.iterdir()):
        if path.suffix in {".go", ".mod"}:
            digest.update(path.name.encode() + path.read_bytes())
    out = Path(tempfile.gettempdir()) / f"bench-echo-{digest.hexdigest()[:16]}"
    if not out.exists():
        partial = out.with_name(out.name + f".{os.getpid()}")
        result = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=GO_DIR,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building the Go stand-ins failed:\n{result.stderr}")
        partial.replace(out)
    return str(out)
