"""`python -m provider package`: build a wasmCloud provider archive (`build/<name>.par.gz`).

A provider archive (docs/PACKAGING.md; wasmCloud `crates/provider-archive`) is a gzip'd tar with
GNU headers holding `claims.jwt` and one `<arch>-<os>.bin` per platform. The host picks the entry
named after its own target (Rust's `std::env::consts::{ARCH, OS}`, e.g. `x86_64-linux`), checks
its SHA-256 against the claims, writes it to a cache file with mode 0755 and executes it with no
arguments and an empty environment, HostData on stdin (docs/PROTOCOL.md 2.1). So the `.bin`
must start on its own. Two ways to make one:

* `frozen` (default): a one-file executable made by PyInstaller with the interpreter, this
  package and its dependencies inside. Portable to machines of the same target with a glibc no
  older than the build machine's; slow to build and large.
* `launcher`: a `#!/bin/sh` script that execs the absolute path of the interpreter running this
  command (`sys.executable`) with `-m provider`. Built instantly, but it only works on a machine
  where that exact interpreter path exists with this package installed.

`claims.jwt` is a wascap JWT (`crates/wascap/src/jwt.rs`): signed with an account key (issuer
`A…`) for a service key (subject `V…`), carrying `wascap.target_hashes` (upper-case hex SHA-256
of every `.bin`). The keys are read from or generated into a key directory as nkey seed files,
or given explicitly.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmcloud_provider_sdk.errors import NkeyError
from wasmcloud_provider_sdk.nkeys import (
    PREFIX_ACCOUNT,
    PREFIX_SERVICE,
    WASCAP_JWT_HEADER,
    KeyPair,
    encode_jwt,
)

#: Exit codes of `run`.
EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2

DEFAULT_NAME = "wasmcloud-websocket-provider"
DEFAULT_VENDOR = "wasmcloud-websocket-provider"
DEFAULT_OUT_DIR = "build"
#: Key directory when neither `--keys-dir` nor `$WASH_KEYS_DIR` is given (relative to the cwd).
DEFAULT_KEYS_DIR = ".wasmcloud-keys"
#: The variable wash's own key directory honours (`wash/src/lib/config.rs`, `keys_dir`).
KEYS_DIR_ENV = "WASH_KEYS_DIR"
#: Distribution name, for the default `--version`.
DISTRIBUTION = "wasmcloud-websocket-provider"
#: wascap's `WASCAP_INTERNAL_REVISION`: the host verifies target hashes from revision 3 on.
WASCAP_REVISION = 3
MODES = ("frozen", "launcher")
INSTALL_HINT = "pip install -e '.[package]'"

#: Modules the frozen binary must contain even where PyInstaller's import scan misses a lazy
#: or C-level import: PyNaCl's compiled bindings load cffi's `_cffi_backend` from C, which no
#: hook declares (the binary fails at start without it); websockets resolves names lazily.
HIDDEN_IMPORTS = ("nacl", "_cffi_backend", "msgpack", "nats", "websockets", "pydantic")
#: Packages collected whole: ours (imports inside functions) and the small lazy-importing ones.
COLLECT_SUBMODULES = ("provider", "wasmcloud_provider_sdk", "nacl", "msgpack", "nats", "websockets")
#: Development tools that pydantic's optional plugins (`pydantic.mypy`, the hypothesis plugin)
#: would drag in when they are installed in the same environment; the provider never uses them.
EXCLUDES = ("mypy", "mypyc", "hypothesis", "pytest", "_pytest", "PyInstaller", "tkinter")
#: Left out to keep the one-file binary small: it unpacks everything on every start, before
#: the provider can subscribe anything. Protobuf's C accelerator (and the C++ runtime it pulls
#: in) only speeds up OpenTelemetry export, which falls back to pure Python; the terminal line
#: editor and the East Asian codecs are never used by a provider.
SLIM_EXCLUDES = (
    "google._upb",
    "readline",
    "_codecs_cn",
    "_codecs_hk",
    "_codecs_jp",
    "_codecs_kr",
    "_codecs_tw",
    "_codecs_iso2022",
)
#: How long the post-build smoke run of the binary may take (a one-file binary unpacks first).
SMOKE_TIMEOUT = 60.0

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
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The archive loader keys entries by file stem: these stems are not binaries.
_RESERVED_STEMS = frozenset({"claims", "world"})
_NUID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class PackageError(Exception):
    """The archive could not be built (exit code 1); the message says why and what to do."""


class UsageError(PackageError):
    """The options were inconsistent or named unusable files (exit code 2)."""


# --- targets and hashes ------------------------------------------------------------------------


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


# --- keys --------------------------------------------------------------------------------------


def _kind(prefix: int) -> str:
    return "account" if prefix == PREFIX_ACCOUNT else "service"


def _key_from_text(text: str, prefix: int, origin: Path) -> KeyPair:
    try:
        key = KeyPair.from_seed(text.strip())
    except NkeyError as exc:
        raise PackageError(f"{origin}: not a valid nkey seed ({exc})") from None
    if key.prefix != prefix:
        want = "SA…" if prefix == PREFIX_ACCOUNT else "SV…"
        raise PackageError(f"{origin}: expected an {_kind(prefix)} seed ({want})")
    return key


def read_seed_file(path: Path, prefix: int) -> KeyPair:
    """The key pair in an explicitly given seed file; raises `UsageError` if unusable."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read seed file {path}: {exc}") from None
    try:
        return _key_from_text(text, prefix, path)
    except PackageError as exc:
        raise UsageError(str(exc)) from None


