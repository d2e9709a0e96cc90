"""`python -m provider package`: the command line of the archive build."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import PackageError, UsageError
from .archive import DEFAULT_NAME, DEFAULT_OUT_DIR, DEFAULT_VENDOR, check_target
from .build import MODES, PackageOptions, build_package
from .claims import DEFAULT_KEYS_DIR, KEYS_DIR_ENV

#: Exit codes of `run`.
EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_USAGE = 2
#: Distribution name, for the default `--version`.
DISTRIBUTION = "wasmcloud-websocket-provider"

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
    """`python -m provider.packaging`: the `package` subcommand alone, with the same options."""
    parser = argparse.ArgumentParser(prog="python -m provider")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["package", *(argv if argv is not None else sys.argv[1:])]))


__all__ = [
    "EXIT_BUILD_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_parser",
    "default_keys_dir",
    "default_version",
    "main",
    "options_from_args",
    "run",
]
