"""nkey string decoding and xkey (curve) sealed boxes (docs/PROTOCOL.md 3.3).

An nkey string is base32 (RFC 4648, no padding) of prefix ‖ raw key ‖ CRC-16/XMODEM (LE).
Link secrets arrive as `b"xkv1" ‖ nonce(24) ‖ crypto_box ciphertext`, sealed by the host's
curve key to this provider's curve key.

Also here: generic Ed25519 nkeys (`KeyPair`, any role prefix) and Ed25519-signed JWTs
(`encode_jwt`/`decode_jwt`), as NATS operator/account/user JWTs and wascap claims use them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from .errors import NkeyError, SecretError

PREFIX_SEED = 18 << 3  # 'S'
PREFIX_CURVE = 23 << 3  # 'X'
PREFIX_USER = 20 << 3  # 'U'
XKEY_VERSION = b"xkv1"
NONCE_LEN = 24


def crc16_xmodem(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0), as nkeys use for their checksum."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _b32decode(text: str) -> bytes:
    try:
        padded = text + "=" * (-len(text) % 8)
        return base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise NkeyError(f"nkey is not valid base32: {exc}") from None


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _checked(text: str) -> bytes:
    raw = _b32decode(text)
    if len(raw) < 4:
        raise NkeyError("nkey is too short")
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if crc16_xmodem(body) != crc:
        raise NkeyError("nkey checksum mismatch (the key is corrupted or mistyped)")
    return body


def _with_crc(body: bytes) -> str:
    return _b32encode(body + crc16_xmodem(body).to_bytes(2, "little"))


def decode_curve_public_key(text: str) -> bytes:
    """Decode an `X…` curve public key to its 32 raw bytes."""
    body = _checked(text.strip())
    if body[0] != PREFIX_CURVE:
        raise NkeyError("not a curve public key (expected an nkey starting with 'X')")
    if len(body) != 33:
        raise NkeyError(f"curve public key has {len(body) - 1} key bytes, expected 32")
    return body[1:]


def decode_curve_seed(text: str) -> bytes:
    """Decode an `SX…` curve seed to its 32-byte X25519 private key."""
    body = _checked(text.strip())
    b0, b1 = body[0], body[1]
    if b0 & 0xF8 != PREFIX_SEED:
        raise NkeyError("not an nkey seed (expected a string starting with 'S')")
    if ((b0 & 0x07) << 5) | ((b1 & 0xF8) >> 3) != PREFIX_CURVE:
        raise NkeyError("seed is not a curve (xkey) seed (expected 'SX…')")
    if len(body) != 34:
        raise NkeyError(f"curve seed has {len(body) - 2} key bytes, expected 32")
    return body[2:]


def decode_seed(text: str) -> tuple[int, bytes]:
    """Decode any `S…` seed to (key-type prefix byte, 32 raw seed bytes)."""
    body = _checked(text.strip())
    if len(body) != 34 or body[0] & 0xF8 != PREFIX_SEED:
        raise NkeyError("not an nkey seed (expected a string starting with 'S')")
    kind = ((body[0] & 0x07) << 5) | ((body[1] & 0xF8) >> 3)
    return kind, body[2:]


def sign_with_user_seed(seed: str, data: bytes) -> bytes:
    """Ed25519-sign `data` with a user (`SU…`) seed, as NATS JWT auth needs for its nonce."""
    kind, raw = decode_seed(seed)
    if kind != PREFIX_USER:
        raise NkeyError("not a user seed (expected 'SU…')")
    return SigningKey(raw).sign(data).signature


def encode_curve_public_key(raw: bytes) -> str:
    """Encode 32 raw X25519 public key bytes as an `X…` nkey."""
    if len(raw) != 32:
        raise NkeyError("curve public key must be 32 bytes")
    return _with_crc(bytes([PREFIX_CURVE]) + raw)


def encode_curve_seed(raw: bytes) -> str:
    """Encode a 32-byte X25519 private key as an `SX…` seed."""
    if len(raw) != 32:
        raise NkeyError("curve seed must be 32 bytes")
    b0 = PREFIX_SEED | (PREFIX_CURVE >> 5)
    b1 = (PREFIX_CURVE & 0x1F) << 3
    return _with_crc(bytes([b0, b1]) + raw)


class XKey:
    """A curve key pair (or public key alone) able to open and seal `xkv1` boxes."""

    def __init__(self, private: PrivateKey | None, public: PublicKey) -> None:
        self._private = private
        self.public_raw = bytes(public)
        self._public = public

    @classmethod
    def from_seed(cls, seed: str) -> XKey:
        """Build a key pair from an `SX…` seed."""
        private = PrivateKey(decode_curve_seed(seed))
        return cls(private, private.public_key)

    @classmethod
    def from_public_key(cls, public: str) -> XKey:
        """Build a public-only key from an `X…` string."""
        return cls(None, PublicKey(decode_curve_public_key(public)))

    @classmethod
    def generate(cls) -> XKey:
        """A fresh random key pair (tests and tools)."""
        private = PrivateKey.generate()
        return cls(private, private.public_key)

    @property
    def public_key(self) -> str:
        """The `X…` public key string."""
        return encode_curve_public_key(self.public_raw)

    @property
    def seed(self) -> str:
        """The `SX…` seed string (raises `NkeyError` on a public-only key)."""
        if self._private is None:
            raise NkeyError("public-only xkey has no seed")
        return encode_curve_seed(bytes(self._private))

    def open(self, sealed: bytes, sender: XKey) -> bytes:
        """Open an `xkv1` box sealed by `sender` to this key; raises `SecretError`."""
        if self._private is None:
            raise SecretError("cannot open a sealed box with a public-only xkey")
        if not sealed.startswith(XKEY_VERSION):
            raise SecretError("sealed secret lacks the 'xkv1' version prefix")
        body = sealed[len(XKEY_VERSION) :]
        if len(body) < NONCE_LEN + 16:
            raise SecretError("sealed secret is too short")
        nonce, ciphertext = body[:NONCE_LEN], body[NONCE_LEN:]
        try:
            return Box(self._private, sender._public).decrypt(ciphertext, nonce)
        except CryptoError:
            raise SecretError(
                "sealed secret could not be opened (wrong key pair or tampered data)"
            ) from None

    def seal(self, plaintext: bytes, recipient: XKey) -> bytes:
        """Seal `plaintext` to `recipient` (what the host does; used by tests and tools)."""
        if self._private is None:
            raise SecretError("cannot seal with a public-only xkey")
        encrypted = Box(self._private, recipient._public).encrypt(plaintext)
        return XKEY_VERSION + encrypted.nonce + encrypted.ciphertext


# --- generic Ed25519 nkeys ---------------------------------------------------------------------
# Role prefix bytes of nats-io/nkeys `strkey.go`; the first base32 character of a public key is
# the prefix's top five bits, so `14 << 3` encodes as 'O', `0` as 'A', and so on.

PREFIX_OPERATOR = 14 << 3  # 'O'
PREFIX_ACCOUNT = 0  # 'A'
PREFIX_SERVER = 13 << 3  # 'N' (a wasmCloud host id)
PREFIX_CLUSTER = 2 << 3  # 'C'
PREFIX_SERVICE = 21 << 3  # 'V' (wasmCloud: a provider's or component's identity)
#: Prefixes of Ed25519 (signing) nkeys; `PREFIX_CURVE` keys are X25519 and cannot sign.
SIGNING_PREFIXES = frozenset(
    {PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_SERVER, PREFIX_CLUSTER, PREFIX_USER, PREFIX_SERVICE}
)
_PUBLIC_PREFIXES = SIGNING_PREFIXES | {PREFIX_CURVE}


def _check_prefix(prefix: int) -> None:
    if prefix not in _PUBLIC_PREFIXES:
        raise NkeyError(f"unknown nkey prefix byte {prefix}")


def encode_public_key(prefix: int, raw: bytes) -> str:
    """Encode 32 raw public key bytes as an nkey of the role `prefix` (e.g. `PREFIX_USER`)."""
    _check_prefix(prefix)
    if len(raw) != 32:
        raise NkeyError(f"public key must be 32 bytes, got {len(raw)}")
    return _with_crc(bytes([prefix]) + raw)


def decode_public_key(text: str, expected: int | None = None) -> tuple[int, bytes]:
    """Decode a public nkey to (prefix byte, 32 raw bytes), checking its CRC.

    With `expected`, the key must have that role prefix. Raises `NkeyError`.
    """
    body = _checked(text.strip())
    prefix = body[0]
    if prefix not in _PUBLIC_PREFIXES:
        raise NkeyError("not a public nkey (unknown prefix; seeds start with 'S')")
    if len(body) != 33:
        raise NkeyError(f"public nkey has {len(body) - 1} key bytes, expected 32")
    if expected is not None and prefix != expected:
        want = encode_public_key(expected, bytes(32))[0]
        raise NkeyError(f"wrong kind of nkey: expected one starting with {want!r}")
    return prefix, body[1:]


def encode_seed(prefix: int, raw: bytes) -> str:
    """Encode a 32-byte private seed of the role `prefix` as an `S…` seed string."""
    _check_prefix(prefix)
    if len(raw) != 32:
        raise NkeyError(f"seed must be 32 bytes, got {len(raw)}")
    b0 = PREFIX_SEED | (prefix >> 5)
    b1 = (prefix & 0x1F) << 3
    return _with_crc(bytes([b0, b1]) + raw)


def verify_signature(public_key: str, data: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    prefix, raw = decode_public_key(public_key)
    if prefix not in SIGNING_PREFIXES:
        raise NkeyError("curve (X…) keys cannot verify signatures")
    try:
        VerifyKey(raw).verify(data, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


class KeyPair:
    """An Ed25519 nkey pair of one role (operator, account, user, server, cluster, service)."""

    def __init__(self, prefix: int, signing_key: SigningKey) -> None:
        if prefix not in SIGNING_PREFIXES:
            raise NkeyError(f"prefix byte {prefix} is not an Ed25519 nkey role")
        self.prefix = prefix
        self._signing_key = signing_key

    @classmethod
    def generate(cls, prefix: int) -> KeyPair:
        """A fresh random key pair of role `prefix` (e.g. `KeyPair.generate(PREFIX_USER)`)."""
        return cls(prefix, SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: str) -> KeyPair:
        """The key pair of an `S…` seed (`SO…`, `SA…`, `SU…`, `SN…`, `SC…`, `SV…`)."""
        prefix, raw = decode_seed(seed)
        if prefix not in SIGNING_PREFIXES:
            raise NkeyError("not an Ed25519 nkey seed (curve 'SX…' seeds cannot sign)")
        return cls(prefix, SigningKey(raw))

    @property
    def public_key(self) -> str:
        """The public key string (first character gives the role: O, A, U, N, C or V)."""
        return encode_public_key(self.prefix, bytes(self._signing_key.verify_key))

    @property
    def seed(self) -> str:
        """The seed string (`S` + role character + …). Treat it as a secret."""
        return encode_seed(self.prefix, bytes(self._signing_key))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        return self._signing_key.sign(data).signature

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's signature of `data`."""
        return verify_signature(self.public_key, data, signature)

    def __repr__(self) -> str:  # never show the seed
        return f"KeyPair({self.public_key})"