def load_or_create_key(keys_dir: Path, name: str, prefix: int) -> tuple[KeyPair, bool]:
    """The key `<keys_dir>/<name>_{account,service}.nk`, generated (mode 0600) if missing.

    Returns (key, created). The file holds the bare seed, as wash's key directory does.
    """
    path = keys_dir / f"{name}_{_kind(prefix)}.nk"
    try:
        return _key_from_text(path.read_text(encoding="ascii"), prefix, path), False
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"cannot read key file {path}: {exc}") from None
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = KeyPair.generate(prefix)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.seed)
        os.chmod(path, 0o600)  # whatever the umask
    except OSError as exc:
        raise PackageError(f"cannot create key file {path}: {exc}") from None
    return key, True


# --- claims and archive ------------------------------------------------------------------------


def _nuid() -> str:
    """A 22-character random id, the shape of the NUIDs wascap puts in `jti`."""
    return "".join(secrets.choice(_NUID_ALPHABET) for _ in range(22))


def provider_claims(
    *,
    name: str,
    vendor: str,
    issuer: str,
    subject: str,
    target_hashes: Mapping[str, str],
    version: str | None = None,
    revision: int | None = None,
    issued_at: int | None = None,
) -> dict[str, Any]:
    """wascap `Claims<CapabilityProvider>` as JSON, fields in wascap's serialisation order."""
    metadata: dict[str, Any] = {"name": name, "vendor": vendor}
    if revision is not None:
        metadata["rev"] = revision
    if version is not None:
        metadata["ver"] = version
    metadata["target_hashes"] = dict(sorted(target_hashes.items()))
    return {
        "jti": _nuid(),
        "iat": int(time.time()) if issued_at is None else issued_at,
        "iss": issuer,
        "sub": subject,
        "wascap": metadata,
        "wascap_revision": WASCAP_REVISION,
    }


def encode_claims(claims: Mapping[str, Any], issuer: KeyPair) -> str:
    """Sign `claims` with the account key: the `claims.jwt` text."""
    return encode_jwt(claims, issuer, header=WASCAP_JWT_HEADER)


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


# --- the binary --------------------------------------------------------------------------------


def launcher_script(python: str, name: str = DEFAULT_NAME) -> bytes:
    """A `/bin/sh` script that runs this package with the interpreter at `python`.

    `-I` keeps the host's working directory off `sys.path` (a `provider` folder there would
    otherwise shadow this package); the environment is empty under the host anyway.
    """
    return (
        "#!/bin/sh\n"
        f"# {name} launcher, made by `python -m provider package --mode launcher`.\n"
        "# Machine-specific: it runs the interpreter below, which must exist with the package\n"
        "# installed wherever this archive is deployed.\n"
        f'exec {shlex.quote(python)} -I -m provider "$@"\n'
    ).encode()


