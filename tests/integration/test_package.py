"""`python -m provider package`: the archive, checked the way a wasmCloud 1.x host loads it.

The host (`crates/provider-archive` + `crates/core/src/par.rs`) detects gzip by its magic, reads
the tar, keys entries by file stem, decodes `claims.jwt`, compares every `.bin` with its
upper-case SHA-256 in `wascap.target_hashes`, writes its own target's entry to a cache file with
mode 0755 and executes it with no arguments, an empty environment and HostData on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import errno
import gzip
import hashlib
import importlib.util
import io
import os
import re
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provider.packaging import archive, claims, cli, frozen
from tests.harness import FakeHost
from wasmcloud_provider_sdk.nkeys import (
    PREFIX_ACCOUNT,
    PREFIX_SERVICE,
    WASCAP_JWT_HEADER,
    KeyPair,
    decode_jwt,
)

NATIVE = archive.native_target()
HAVE_PYINSTALLER = importlib.util.find_spec("PyInstaller") is not None


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m provider")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["package", *argv])


def build(tmp: Path, *argv: str) -> int:
    """Run the subcommand with output and keys under `tmp` (unless `argv` says otherwise)."""
    base = ["--out-dir", str(tmp / "build")]
    if "--keys-dir" not in argv:
        base += ["--keys-dir", str(tmp / "keys")]
    return cli.run(parse([*base, *argv]))


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class LoadedArchive:
    """What the host's loader sees: entries by file stem, and the decoded claims."""

    raw: bytes
    tar_bytes: bytes
    entries: dict[str, bytes]
    names: list[str]
    jwt: str
    header: dict[str, Any]
    claims: dict[str, Any]


def load_archive(path: Path) -> LoadedArchive:
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b", "not gzip-compressed"
    tar_bytes = gzip.decompress(raw)
    entries: dict[str, bytes] = {}
    names: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar.getmembers():
            block = tar_bytes[member.offset : member.offset + 512]
            # GNU header magic "ustar  \0" (not POSIX "ustar\x0000"), regular file, no pax
            # extension records in front of it.
            assert block[257:265] == b"ustar  \x00", (member.name, block[257:265])
            assert block[156:157] == b"0", (member.name, block[156:157])
            assert member.offset_data == member.offset + 512
            names.append(member.name)
            data = tar.extractfile(member)
            assert data is not None
            entries[Path(member.name).stem] = data.read()
    jwt = entries["claims"].decode("ascii")
    header, claims = decode_jwt(jwt)  # also verifies the signature by `iss`
    return LoadedArchive(raw, tar_bytes, entries, names, jwt, header, claims)


def check_claims(archive: LoadedArchive, account: KeyPair, service: KeyPair) -> None:
    """The claims are wascap's: header, issuer/subject, revision, hashes of every binary."""
    assert archive.header == dict(WASCAP_JWT_HEADER)
    claims = archive.claims
    assert claims["iss"] == account.public_key and claims["iss"].startswith("A")
    assert claims["sub"] == service.public_key and claims["sub"].startswith("V")
    assert claims["wascap_revision"] == 3
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert abs(claims["iat"] - time.time()) < 600
    assert "exp" not in claims and "nbf" not in claims
    # Signed by the account key (not merely by whatever key `iss` names).
    head, body, sig = archive.jwt.split(".")
    assert account.verify(f"{head}.{body}".encode(), b64url(sig))
    # No padding in any segment: wascap decodes with BASE64URL_NOPAD.
    assert "=" not in archive.jwt
    hashes = claims["wascap"]["target_hashes"]
    binaries = {stem: data for stem, data in archive.entries.items() if stem != "claims"}
    assert set(hashes) == set(binaries), "the loader unwraps a hash for every .bin entry"
    for target, data in binaries.items():
        assert re.fullmatch(r"[0-9A-F]{64}", hashes[target])
        assert hashes[target] == hashlib.sha256(data).hexdigest().upper()


def host_cache_copy(tmp: Path, archive: LoadedArchive, host_id: str) -> Path:
    """Write this machine's entry where and how the host does (mode 0755, no extension)."""
    ref = "file://" + str(tmp / "build" / "wasmcloud-websocket-provider.par.gz")
    name = re.sub(r"[^a-z0-9]", "_", ref.lower())
    path = tmp / "wasmcloudcache" / host_id / name
    path.parent.mkdir(parents=True)
    path.write_bytes(archive.entries[NATIVE])
    path.chmod(0o755)
    return path