# --- Ed25519 JWTs ------------------------------------------------------------------------------

#: Header of NATS v2 JWTs (nats-io/jwt v2 writes exactly this; it also reads alg "ed25519").
NATS_JWT_HEADER: Mapping[str, str] = {"typ": "JWT", "alg": "ed25519-nkey"}
#: Header of wascap (wasmCloud component/provider) claims JWTs.
WASCAP_JWT_HEADER: Mapping[str, str] = {"typ": "jwt", "alg": "Ed25519"}


class JwtError(NkeyError):
    """A JWT was malformed or its signature did not verify."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwtError(f"JWT segment is not valid base64url: {exc}") from None


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value), separators=(",", ":")).encode()


def encode_jwt(
    claims: Mapping[str, Any],
    issuer: KeyPair,
    *,
    header: Mapping[str, str] = NATS_JWT_HEADER,
) -> str:
    """Encode and sign a JWT: `b64url(header).b64url(claims).b64url(sig)`, no padding.

    The signature is `issuer`'s Ed25519 signature over the ASCII text `header.claims` (the
    first two segments), as both nats-io/jwt v2 and wascap compute it. `claims` is encoded
    as given (compact JSON): the caller sets `iss` (normally `issuer.public_key`), `sub`,
    `iat`, `jti` and the rest.
    """
    signing_input = f"{_b64url(_compact_json(header))}.{_b64url(_compact_json(claims))}"
    signature = issuer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{_b64url(signature)}"


def decode_jwt(token: str, *, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a JWT into (header, claims); by default verify its signature by claims `iss`.

    Only the signature is checked (not expiry, not the issuer's authority). Raises `JwtError`.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError(f"a JWT has 3 dot-separated segments, this one has {len(parts)}")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JwtError(f"JWT segment is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("JWT header and claims must be JSON objects")
    if verify:
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise JwtError("JWT has no issuer ('iss') to verify its signature with")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        if not verify_signature(issuer, signing_input, _b64url_decode(parts[2])):
            raise JwtError("JWT signature does not verify with its issuer's key")
    return header, claims
