"""nkey decoding and xkey boxes, with the Go-generated test vector of wasmCloud's nkeys crate."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pytest

from tests.natsjwt import nats_jti
from wasmcloud_provider_sdk.errors import NkeyError, SecretError
from wasmcloud_provider_sdk.nkeys import (
    NATS_JWT_HEADER,
    PREFIX_ACCOUNT,
    PREFIX_CLUSTER,
    PREFIX_CURVE,
    PREFIX_OPERATOR,
    PREFIX_SERVER,
    PREFIX_SERVICE,
    PREFIX_USER,
    WASCAP_JWT_HEADER,
    JwtError,
    KeyPair,
    XKey,
    crc16_xmodem,
    decode_curve_public_key,
    decode_curve_seed,
    decode_jwt,
    decode_public_key,
    decode_seed,
    encode_jwt,
    encode_public_key,
    encode_seed,
    sign_with_user_seed,
    verify_signature,
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


# --- generic Ed25519 nkeys and JWTs -----------------------------------------------------------

# The user-key vector shared by nats-io's nkeys test suites (Go, Python, Ruby, Elixir, ...).
NKEYS_USER_SEED = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"
NKEYS_USER_PUBLIC = "UCK5N7N66OBOINFXAYC2ACJQYFSOD4VYNU6APEJTAVFZB2SVHLKGEW7L"
NKEYS_NONCE = b"PXoWU7zWAMt75FY"
NKEYS_NONCE_SIG = (
    "ZaAiVDgB5CeYoXoQ7cBCmq+ZllzUnGUoDVb8C7PilWvCs8XKfUchAUhz2P4BYAF++Dg3w05CqyQFRDiGL6LrDw=="
)
# A user JWT minted by nsc (from redpanda-data/connect's NATS tests): real nats-io/jwt v2 output.
NSC_USER_JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJZMzMzT0c1SlFOVzZXU01DNUlMQjY0Uk5U"
    "R0hSRExBM1RTNFJGQ1JaMkU3NElYTzVBTU5BIiwiaWF0IjoxNjYxNzkzMjIxLCJpc3MiOiJBQTRJS1VNN0xVTlZLMlNU"
    "Q1lWN0lJWlZTWFdBWEhVUEE1RUI1SjNQQ0Y0V1pOSVFUSk1aMlpWTiIsIm5hbWUiOiJ0ZXN0Iiwic3ViIjoiVUE0RkxN"
    "RFQySVZNWEQ2SVZVRjRPRFk3UTRTSVBSU0kzVFRLN1ZMR0hFVFNDVUI0SEczQlRYWUUiLCJuYXRzIjp7InB1YiI6e30s"
    "InN1YiI6e30sInN1YnMiOi0xLCJkYXRhIjotMSwicGF5bG9hZCI6LTEsImlzc3Vlcl9hY2NvdW50IjoiQURJQjZKNk40"
    "SUNTVlZWWDMzRlc3U1FERlZaSEtLQlhJM05YUkYzWk41WEs1UDI3NVYyWFVKUU4iLCJ0eXBlIjoidXNlciIsInZlcnNp"
    "b24iOjJ9fQ.o11HW6FXVDi8cTA2OcWzYZz3tfiFpDqRNlDEZM0nNg47klTfSBkDW9eTTUC_EsZfaEOpCcy1cafPmBo4vpw_AA"
)


@pytest.mark.parametrize(
    ("prefix", "letter"),
    [
        (PREFIX_OPERATOR, "O"),
        (PREFIX_ACCOUNT, "A"),
        (PREFIX_USER, "U"),
        (PREFIX_SERVER, "N"),
        (PREFIX_CLUSTER, "C"),
        (PREFIX_SERVICE, "V"),
    ],
)
def test_known_prefixes_give_known_letters(prefix: int, letter: str) -> None:
    key = KeyPair.generate(prefix)
    assert key.public_key.startswith(letter) and len(key.public_key) == 56
    assert key.seed.startswith("S" + letter) and len(key.seed) == 58
    assert encode_public_key(prefix, bytes(32))[0] == letter
    assert encode_seed(prefix, bytes(32))[:2] == "S" + letter


def test_public_key_round_trip() -> None:
    raw = bytes(range(32))
    for prefix in (PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER, PREFIX_SERVICE, PREFIX_CURVE):
        text = encode_public_key(prefix, raw)
        assert decode_public_key(text) == (prefix, raw)
        assert decode_public_key(text, PREFIX_CURVE if prefix == PREFIX_CURVE else prefix)
    # Same encoding as the existing curve-key helper.
    assert (
        encode_public_key(PREFIX_CURVE, raw)
        == XKey.from_public_key(encode_public_key(PREFIX_CURVE, raw)).public_key
    )
    assert decode_public_key(GO_SENDER_PUBLIC) == (
        PREFIX_CURVE,
        decode_curve_public_key(GO_SENDER_PUBLIC),
    )
    with pytest.raises(NkeyError, match="starting with 'A'"):
        decode_public_key(encode_public_key(PREFIX_USER, raw), PREFIX_ACCOUNT)


def test_seed_encoding_round_trip() -> None:
    raw = bytes(range(32, 64))
    for prefix in (PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER, PREFIX_SERVER, PREFIX_SERVICE):
        assert decode_seed(encode_seed(prefix, raw)) == (prefix, raw)
    # Same encoding as the existing curve-seed helper.
    assert decode_curve_seed(encode_seed(PREFIX_CURVE, raw)) == raw


def test_decode_public_key_rejects_bad_crc() -> None:
    good = KeyPair.generate(PREFIX_ACCOUNT).public_key
    i = 20
    bad = good[:i] + ("B" if good[i] != "B" else "C") + good[i + 1 :]
    with pytest.raises(NkeyError, match="checksum"):
        decode_public_key(bad)
    with pytest.raises(NkeyError, match="checksum"):
        KeyPair.from_seed(NKEYS_USER_SEED[:-1] + ("A" if NKEYS_USER_SEED[-1] != "A" else "B"))


def test_decode_public_key_rejects_seeds_and_bad_input() -> None:
    with pytest.raises(NkeyError, match="not a public nkey"):
        decode_public_key(NKEYS_USER_SEED)
    with pytest.raises(NkeyError, match="base32"):
        decode_public_key("U!" + NKEYS_USER_PUBLIC[2:])
    with pytest.raises(NkeyError, match="32"):
        encode_public_key(PREFIX_USER, bytes(31))
    with pytest.raises(NkeyError, match="32"):
        encode_seed(PREFIX_USER, bytes(33))
    with pytest.raises(NkeyError, match="prefix"):
        encode_public_key(7, bytes(32))
    body = bytes([PREFIX_USER]) + bytes(31)
    short = base64.b32encode(body + crc16_xmodem(body).to_bytes(2, "little")).decode()
    with pytest.raises(NkeyError, match="31 key bytes"):
        decode_public_key(short.rstrip("="))


def test_keypair_matches_nkeys_vector() -> None:
    key = KeyPair.from_seed(NKEYS_USER_SEED)
    assert key.prefix == PREFIX_USER
    assert key.public_key == NKEYS_USER_PUBLIC
    assert key.seed == NKEYS_USER_SEED
    signature = key.sign(NKEYS_NONCE)
    assert base64.b64encode(signature).decode() == NKEYS_NONCE_SIG
    # The runtime's signer (used for NATS auth) agrees with the generic key pair.
    assert sign_with_user_seed(NKEYS_USER_SEED, NKEYS_NONCE) == signature


def test_keypair_round_trip_sign_and_verify() -> None:
    key = KeyPair.generate(PREFIX_SERVICE)
    again = KeyPair.from_seed(key.seed)
    assert again.public_key == key.public_key and again.prefix == PREFIX_SERVICE
    sig = key.sign(b"data")
    assert len(sig) == 64
    assert again.verify(b"data", sig)
    assert verify_signature(key.public_key, b"data", sig)
    assert not verify_signature(key.public_key, b"datA", sig)
    assert not verify_signature(KeyPair.generate(PREFIX_SERVICE).public_key, b"data", sig)
    assert not verify_signature(key.public_key, b"data", sig[:10])
    assert key.seed not in repr(key) and key.public_key in repr(key)


def test_keypair_refuses_curve_keys() -> None:
    with pytest.raises(NkeyError, match="curve"):
        KeyPair.from_seed(GO_RECEIVER_SEED)
    with pytest.raises(NkeyError, match="not an Ed25519"):
        KeyPair.generate(PREFIX_CURVE)
    with pytest.raises(NkeyError, match="cannot verify"):
        verify_signature(GO_SENDER_PUBLIC, b"data", bytes(64))


def _b64url_json(segment: str) -> object:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.mark.parametrize("header", [NATS_JWT_HEADER, WASCAP_JWT_HEADER])
def test_jwt_round_trip(header: Mapping[str, str]) -> None:
    issuer = KeyPair.generate(PREFIX_ACCOUNT)
    claims = {"iss": issuer.public_key, "sub": "subject", "iat": 1, "nats": {"type": "user"}}
    token = encode_jwt(claims, issuer, header=header)

    parts = token.split(".")
    assert len(parts) == 3
    assert "=" not in token and "+" not in token and "/" not in token
    assert _b64url_json(parts[0]) == header
    assert _b64url_json(parts[1]) == claims
    signature = base64.urlsafe_b64decode(parts[2] + "==")
    # Signed over the ASCII text of the first two segments.
    assert verify_signature(issuer.public_key, f"{parts[0]}.{parts[1]}".encode(), signature)
    assert decode_jwt(token) == (dict(header), claims)


def test_jwt_default_header_is_nats_v2() -> None:
    issuer = KeyPair.generate(PREFIX_OPERATOR)
    token = encode_jwt({"iss": issuer.public_key, "sub": issuer.public_key}, issuer)
    assert decode_jwt(token)[0] == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert token.startswith("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.")


def test_decode_jwt_rejects_forgeries() -> None:
    issuer, other = KeyPair.generate(PREFIX_ACCOUNT), KeyPair.generate(PREFIX_ACCOUNT)
    claims = {"iss": issuer.public_key, "sub": "s"}
    token = encode_jwt(claims, issuer)
    head, _, sig = token.split(".")
    forged_claims = base64.urlsafe_b64encode(b'{"iss":"%s","sub":"t"}' % issuer.public_key.encode())
    forged = f"{head}.{forged_claims.decode().rstrip('=')}.{sig}"
    with pytest.raises(JwtError, match="signature"):
        decode_jwt(forged)
    assert decode_jwt(forged, verify=False)[1]["sub"] == "t"
    with pytest.raises(JwtError, match="signature"):
        decode_jwt(encode_jwt(claims, other))  # signed by a key other than `iss`
    with pytest.raises(JwtError, match="issuer"):
        decode_jwt(encode_jwt({"sub": "s"}, issuer))
    with pytest.raises(JwtError, match="3 dot-separated"):
        decode_jwt(head + "." + sig)
    with pytest.raises(JwtError, match="JSON"):
        decode_jwt(f"{head}.bm90IGpzb24.{sig}")
    assert isinstance(JwtError("x"), NkeyError)


def test_decode_jwt_verifies_an_nsc_minted_token() -> None:
    header, claims = decode_jwt(NSC_USER_JWT)
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert claims["nats"]["type"] == "user" and claims["nats"]["version"] == 2
    assert decode_public_key(claims["iss"], PREFIX_ACCOUNT)
    assert decode_public_key(claims["sub"], PREFIX_USER)
    # tests/natsjwt.py computes `jti` exactly as nsc (nats-io/jwt v2) does.
    assert nats_jti(claims) == claims["jti"]