def keys(tmp: Path, name: str = "wasmcloud-websocket-provider") -> tuple[KeyPair, KeyPair]:
    account = KeyPair.from_seed((tmp / "keys" / f"{name}_account.nk").read_text())
    service = KeyPair.from_seed((tmp / "keys" / f"{name}_service.nk").read_text())
    return account, service


@pytest.mark.parametrize(
    ("machine", "system", "target"),
    [
        ("x86_64", "linux", "x86_64-linux"),
        ("aarch64", "linux", "aarch64-linux"),
        ("arm64", "darwin", "aarch64-macos"),
        ("AMD64", "win32", "x86_64-windows"),
        ("ppc64le", "linux", "powerpc64-linux"),
    ],
)
def test_native_target_uses_rusts_names(machine: str, system: str, target: str) -> None:
    assert archive.native_target(machine, system) == target


# --- launcher mode: the archive ------------------------------------------------------------------


def test_launcher_archive_is_what_the_host_loads(tmp_path: Path) -> None:
    assert build(tmp_path, "--mode", "launcher", "--vendor", "acme", "--revision", "7") == 0
    path = tmp_path / "build" / "wasmcloud-websocket-provider.par.gz"
    archive = load_archive(path)
    assert archive.names == ["claims.jwt", f"{NATIVE}.bin"]
    account, service = keys(tmp_path)
    check_claims(archive, account, service)
    meta = archive.claims["wascap"]
    assert meta["name"] == "wasmcloud-websocket-provider"
    assert meta["vendor"] == "acme"
    assert meta["rev"] == 7
    assert meta["ver"] == cli.default_version()
    # wascap's field order; `capid` is gone in 1.x and must not be required.
    assert list(archive.claims) == ["jti", "iat", "iss", "sub", "wascap", "wascap_revision"]
    assert list(meta) == ["name", "vendor", "rev", "ver", "target_hashes"]
    # The launcher runs this very interpreter.
    script = archive.entries[NATIVE].decode()
    assert script.startswith("#!/bin/sh\n")
    assert "-I -m provider" in script
    assert os.path.realpath(script.split("exec ", 1)[1].split(" ")[0].strip("'")) == (
        os.path.realpath(sys.executable)
    )


def test_keys_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    assert build(tmp_path, "--mode", "launcher", "--name", "p1") == 0
    first = load_archive(tmp_path / "build" / "p1.par.gz").claims
    for kind, prefix in (("account", "SA"), ("service", "SV")):
        key_file = tmp_path / "keys" / f"p1_{kind}.nk"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        seed = key_file.read_text()
        assert seed.startswith(prefix) and "\n" not in seed  # what wash's key dir holds
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert build(tmp_path, "--mode", "launcher", "--name", "p1") == 0
    second = load_archive(tmp_path / "build" / "p1.par.gz").claims
    assert (second["iss"], second["sub"]) == (first["iss"], first["sub"])
    assert second["jti"] != first["jti"]


def test_keys_dir_defaults_to_env_then_local_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(claims.KEYS_DIR_ENV, raising=False)
    assert cli.run(parse(["--mode", "launcher"])) == 0
    assert (tmp_path / ".wasmcloud-keys" / "wasmcloud-websocket-provider_account.nk").exists()
    assert (tmp_path / "build" / "wasmcloud-websocket-provider.par.gz").exists()
    monkeypatch.setenv(claims.KEYS_DIR_ENV, str(tmp_path / "washkeys"))
    assert cli.run(parse(["--mode", "launcher", "--name", "other"])) == 0
    assert (tmp_path / "washkeys" / "other_service.nk").exists()


