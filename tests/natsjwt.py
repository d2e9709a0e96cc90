"""Mint NATS v2 operator/account/user JWTs and an operator-mode nats-server config for tests.

This is what `nsc` would produce for a wasmCloud lattice with decentralized auth: a
self-signed operator, an account signed by the operator, users signed by the account.
nats-server (operator mode, `resolver: MEMORY` with `resolver_preload`) then accepts a
client that sends a user JWT plus the Ed25519 signature of its nonce by the user's seed.

Claims follow nats-io/jwt v2 (`v2/claims.go`, `*_claims.go`): standard claims `jti`, `iat`,
`iss`, `name`, `sub` and the role-specific object under `nats` with `type` and
`version: 2`. The `jti` is computed as nats-io/jwt does (SHA-512/256 of the standard claims
without `jti`, base32 without padding), although nats-server does not check it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from wasmcloud_provider_sdk.nkeys import (
    NATS_JWT_HEADER,
    PREFIX_ACCOUNT,
    PREFIX_OPERATOR,
    PREFIX_USER,
    KeyPair,
    encode_jwt,
)

#: nats-io/jwt `NoLimit`.
NO_LIMIT = -1
#: nats-io/jwt v2 ClaimsData fields, in the Go struct's order (json.Marshal keeps it).
_STANDARD_CLAIMS = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")


def nats_jti(claims: dict[str, Any]) -> str:
    """The `jti` nats-io/jwt gives `claims`: SHA-512/256 over its standard claims sans `jti`."""
    standard = {k: claims[k] for k in _STANDARD_CLAIMS if k != "jti" and claims.get(k)}
    digest = hashlib.new("sha512_256", json.dumps(standard, separators=(",", ":")).encode())
    return base64.b32encode(digest.digest()).decode("ascii").rstrip("=")


def _sign(issuer: KeyPair, subject: str, name: str, nats: dict[str, Any], **extra: Any) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key,
        "name": name,
        "sub": subject,
        **extra,
    }
    claims["jti"] = nats_jti(claims)
    # Go's field order (jti, iat, iss, name, sub, …, nats), as in a JWT minted by nsc.
    ordered = {k: claims[k] for k in _STANDARD_CLAIMS if k in claims}
    ordered.update((k, v) for k, v in claims.items() if k not in ordered)
    ordered["nats"] = {**nats, "version": 2}
    return encode_jwt(ordered, issuer, header=NATS_JWT_HEADER)


def operator_jwt(
    operator: KeyPair, *, name: str = "test-operator", system_account: str = ""
) -> str:
    """A self-signed operator JWT (what `operator:` in the server config trusts)."""
    nats: dict[str, Any] = {"type": "operator"}
    if system_account:
        nats["system_account"] = system_account
    return _sign(operator, operator.public_key, name, nats)


def account_jwt(account: KeyPair, operator: KeyPair, *, name: str = "test-account") -> str:
    """An account JWT issued by `operator`, every limit unlimited (as `nsc add account`).

    The limits must be spelled out: nats-server reads an absent limit as 0, and an account
    with `conn` 0 refuses every user ("maximum account active connections exceeded").
    """
    nats = {
        "type": "account",
        "limits": {
            "subs": NO_LIMIT,
            "data": NO_LIMIT,
            "payload": NO_LIMIT,
            "imports": NO_LIMIT,
            "exports": NO_LIMIT,
            "wildcards": True,
            "conn": NO_LIMIT,
            "leaf": NO_LIMIT,
        },
        "default_permissions": {"pub": {}, "sub": {}},
    }
    return _sign(operator, account.public_key, name, nats)


def user_jwt(
    user_public_key: str, account: KeyPair, *, name: str = "test-user", **extra: Any
) -> str:
    """A user JWT issued by `account`: publish/subscribe anything, no limits.

    Empty `pub`/`sub` permissions allow everything; the -1 limits must be explicit (an
    absent `subs`/`payload` is 0: "maximum subscriptions exceeded" on the first SUB).
    `extra` adds standard claims (e.g. `exp=<unix time>`).
    """
    nats = {
        "type": "user",
        "pub": {},
        "sub": {},
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
    }
    return _sign(account, user_public_key, name, nats, **extra)


def creds_file_text(jwt: str, seed: str) -> str:
    """A decorated `.creds` file, as nats-py's `user_credentials=` and `nats --creds` read."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
    )


@dataclass
class User:
    """A user key pair and its JWT."""

    keys: KeyPair
    jwt: str

    @property
    def seed(self) -> str:
        return self.keys.seed

    @property
    def public_key(self) -> str:
        return self.keys.public_key


@dataclass
class Trust:
    """An operator, a system account and a lattice account: the server side of JWT auth."""

    operator: KeyPair = field(default_factory=lambda: KeyPair.generate(PREFIX_OPERATOR))
    system: KeyPair = field(default_factory=lambda: KeyPair.generate(PREFIX_ACCOUNT))
    account: KeyPair = field(default_factory=lambda: KeyPair.generate(PREFIX_ACCOUNT))

    def user(self, name: str = "test-user", *, account: KeyPair | None = None) -> User:
        """A new user of the lattice account (or of `account`, trusted or not)."""
        keys = KeyPair.generate(PREFIX_USER)
        return User(keys, user_jwt(keys.public_key, account or self.account, name=name))

    def server_config(self) -> str:
        """nats-server config text: trust the operator, preload both accounts in memory."""
        op = operator_jwt(self.operator, system_account=self.system.public_key)
        accounts = {
            self.system.public_key: account_jwt(self.system, self.operator, name="SYS"),
            self.account.public_key: account_jwt(self.account, self.operator, name="lattice"),
        }
        preload = "\n".join(f'  {pub}: "{jwt}"' for pub, jwt in accounts.items())
        return "\n".join(
            [
                f'operator: "{op}"',
                f"system_account: {self.system.public_key}",
                "resolver: MEMORY",
                f"resolver_preload: {{\n{preload}\n}}",
            ]
        )
