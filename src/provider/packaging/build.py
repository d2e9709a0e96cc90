"""The whole build: validate the options, get the keys, make and check the binary, sign, pack."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmcloud_provider_sdk.nkeys import PREFIX_ACCOUNT, PREFIX_SERVICE, KeyPair

from ..errors import PackageError, UsageError
from .archive import (
    DEFAULT_NAME,
    DEFAULT_OUT_DIR,
    DEFAULT_VENDOR,
    check_target,
    native_target,
    sha256_upper,
    write_archive,
)
from .claims import (
    DEFAULT_KEYS_DIR,
    encode_claims,
    key_file,
    key_kind,
    load_or_create_key,
    provider_claims,
    read_seed_file,
)
from .frozen import build_frozen
from .launcher import build_launcher

#: How the `.bin` is made: `provider.packaging.frozen` or `provider.packaging.launcher`.
MODES = ("frozen", "launcher")
#: How long the post-build smoke run of the binary may take (a one-file binary unpacks first).
SMOKE_TIMEOUT = 60.0
# Names the archive and key files: no path separators, no leading dot.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def smoke_test(binary: bytes, work_dir: Path) -> None:
    """Start `binary` as the host would (no args, empty env) with empty stdin.

    A provider that starts must refuse the empty HostData with exit code 2 and say so; any other
    outcome (a missing module in a frozen build, a dead interpreter path) fails the build.
    """
    path = work_dir / "smoke.bin"
    path.write_bytes(binary)
    path.chmod(0o755)
    try:
        proc = subprocess.run(
            [str(path)],
            env={},
            cwd="/",
            input=b"",
            capture_output=True,
            timeout=SMOKE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PackageError(f"the built binary could not be run: {exc}") from None
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 2 or "cannot start" not in stderr:
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        raise PackageError(
            f"the built binary did not start (exit {proc.returncode}, expected 2 for empty "
            f"host data):\n{tail}"
        )


@dataclass(frozen=True)
class PackageOptions:
    """What to build; `run` makes one from the command line."""

    name: str = DEFAULT_NAME
    vendor: str = DEFAULT_VENDOR
    version: str | None = None
    revision: int | None = None
    mode: str = "frozen"
    out_dir: Path = Path(DEFAULT_OUT_DIR)
    keys_dir: Path = Path(DEFAULT_KEYS_DIR)
    issuer_seed_file: Path | None = None
    subject_seed_file: Path | None = None
    extra_binaries: Mapping[str, Path] = field(default_factory=dict)
    smoke_test: bool = True


@dataclass(frozen=True)
class PackageResult:
    """What was built."""

    path: Path
    targets: tuple[str, ...]
    issuer: str
    subject: str
    claims: dict[str, Any]
    size: int
    binary_size: int
    seconds: float
    generated_keys: tuple[Path, ...]


def build_package(
    options: PackageOptions, *, log: Callable[[str], None] | None = None
) -> PackageResult:
    """Build the archive described by `options`; raises `PackageError`/`UsageError`.

    `log` receives progress messages (key generation, build steps).
    """

    def say(message: str) -> None:
        if log is not None:
            log(message)

    started = time.monotonic()
    if not _NAME_RE.match(options.name):
        raise UsageError(
            f"invalid --name {options.name!r}: use letters, digits, '.', '_' and '-' "
            "(it names the archive and key files)"
        )
    if options.mode not in MODES:
        raise UsageError(f"invalid --mode {options.mode!r}: choose one of {', '.join(MODES)}")
    if options.revision is not None and not 0 <= options.revision <= 2**31 - 1:
        raise UsageError("--revision must be between 0 and 2147483647 (wascap stores an i32)")
    if not options.vendor:
        raise UsageError("--vendor must not be empty")
    native = native_target()
    extras: dict[str, bytes] = {}
    for target, path in options.extra_binaries.items():
        check_target(target)
        if target == native:
            raise UsageError(
                f"--extra-binary {target}: that is this machine's target, which the build "
                "makes itself (--mode)"
            )
        try:
            extras[target] = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--extra-binary {target}: cannot read {path}: {exc}") from None
    if options.mode == "launcher" and native.endswith("-windows"):
        raise UsageError("--mode launcher makes a /bin/sh script, which Windows cannot run")

    # Keys first: a bad seed file should fail before a long PyInstaller run.
    generated: list[Path] = []

    def key(explicit: Path | None, prefix: int) -> KeyPair:
        if explicit is not None:
            return read_seed_file(explicit, prefix)
        pair, created = load_or_create_key(options.keys_dir, options.name, prefix)
        if created:
            path = key_file(options.keys_dir, options.name, prefix)
            generated.append(path)
            say(f"generated a new {key_kind(prefix)} key {pair.public_key} in {path}")
        return pair

    issuer = key(options.issuer_seed_file, PREFIX_ACCOUNT)
    subject = key(options.subject_seed_file, PREFIX_SERVICE)

    with tempfile.TemporaryDirectory(prefix="provider-package-") as tmp:
        work = Path(tmp)
        if options.mode == "frozen":
            say("building the frozen binary with PyInstaller (about 30 s on 2 cores)…")
            binary = build_frozen(options.name, work)
        else:
            binary = build_launcher(sys.executable, options.name)
        if options.smoke_test:
            say("checking that the binary starts with an empty environment…")
            smoke_test(binary, work)

    binaries = {native: binary, **extras}
    claims = provider_claims(
        name=options.name,
        vendor=options.vendor,
        issuer=issuer.public_key,
        subject=subject.public_key,
        target_hashes={t: sha256_upper(b) for t, b in binaries.items()},
        version=options.version,
        revision=options.revision,
    )
    out = options.out_dir / f"{options.name}.par.gz"
    try:
        write_archive(out, encode_claims(claims, issuer), binaries)
    except OSError as exc:
        raise PackageError(f"cannot write {out}: {exc}") from None
    return PackageResult(
        path=out,
        targets=tuple(sorted(binaries)),
        issuer=issuer.public_key,
        subject=subject.public_key,
        claims=claims,
        size=out.stat().st_size,
        binary_size=len(binary),
        seconds=time.monotonic() - started,
        generated_keys=tuple(generated),
    )


__all__ = ["MODES", "PackageOptions", "PackageResult", "build_package", "smoke_test"]
