"""Keys and claims: the signed `claims.jwt` of a provider archive.

`claims.jwt` is a wascap JWT (`crates/wascap/src/jwt.rs`): signed with an account key (issuer
`A…`) for a service key (subject `V…`), carrying `wascap.target_hashes` (upper-case hex SHA-256
of every `.bin`). The keys are read from or generated into a key directory as nkey seed files,
or given explicitly.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wasmcloud_provider_sdk.errors import NkeyError
from wasmcloud_provider_sdk.nkeys import (
    PREFIX_ACCOUNT,
    WASCAP_JWT_HEADER,
    KeyPair,
    encode_jwt,
)

from ..errors import PackageError, UsageError

#: Key directory when neither `--keys-dir` nor `$WASH_KEYS_DIR` is given (relative to the cwd).
DEFAULT_KEYS_DIR = ".wasmcloud-keys"
#: The variable wash's own key directory honours (`wash/src/lib/config.rs`, `keys_dir`).
KEYS_DIR_ENV = "WASH_KEYS_DIR"
#: wascap's `WASCAP_INTERNAL_REVISION`: the host verifies target hashes from revision 3 on.
WASCAP_REVISION = 3
_NUID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def key_kind(prefix: int) -> str:
    """`account` or `service`: what a key with this nkey prefix is, in messages and file names."""
    return "account" if prefix == PREFIX_ACCOUNT else "service"


def key_file(keys_dir: Path, name: str, prefix: int) -> Path:
    """Where the key directory keeps provider `name`'s key: `<name>_{account,service}.nk`."""
    return keys_dir / f"{name}_{key_kind(prefix)}.nk"


def _key_from_text(text: str, prefix: int, origin: Path) -> KeyPair:
    try:
        key = KeyPair.from_seed(text.strip())
    except NkeyError as exc:
        raise PackageError(f"{origin}: not a valid nkey seed ({exc})") from None
    if key.prefix != prefix:
        want = "SA…" if prefix == PREFIX_ACCOUNT else "SV…"
        raise PackageError(f"{origin}: expected an {key_kind(prefix)} seed ({want})")
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
    path = key_file(keys_dir, name, prefix)
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


__all__ = [
    "DEFAULT_KEYS_DIR",
    "KEYS_DIR_ENV",
    "WASCAP_REVISION",
    "encode_claims",
    "key_file",
    "key_kind",
    "load_or_create_key",
    "provider_claims",
    "read_seed_file",
]