def build_launcher(python: str, name: str = DEFAULT_NAME) -> bytes:
    """The launcher script for `python`, after checking that it can import this package."""
    if not python or not os.path.isabs(python):
        raise PackageError(f"the interpreter path {python!r} is not absolute")
    try:
        subprocess.run(
            [python, "-I", "-c", "import provider.__main__"],
            env={},
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        raise PackageError(
            f"{python} cannot import the provider with an empty environment "
            f"(install the package into that interpreter: pip install -e .): {detail}"
        ) from None
    return launcher_script(python, name)


def pyinstaller_available() -> bool:
    """True when PyInstaller can be imported by this interpreter."""
    return importlib.util.find_spec("PyInstaller") is not None


ENTRY_SCRIPT = '''\
"""Entry point of the frozen provider binary (generated by `python -m provider package`).

A one-file binary runs the program in a child of the bootloader process that the host started;
the bootloader deletes the files it unpacked once the child has exited. But the host SIGKILLs the
process it started as soon as the provider has replied to its shutdown request (and when it
gives up on a provider): the bootloader can neither forward SIGKILL nor delete anything after
it. So the child asks the kernel for a signal when the bootloader dies, and then exits at once
(the host may already be writing the binary again for a restart) while a separate `rm`
removes the unpacked directory.
"""

import atexit
import os
import shutil
import signal
import sys

# Not SIGTERM: asyncio resets SIGTERM to its default action (death, no cleanup) while the event
# loop closes, which is just when the host's SIGKILL arrives. Nothing else here uses SIGHUP.
PARENT_DEATH_SIGNAL = signal.SIGHUP


def _exit_on_sigterm(signum, frame):
    sys.exit(128 + signum)


_UNPACKED = []


def _on_bootloader_death(signum, frame):
    # The host killed the process it started: after our reply to its shutdown request (the
    # clean stop is done), or because it gave up on us. Exit at once: this process is the
    # last one running the binary, and a host that starts the provider again rewrites that
    # file, which fails ("Text file busy") while we still run it.
    for unpacked in _UNPACKED:
        _remove_in_background(unpacked)
    os._exit(0)


def _remove_in_background(unpacked):
    # Another program (not a fork of this one, which would keep the binary busy) deletes it.
    try:
        os.posix_spawn("/bin/rm", ["rm", "-rf", unpacked], {})
    except OSError:
        pass


def _remove_unpacked(unpacked, parent):
    # Runs last (registered first). Empty the directory whether or not the bootloader still
    # lives, since it may be killed at any moment (Linux keeps mapped libraries usable); remove
    # the directory itself only once the bootloader is gone, as it warns if it finds none.
    for sig in (signal.SIGTERM, PARENT_DEATH_SIGNAL):
        signal.signal(sig, signal.SIG_IGN)
    if os.getppid() != parent:
        # The bootloader is gone: exit now, let rm do the (slow) deleting.
        _remove_in_background(unpacked)
        os._exit(0)
    for entry in os.scandir(unpacked):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    if os.getppid() != parent:
        try:
            os.rmdir(unpacked)
        except OSError:
            pass


def _follow_the_bootloader():
    if not sys.platform.startswith("linux") or not hasattr(sys, "_MEIPASS"):
        return
    parent = os.getppid()
    if os.path.basename(sys._MEIPASS).startswith("_MEI"):
        _UNPACKED.append(sys._MEIPASS)
        atexit.register(_remove_unpacked, sys._MEIPASS, parent)
    # Until the provider installs its own handler, SIGTERM must exit through atexit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(PARENT_DEATH_SIGNAL, _on_bootloader_death)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, int(PARENT_DEATH_SIGNAL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:
        sys.exit(0)  # the bootloader died before prctl took effect


if __name__ == "__main__":
    _follow_the_bootloader()
    from provider.__main__ import main

    sys.exit(main())
'''


def build_frozen(name: str, work_dir: Path) -> bytes:
    """Build the one-file executable with PyInstaller in `work_dir`; return its bytes."""
    if not pyinstaller_available():
        raise PackageError(
            "--mode frozen needs PyInstaller, which is not installed for "
            f"{sys.executable}. Install it with:  {INSTALL_HINT}  "
            "(or use --mode launcher for a machine-specific archive)"
        )
    import provider

    src_dir = Path(provider.__file__).resolve().parent.parent
    entry = work_dir / "provider_entry.py"
    entry.write_text(ENTRY_SCRIPT, encoding="utf-8")
    dist = work_dir / "dist"
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--onefile",
        "--noconfirm",
        # Symbols are most of the size (a pyenv libpython carries debug info: 23 MB).
        "--strip",
        "--log-level",
        "WARN",
        "--name",
        name,
        "--distpath",
        str(dist),
        "--workpath",
        str(work_dir / "work"),
        "--specpath",
        str(work_dir),
        "--paths",
        str(src_dir),
    ]
    for module in HIDDEN_IMPORTS:
        cmd += ["--hidden-import", module]
    for package in COLLECT_SUBMODULES:
        cmd += ["--collect-submodules", package]
    for module in (*EXCLUDES, *SLIM_EXCLUDES):
        cmd += ["--exclude-module", module]
    cmd.append(str(entry))
    proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise PackageError(f"PyInstaller failed (exit {proc.returncode}):\n{tail}")
    exe = dist / (name + (".exe" if sys.platform == "win32" else ""))
    if not exe.is_file():
        raise PackageError(f"PyInstaller reported success but {exe} does not exist")
    return exe.read_bytes()


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


