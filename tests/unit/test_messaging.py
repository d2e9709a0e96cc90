"""The exact byte strings of docs/PROTOCOL.md section 5.1 for wasmcloud:messaging@0.2.0."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmcloud_provider_sdk.codec import decode_all
from wasmcloud_provider_sdk.errors import CodecError, NeedMoreBytes
from wasmcloud_provider_sdk.messaging import (
    BrokerMessage,
    Err,
    Ok,
    RequestParams,
    decode_broker_message,
    decode_message_result,
    decode_request_params,
    decode_unit_result,
    encode_broker_message,
    encode_message_result,
    encode_request_params,
    encode_unit_result,
    read_broker_message,
    write_broker_message,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_publish_params() -> None:
    msg = BrokerMessage("a.b", b"hi", None)
    assert encode_broker_message(msg) == h("03 61 2e 62 02 68 69 00")
    assert decode_broker_message(h("03 61 2e 62 02 68 69 00")) == msg


def test_publish_params_with_reply_to() -> None:
    wire = h("03 61 2e 62 02 68 69 01 09 5f 49 4e 42 4f 58 2e 72 31")
    msg = BrokerMessage("a.b", b"hi", "_INBOX.r1")
    assert encode_broker_message(msg) == wire
    assert decode_broker_message(wire) == msg


def test_request_params() -> None:
    wire = h("03 61 2e 62 02 68 69 e8 07")
    assert encode_request_params(RequestParams("a.b", b"hi", 1000)) == wire
    assert decode_request_params(wire) == RequestParams("a.b", b"hi", 1000)


def test_unit_results() -> None:
    assert encode_unit_result(Ok()) == b"\x00"
    err = Err("component not linked: comp1")
    wire = h(
        "01 1b 63 6f 6d 70 6f 6e 65 6e 74 20 6e 6f 74 20 6c 69 6e 6b 65 64 3a 20 63 6f 6d 70 31"
    )
    assert encode_unit_result(err) == wire
    assert len(wire) == 29
    assert decode_unit_result(wire) == err
    assert decode_unit_result(h("01 04 62 6f 6f 6d")) == Err("boom")


def test_request_results() -> None:
    ok = Ok(BrokerMessage("_INBOX.x.y", b"pong", None))
    wire = h("00 0a 5f 49 4e 42 4f 58 2e 78 2e 79 04 70 6f 6e 67 00")
    assert encode_message_result(ok) == wire
    assert decode_message_result(wire) == ok
    text = "nats request timed out: deadline has elapsed"
    err_wire = encode_message_result(Err(text))
    assert err_wire[:2] == h("01 2c") and len(err_wire) == 2 + 44
    assert decode_message_result(err_wire) == Err(text)


def test_message_result_requires_broker_message() -> None:
    with pytest.raises(TypeError):
        encode_message_result(Ok("not a message"))


@pytest.mark.parametrize("cut", range(8))
def test_truncated_params_need_more(cut: int) -> None:
    with pytest.raises(NeedMoreBytes):
        decode_broker_message(h("03 61 2e 62 02 68 69 00")[:cut])


def test_bad_params_are_codec_errors() -> None:
    with pytest.raises(CodecError):
        decode_broker_message(h("03 61 2e 62 02 68 69 07"))  # bad option tag
    with pytest.raises(CodecError):
        decode_unit_result(h("02"))


# The short-message fast paths must be indistinguishable from the general reader and writer.

texts = st.text(max_size=200)
messages = st.builds(
    BrokerMessage, texts, st.binary(max_size=300), st.none() | st.text(max_size=150)
)


def general_encode(msg: BrokerMessage) -> bytes:
    out = bytearray()
    write_broker_message(out, msg)
    return bytes(out)


def general_decode(buf: bytes) -> BrokerMessage | type[Exception]:
    try:
        return decode_all(buf, read_broker_message)
    except (CodecError, NeedMoreBytes) as exc:
        return type(exc)


def fast_decode(buf: bytes) -> BrokerMessage | type[Exception]:
    try:
        return decode_broker_message(buf)
    except (CodecError, NeedMoreBytes) as exc:
        return type(exc)


@settings(max_examples=400)
@given(messages)
def test_encoding_a_message_matches_the_general_writer(msg: BrokerMessage) -> None:
    wire = encode_broker_message(msg)
    assert wire == general_encode(msg)
    assert decode_broker_message(wire) == msg


@settings(max_examples=400)
@given(messages, st.integers(min_value=0, max_value=400), st.binary(max_size=3))
def test_decoding_cut_or_padded_bytes_matches_the_general_reader(
    msg: BrokerMessage, cut: int, extra: bytes
) -> None:
    wire = general_encode(msg)
    for buf in (wire[:cut], wire + extra, wire[:cut] + extra):
        assert fast_decode(buf) == general_decode(buf)


@settings(max_examples=400)
@given(st.binary(max_size=40))
def test_decoding_any_bytes_matches_the_general_reader(buf: bytes) -> None:
    assert fast_decode(buf) == general_decode(buf)


@pytest.mark.parametrize("reply", [None, "", "r" * 127, "r" * 128, "é" * 63, "é" * 64])
def test_every_length_around_the_one_byte_limit_matches_the_general_codec(
    reply: str | None,
) -> None:
    for n in [*range(0, 300), 16_383, 16_384]:
        for subject in ("s" * (n % 130), "é" * (n % 70)):
            msg = BrokerMessage(subject, bytes(n), reply)
            wire = general_encode(msg)
            assert encode_broker_message(msg) == wire, (len(subject), n)
            assert decode_broker_message(wire) == msg, (len(subject), n)


def test_long_lengths_and_non_ascii_take_the_same_way() -> None:
    for msg in (
        BrokerMessage("s" * 127, b"b" * 127, "r" * 127),
        BrokerMessage("s" * 128, b"b" * 128, "r" * 128),
        BrokerMessage("é" * 64, b"x" * 70_000, "ü" * 64),
    ):
        assert encode_broker_message(msg) == general_encode(msg)
        assert decode_broker_message(general_encode(msg)) == msg
    assert decode_unit_result(b"\x00") == Ok()
    assert fast_decode(h("03 61 2e 62 82 00 68 00")) == general_decode(h("03 61 2e 62 82 00 68 00"))