def test_explicit_seed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account, service = KeyPair.generate(PREFIX_ACCOUNT), KeyPair.generate(PREFIX_SERVICE)
    (tmp_path / "a.nk").write_text(account.seed + "\n")
    (tmp_path / "s.nk").write_text(service.seed)
    seeds = ["--issuer-seed-file", str(tmp_path / "a.nk"), "--subject-seed-file"]
    assert build(tmp_path, "--mode", "launcher", *seeds, str(tmp_path / "s.nk")) == 0
    archive = load_archive(tmp_path / "build" / "wasmcloud-websocket-provider.par.gz")
    check_claims(archive, account, service)
    assert not (tmp_path / "keys").exists(), "no key generated when both are given"
    # A service seed where the account seed belongs: bad usage, nothing written.
    capsys.readouterr()
    swapped = ["--issuer-seed-file", str(tmp_path / "s.nk"), "--out-dir", str(tmp_path / "x")]
    assert cli.run(parse(["--mode", "launcher", *swapped])) == cli.EXIT_USAGE
    assert "expected an account seed" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    missing = ["--subject-seed-file", str(tmp_path / "nope.nk")]
    assert build(tmp_path, "--mode", "launcher", *missing) == cli.EXIT_USAGE


def test_extra_prebuilt_binaries_are_hashed_too(tmp_path: Path) -> None:
    other = "aarch64-macos" if NATIVE != "aarch64-macos" else "x86_64-linux"
    prebuilt = tmp_path / "prebuilt"
    prebuilt.write_bytes(b"\x7fELF not really")
    assert build(tmp_path, "--mode", "launcher", "--extra-binary", f"{other}={prebuilt}") == 0
    archive = load_archive(tmp_path / "build" / "wasmcloud-websocket-provider.par.gz")
    assert archive.names == ["claims.jwt", *sorted([f"{NATIVE}.bin", f"{other}.bin"])]
    assert archive.entries[other] == prebuilt.read_bytes()
    check_claims(archive, *keys(tmp_path))


