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

The modules, one job each: `archive` (targets, hashes, the tar), `claims` (keys and the signed
claims), `frozen` (the PyInstaller binary), `launcher` (the launcher script), `build` (the whole
build, `build_package`) and `cli` (the `package` subcommand).
"""

from __future__ import annotations

from ..errors import PackageError, UsageError
from .archive import DEFAULT_NAME, DEFAULT_OUT_DIR, native_target, sha256_upper, write_archive
from .build import PackageOptions, PackageResult, build_package
from .claims import provider_claims
from .cli import EXIT_BUILD_FAILED, EXIT_OK, EXIT_USAGE, add_parser, run

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_OUT_DIR",
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
