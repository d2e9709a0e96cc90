"""nkey string decoding and xkey (curve) sealed boxes (PROTOCOL.md §2.5).

An nkey string is base32 (RFC 4648, no padding) of prefix ‖ raw key ‖ CRC-16/XMODEM (LE).
Link secrets arrive as `b"xkv1" ‖ nonce(24) ‖ crypto_box ciphertext`, sealed by the host's
curve key to this provider's curve key.
"""

from __future__ import annotations

import base64
import binascii

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import SigningKey

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