@pytest.mark.parametrize(
    "argv",
    [
        ["--extra-binary", "x86_64-linux.bin=/dev/null"],  # a file name, not a target
        ["--extra-binary", "claims-x=/dev/null", "--extra-binary", "claims-x=/dev/null"],
        ["--extra-binary", f"{NATIVE}=/dev/null"],
        ["--extra-binary", "riscv64-linux=/nonexistent/file"],
        ["--name", "../escape"],
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, argv: list[str]) -> None:
    try:
        rc = build(tmp_path, "--mode", "launcher", *argv)
    except SystemExit as exc:  # argparse rejects some values itself, also with 2
        rc = int(exc.code or 0)
    assert rc == cli.EXIT_USAGE
    assert not (tmp_path / "build").exists()


def test_frozen_without_pyinstaller_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(frozen, "pyinstaller_available", lambda: False)
    assert build(tmp_path) == cli.EXIT_BUILD_FAILED
    err = capsys.readouterr().err
    assert "PyInstaller" in err and "pip install -e '.[package]'" in err
    assert not (tmp_path / "build").exists()


def test_help_describes_modes_keys_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for needle in ("frozen", "launcher", "MACHINE-SPECIFIC", "--keys-dir", "WASH_KEYS_DIR"):
        assert needle in out
    assert "exit codes:" in out and "wash par inspect" in out


# --- the binary, started like the host starts it -------------------------------------------------


async def start_and_stop(host: FakeHost, binary: Path) -> None:
    """Start `binary` (no args, env={}, HostData then EOF), check health and shutdown."""
    proc = await host.start_provider(command=[str(binary)])
    health = await host.wait_healthy(timeout=60)
    assert health["healthy"] is True
    assert await host.shutdown() == b"shutting down"
    assert await proc.wait_exit(10.0) == 0


async def test_launcher_binary_runs_under_the_host(tmp_path: Path, host: FakeHost) -> None:
    assert build(tmp_path, "--mode", "launcher") == 0
    archive = load_archive(tmp_path / "build" / "wasmcloud-websocket-provider.par.gz")
    check_claims(archive, *keys(tmp_path))
    await start_and_stop(host, host_cache_copy(tmp_path, archive, host.host_id))


# --- frozen mode ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frozen_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PyInstaller build for this module (about 30 s on 2 cores)."""
    if not HAVE_PYINSTALLER:
        pytest.skip("PyInstaller is not installed: pip install -e '.[package]'")
    tmp = tmp_path_factory.mktemp("frozen")
    assert build(tmp, "--mode", "frozen") == 0
    return tmp


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _unpack_dir(pid: int) -> Path:
    """The `_MEI…` directory a one-file program was unpacked into (from its memory maps)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        match = re.search(r"(/\S*/_MEI\w+)/", line)
        if match:
            return Path(match.group(1))
    raise AssertionError(f"process {pid} maps no _MEI directory")


async def _wait_until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _writable(path: Path) -> bool:
    """Can `path` be opened for writing (not "Text file busy": no process runs it)?"""
    try:
        with path.open("r+b"):
            return True
    except OSError as exc:
        if exc.errno == errno.ETXTBSY:
            return False
        raise


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True


@pytest.mark.timeout(300)
async def test_frozen_binary_runs_under_the_host(frozen_build: Path, host: FakeHost) -> None:
    archive = load_archive(frozen_build / "build" / "wasmcloud-websocket-provider.par.gz")
    assert archive.names == ["claims.jwt", f"{NATIVE}.bin"]
    check_claims(archive, *keys(frozen_build))
    assert archive.entries[NATIVE][:4] == b"\x7fELF"
    binary = host_cache_copy(frozen_build, archive, host.host_id)
    await start_and_stop(host, binary)


def test_frozen_binary_leaves_out_what_the_provider_never_uses(
    frozen_build: Path, tmp_path: Path
) -> None:
    """The one-file binary unpacks everything on every start: what only development or the
    benchmark harness uses stays out even when installed beside the provider (the bench
    extra's numpy once made it 16 MB larger and its start 100 ms slower)."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = load_archive(frozen_build / "build" / "wasmcloud-websocket-provider.par.gz")
    binary = tmp_path / "provider.bin"
    binary.write_bytes(archive.entries[NATIVE])
    reader = CArchiveReader(str(binary))
    modules = set(reader.open_embedded_archive("PYZ.pyz").toc)
    assert "provider.app" in modules and "wasmcloud_provider_sdk.natswire" in modules
    top_level = {name.split(".")[0] for name in [*modules, *reader.toc]}
    unwanted = {"numpy", "matplotlib", "PIL", "pytest", "mypy", "hypothesis", "tkinter"}
    assert not top_level & unwanted


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_frozen_binary_carries_uvloop(frozen_build: Path, tmp_path: Path) -> None:
    """The event loop is imported by name (`EVENT_LOOP`), which PyInstaller's scan cannot
    see: without it the binary would quietly run on the standard loop."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = load_archive(frozen_build / "build" / "wasmcloud-websocket-provider.par.gz")
    binary = tmp_path / "provider.bin"
    binary.write_bytes(archive.entries[NATIVE])
    reader = CArchiveReader(str(binary))
    modules = set(reader.open_embedded_archive("PYZ.pyz").toc)
    assert "uvloop" in modules
    assert any(name.startswith("uvloop/loop.") or name == "uvloop.loop" for name in reader.toc)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
@pytest.mark.parametrize("after_shutdown_reply", [True, False])
@pytest.mark.timeout(300)
async def test_frozen_binary_follows_the_hosts_sigkill(
    frozen_build: Path, host: FakeHost, after_shutdown_reply: bool
) -> None:
    """The host SIGKILLs the process it started right after the shutdown reply (or at once).

    A one-file binary's program runs in a child of that process: it must stop too, and remove
    the directory it was unpacked into, which the killed bootloader no longer can.
    """
    archive = load_archive(frozen_build / "build" / "wasmcloud-websocket-provider.par.gz")
    binary = host_cache_copy(frozen_build, archive, f"{host.host_id}-{after_shutdown_reply}")
    proc = await host.start_provider(command=[str(binary)])
    assert (await host.wait_healthy(timeout=60))["healthy"] is True
    bootloader = proc.proc.pid
    (program,) = _children(bootloader)
    unpacked = _unpack_dir(program)
    assert unpacked.is_dir()
    if after_shutdown_reply:
        assert await host.shutdown() == b"shutting down"
    os.kill(bootloader, signal.SIGKILL)
    assert await proc.wait_exit(10.0) == -signal.SIGKILL
    # The host may write the binary again at once (a restart): the program exits at once.
    await _wait_until(lambda: _writable(binary), 1.0)
    await _wait_until(lambda: _gone(program), 10.0)
    await _wait_until(lambda: not unpacked.exists(), 10.0)


def test_running_under_a_host_does_not_import_the_packaging_code() -> None:
    """No arguments is how a host starts us: only what the runtime needs is imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "provider"],
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2  # empty host data
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.decode().splitlines()}
    assert "wasmcloud_provider_sdk.runtime" in imported
    assert not {name for name in imported if name.startswith("provider.packaging")}
