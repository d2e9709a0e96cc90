"""The provider archive (`.par.gz`): its targets, their hashes and the tar itself.

A provider archive (docs/PACKAGING.md; wasmCloud `crates/provider-archive`) is a gzip'd tar with
GNU headers holding `claims.jwt` and one `<arch>-<os>.bin` per platform. The host picks the entry
named after its own target (Rust's `std::env::consts::{ARCH, OS}`, e.g. `x86_64-linux`), checks
its SHA-256 against the claims (`provider.packaging.claims`), writes it to a cache file with mode
0755 and executes it with no arguments and an empty environment, HostData on stdin
(docs/PROTOCOL.md 2.1).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import platform
import re
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError

DEFAULT_NAME = "wasmcloud-websocket-provider"
DEFAULT_VENDOR = "wasmcloud-websocket-provider"
DEFAULT_OUT_DIR = "build"

# Rust's `std::env::consts::ARCH` for what `platform.machine()` reports.
_RUST_ARCH = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "x86",
    "i686": "x86",
    "x86": "x86",
    "riscv64": "riscv64",
    "ppc64le": "powerpc64",
    "ppc64": "powerpc64",
    "s390x": "s390x",
    "loongarch64": "loongarch64",
}
_TARGET_RE = re.compile(r"^[a-z0-9_]+-[a-z0-9_]+$")
# The archive loader keys entries by file stem: these stems are not binaries.
_RESERVED_STEMS = frozenset({"claims", "world"})


def native_target(machine: str | None = None, system: str | None = None) -> str:
    """This machine's archive target, `{ARCH}-{OS}` with Rust's names (`x86_64-linux`)."""
    raw_arch = (machine if machine is not None else platform.machine()).lower()
    arch = _RUST_ARCH.get(raw_arch, raw_arch)
    plat = system if system is not None else sys.platform
    if plat.startswith("linux"):
        os_name = "linux"
    elif plat == "darwin":
        os_name = "macos"
    elif plat in ("win32", "cygwin"):
        os_name = "windows"
    elif plat.startswith("freebsd"):
        os_name = "freebsd"
    else:
        os_name = plat
    return f"{arch}-{os_name}"


def check_target(target: str) -> str:
    """Validate a target string; raises `UsageError` if the host could never select it."""
    if not _TARGET_RE.match(target) or target in _RESERVED_STEMS:
        raise UsageError(
            f"invalid target {target!r}: expected ARCH-OS with Rust's names, "
            "e.g. x86_64-linux, aarch64-linux, aarch64-macos"
        )
    return target


def sha256_upper(data: bytes) -> str:
    """Upper-case hex SHA-256, the form wascap stores in `target_hashes`."""
    return hashlib.sha256(data).hexdigest().upper()


def write_archive(path: Path, claims_jwt: str, binaries: Mapping[str, bytes]) -> None:
    """Write the gzip'd GNU tar: `claims.jwt`, then `<target>.bin` per target (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mtime = int(time.time())
    entries = [("claims.jwt", claims_jwt.encode("ascii"), 0o644)]
    entries += [(f"{t}.bin", data, 0o755) for t, data in sorted(binaries.items())]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=mtime) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for entry_name, data, mode in entries:
                info = tarfile.TarInfo(entry_name)
                info.size = len(data)
                info.mode = mode
                info.mtime = mtime
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_OUT_DIR",
    "DEFAULT_VENDOR",
    "check_target",
    "native_target",
    "sha256_upper",
    "write_archive",
]