# --- the whole build ---------------------------------------------------------------------------


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
            path = options.keys_dir / f"{options.name}_{_kind(prefix)}.nk"
            generated.append(path)
            say(f"generated a new {_kind(prefix)} key {pair.public_key} in {path}")
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


# --- command line ------------------------------------------------------------------------------

DESCRIPTION = """\
Build a wasmCloud provider archive, OUT_DIR/NAME.par.gz: a gzip'd tar holding claims.jwt (signed
wascap claims) and THIS machine's binary as <arch>-<os>.bin (e.g. x86_64-linux.bin). Deploy it
with wadm (image: file://./build/NAME.par.gz) or push it to a registry with `wash push`;
`wash par inspect` shows it.

modes (how the .bin runs; the host executes it with no arguments and an EMPTY environment):
  frozen    (default) a self-contained one-file executable built by PyInstaller: runs on any
            machine of the same target with a glibc at least as new as this one's. Needs
            PyInstaller:  pip install -e '.[package]'
  launcher  a #!/bin/sh script exec'ing this interpreter's absolute path with -m provider:
            built instantly, but MACHINE-SPECIFIC - it works only where that interpreter path
            exists with this package installed (local development hosts).

keys:
  The archive is signed by an account key (issuer, A...) for a service key (subject, V...).
  Unless --issuer-seed-file/--subject-seed-file are given, they are read from KEYS_DIR/
  NAME_account.nk and NAME_service.nk, and generated there (mode 0600) on first use. Keep the
  same keys for every build of a provider; never commit them.
"""

EPILOG = """\
exit codes:
  0  archive written
  1  build failed (PyInstaller missing or failing, the binary not starting, unreadable keys)
  2  bad usage (invalid option values, unusable seed or binary files)

examples:
  python -m provider package
  python -m provider package --mode launcher --out-dir /tmp/par
  python -m provider package --vendor acme --revision 7 \\
      --extra-binary aarch64-linux=dist/provider-aarch64.bin
"""


def _extra_binary(value: str) -> tuple[str, Path]:
    target, sep, path = value.partition("=")
    if not sep or not target or not path:
        raise argparse.ArgumentTypeError(f"expected TARGET=PATH, got {value!r}")
    try:
        check_target(target)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return target, Path(path)


