"""nkey decoding and xkey boxes, with the Go-generated vectors of PROTOCOL.md §2.5."""

from __future__ import annotations

import base64

import pytest

from wasmcloud_provider_sdk.errors import NkeyError, SecretError
from wasmcloud_provider_sdk.nkeys import (
    XKey,
    crc16_xmodem,
    decode_curve_public_key,
    decode_curve_seed,
    decode_seed,
    sign_with_user_seed,
)

GO_RECEIVER_SEED = "SXAHGC56LJFTSRXFC653AT7XZU6WGYIXU4XFPMCT62GGHFLUCSPVYP764M"
GO_SENDER_PUBLIC = "XBUJMZHVOPQ2SK5VD3TY4VNBPVU2YFGRLK6EFPEPSMVDUYEBSROWZCEA"
# The 64-byte box from nkeys' `open_from_go` test (xkeys.rs), sealed by the sender above.
GO_SEALED = bytes.fromhex(
    "786b7631467698f98703502f4241b7a7347298009"
    "29f6d094b06c6e34a78de499ee7debbac9477556f3fbbe90ffd678bc629e5b7cc7c57404d923846cf010226"
)
DERIVE_SEED = "SXAKIYZX2POLIHZ5W5YZEWVTH24NLEUETBW3TKIVYRSS3GNHFXO5D4JJZM"
BAD_LENGTH_SEED = "SXAKIYZX2POLIHZ5W5YZEWVTH24NLEUETBW3TKIVYRSS3GNHFXO5D4JJZMA"
BAD_PREFIX_SEED = "SZAIB67JMUPS5OKP6BZNCFTIMHOTS6JIX2C53TLSNEROIRFBJLSK3NUOVY"


def test_crc16_xmodem_check_value() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3


def test_go_vector_opens() -> None:
    receiver = XKey.from_seed(GO_RECEIVER_SEED)
    sender = XKey.from_public_key(GO_SENDER_PUBLIC)
    assert receiver.open(GO_SEALED, sender) == b"this is super secret"


def test_public_key_derivation_matches_go() -> None:
    assert XKey.from_seed(DERIVE_SEED).public_key == GO_SENDER_PUBLIC


def test_seed_round_trip() -> None:
    key = XKey.generate()
    again = XKey.from_seed(key.seed)
    assert again.public_key == key.public_key
    assert key.seed.startswith("SX") and key.public_key.startswith("X")
    assert len(key.seed) == 58 and len(key.public_key) == 56


def test_seal_open_round_trip() -> None:
    host, prov = XKey.generate(), XKey.generate()
    sealed = host.seal(b"payload", XKey.from_public_key(prov.public_key))
    assert sealed.startswith(b"xkv1")
    assert prov.open(sealed, XKey.from_public_key(host.public_key)) == b"payload"


def test_tampered_box_is_refused() -> None:
    receiver = XKey.from_seed(GO_RECEIVER_SEED)
    sender = XKey.from_public_key(GO_SENDER_PUBLIC)
    bad = bytearray(GO_SEALED)
    bad[-1] ^= 1
    with pytest.raises(SecretError, match="could not be opened"):
        receiver.open(bytes(bad), sender)
    with pytest.raises(SecretError, match="xkv1"):
        receiver.open(b"xkv2" + GO_SEALED[4:], sender)
    with pytest.raises(SecretError, match="too short"):
        receiver.open(b"xkv1" + b"\x00" * 10, sender)


def test_checksum_mismatch() -> None:
    mangled = GO_SENDER_PUBLIC[:-2] + ("A" if GO_SENDER_PUBLIC[-2] != "A" else "B") + "A"
    with pytest.raises(NkeyError):
        decode_curve_public_key(mangled)


def test_wrong_prefixes() -> None:
    with pytest.raises(NkeyError, match="curve public key"):
        decode_curve_public_key(GO_RECEIVER_SEED)
    with pytest.raises(NkeyError, match="seed"):
        decode_curve_seed(GO_SENDER_PUBLIC)
    with pytest.raises(NkeyError, match="base32"):
        decode_curve_seed("SXAKIYZX2POLIHZ5W5YZEWVTH24NLEUETBW3TKIVYRSS!GNHFXO5D4JJZM")
    with pytest.raises(NkeyError):
        decode_curve_seed(BAD_LENGTH_SEED)
    with pytest.raises(NkeyError, match="curve"):
        decode_curve_seed(BAD_PREFIX_SEED)


def test_user_seed_signs() -> None:
    from nacl.signing import SigningKey

    raw = bytes(range(32))
    # Build an SU... seed by hand: prefix bytes for seed+user, then CRC.
    b0 = (18 << 3) | ((20 << 3) >> 5)
    b1 = ((20 << 3) & 0x1F) << 3
    body = bytes([b0, b1]) + raw
    seed = base64.b32encode(body + crc16_xmodem(body).to_bytes(2, "little")).decode().rstrip("=")
    assert seed.startswith("SU")
    kind, decoded = decode_seed(seed)
    assert decoded == raw and kind == 20 << 3
    sig = sign_with_user_seed(seed, b"nonce")
    SigningKey(raw).verify_key.verify(b"nonce", sig)
    with pytest.raises(NkeyError, match="user seed"):
        sign_with_user_seed(GO_RECEIVER_SEED, b"nonce")