def _revision(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 0 <= number <= 2**31 - 1:
        raise argparse.ArgumentTypeError("must be between 0 and 2147483647")
    return number


def default_version() -> str | None:
    """The installed package's version, for `wascap.ver`."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def default_keys_dir() -> str:
    """`$WASH_KEYS_DIR` if set, else `./.wasmcloud-keys`."""
    return os.environ.get(KEYS_DIR_ENV) or DEFAULT_KEYS_DIR


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `package` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "package",
        help="build a provider archive (build/NAME.par.gz) for wash/wadm",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="frozen",
        help="how the binary is made: frozen (PyInstaller one-file, portable) or launcher "
        "(shell script for this machine's interpreter); default: %(default)s",
    )
    p.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help="provider name in the claims; also names the archive and key files "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--vendor",
        default=DEFAULT_VENDOR,
        help="vendor string in the claims (default: %(default)s)",
    )
    p.add_argument(
        "--version",
        dest="provider_version",
        metavar="VERSION",
        default=None,
        help="version string in the claims (default: the installed package's, "
        f"{default_version() or 'none'})",
    )
    p.add_argument(
        "--revision",
        type=_revision,
        default=None,
        help="monotonically increasing revision number in the claims (default: none)",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path(DEFAULT_OUT_DIR),
        help="directory for NAME.par.gz (default: %(default)s)",
    )
    p.add_argument(
        "--keys-dir",
        type=Path,
        default=None,
        help=f"directory of the NAME_account.nk / NAME_service.nk seed files, created if "
        f"missing (default: ${KEYS_DIR_ENV} if set, else ./{DEFAULT_KEYS_DIR})",
    )
    p.add_argument(
        "--issuer-seed-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the account seed (SA...) to sign with, instead of KEYS_DIR",
    )
    p.add_argument(
        "--subject-seed-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the service seed (SV...) identifying the provider, instead of KEYS_DIR",
    )
    p.add_argument(
        "--extra-binary",
        type=_extra_binary,
        action="append",
        default=[],
        metavar="TARGET=PATH",
        help="also include a prebuilt binary for another target, e.g. "
        "aarch64-linux=dist/provider-arm64 (repeatable; Rust target names ARCH-OS)",
    )
    p.add_argument(
        "--no-smoke-test",
        dest="smoke_test",
        action="store_false",
        help="skip starting the built binary once (with empty host data) before packing it",
    )


def options_from_args(args: argparse.Namespace) -> PackageOptions:
    """Turn parsed `package` arguments into `PackageOptions`; raises `UsageError`."""
    extras: dict[str, Path] = {}
    for target, path in args.extra_binary:
        if target in extras:
            raise UsageError(f"--extra-binary {target} given twice")
        extras[target] = path
    version = args.provider_version if args.provider_version is not None else default_version()
    return PackageOptions(
        name=args.name,
        vendor=args.vendor,
        version=version or None,
        revision=args.revision,
        mode=args.mode,
        out_dir=args.out_dir,
        keys_dir=args.keys_dir if args.keys_dir is not None else Path(default_keys_dir()),
        issuer_seed_file=args.issuer_seed_file,
        subject_seed_file=args.subject_seed_file,
        extra_binaries=extras,
        smoke_test=args.smoke_test,
    )


def _human_size(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    return f"{size / 1024:.1f} KiB"


def run(args: argparse.Namespace) -> int:
    """Run the `package` subcommand; returns the exit code (0 ok, 1 failed, 2 bad usage)."""

    def say(message: str) -> None:
        print(f"package: {message}", file=sys.stderr, flush=True)

    try:
        result = build_package(options_from_args(args), log=say)
    except UsageError as exc:
        print(f"package: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PackageError as exc:
        print(f"package: build failed: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    print(
        f"{result.path}  ({_human_size(result.size)}; targets {', '.join(result.targets)}; "
        f"{result.seconds:.1f} s)\n"
        f"  issuer (account): {result.issuer}\n"
        f"  subject (service): {result.subject}"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run `package` alone (`python -m provider.package`), for use before the CLI wires it."""
    parser = argparse.ArgumentParser(prog="python -m provider")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["package", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXIT_BUILD_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PackageError",
    "PackageOptions",
    "PackageResult",
    "UsageError",
    "add_parser",
    "build_package",
    "native_target",
    "provider_claims",
    "run",
    "sha256_upper",
    "write_archive",
]
