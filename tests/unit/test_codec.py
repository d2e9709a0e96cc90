"""The value codec: LEB128 edge values, every type, truncation and invalid input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmcloud_provider_sdk.codec import (
    Reader,
    decode_all,
    leading_string,
    write_bool,
    write_bytes,
    write_option,
    write_sleb128,
    write_string,
    write_u8,
    write_u32,
    write_u64,
)
from wasmcloud_provider_sdk.errors import CodecError, NeedMoreBytes

LEB128_TABLE = [
    (0, "00"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (1000, "e807"),
    (65535, "ffff03"),
    (1048576, "808040"),
    (4294967295, "ffffffff0f"),
]


@pytest.mark.parametrize(("value", "hex_"), LEB128_TABLE)
def test_u32_leb128_table(value: int, hex_: str) -> None:
    out = bytearray()
    write_u32(out, value)
    assert out.hex() == hex_
    assert Reader(bytes.fromhex(hex_)).u32() == value


def test_u32_rejects_out_of_range_on_encode() -> None:
    with pytest.raises(CodecError):
        write_u32(bytearray(), 1 << 32)
    with pytest.raises(CodecError):
        write_u32(bytearray(), -1)


@pytest.mark.parametrize(
    "hex_",
    [
        "ffffffff1f",  # fifth byte carries bit 32
        "ffffffff8f01",  # six bytes
        "8080808010",  # 2**32 exactly
    ],
)
def test_u32_overflow_is_an_error(hex_: str) -> None:
    with pytest.raises(CodecError, match="overflows u32"):
        Reader(bytes.fromhex(hex_)).u32()


def test_u64_edges() -> None:
    out = bytearray()
    write_u64(out, (1 << 64) - 1)
    assert out.hex() == "ffffffffffffffffff01"
    assert Reader(out).u64() == (1 << 64) - 1
    with pytest.raises(CodecError):
        Reader(bytes.fromhex("ffffffffffffffffff02")).u64()


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31)])
def test_sleb128_round_trip(value: int) -> None:
    out = bytearray()
    write_sleb128(out, value, bits=32)
    assert Reader(out).sleb128(32) == value


def test_sleb128_known_bytes() -> None:
    out = bytearray()
    write_sleb128(out, -123456, bits=32)
    assert out.hex() == "c0bb78"


def test_truncated_leb128_needs_more_bytes() -> None:
    with pytest.raises(NeedMoreBytes):
        Reader(b"\x80\x80").u32()
    with pytest.raises(NeedMoreBytes):
        Reader(b"").u32()


def test_string_and_bytes() -> None:
    out = bytearray()
    write_string(out, "héllo")
    write_bytes(out, b"\x00\xff")
    assert out.hex() == "0668c3a96c6c6f" + "0200ff"
    reader = Reader(out)
    assert reader.string() == "héllo"
    assert reader.byte_list() == b"\x00\xff"
    assert reader.at_end()


def test_invalid_utf8_string_is_an_error() -> None:
    with pytest.raises(CodecError, match="UTF-8"):
        Reader(b"\x02\xc3\x28").string()


def test_truncated_string_needs_more_bytes() -> None:
    with pytest.raises(NeedMoreBytes):
        Reader(b"\x05abc").string()


def test_option_and_bool() -> None:
    out = bytearray()
    write_option(out, None, write_string)
    write_option(out, "x", write_string)
    write_bool(out, True)
    write_u8(out, 7)
    assert out.hex() == "00" + "010178" + "01" + "07"
    reader = Reader(out)
    assert reader.option(Reader.string) is None
    assert reader.option(Reader.string) == "x"
    assert reader.boolean() is True
    assert reader.u8() == 7


def test_bad_discriminants() -> None:
    with pytest.raises(CodecError, match="option"):
        Reader(b"\x02").option(Reader.string)
    with pytest.raises(CodecError, match="result"):
        Reader(b"\x02").result_tag()
    with pytest.raises(CodecError, match="bool"):
        Reader(b"\x02").boolean()


def test_decode_all_rejects_trailing_bytes() -> None:
    with pytest.raises(CodecError, match="trailing"):
        decode_all(b"\x01a!", Reader.string)


@given(st.text(), st.binary(), st.none() | st.text(), st.integers(0, 2**32 - 1))
def test_round_trip_any_values(text: str, data: bytes, opt: str | None, n: int) -> None:
    out = bytearray()
    write_string(out, text)
    write_bytes(out, data)
    write_option(out, opt, write_string)
    write_u32(out, n)

    def read(reader: Reader) -> tuple[str, bytes, str | None, int]:
        return reader.string(), reader.byte_list(), reader.option(Reader.string), reader.u32()

    assert decode_all(bytes(out), read) == (text, data, opt, n)
    # Every strict prefix is incomplete, never wrong.
    for cut in range(len(out)):
        with pytest.raises(NeedMoreBytes):
            decode_all(bytes(out[:cut]), read)


@given(st.binary(max_size=64))
def test_garbage_raises_only_codec_errors(data: bytes) -> None:
    def read(reader: Reader) -> object:
        return reader.string(), reader.byte_list(), reader.option(Reader.string), reader.u32()

    with contextlib.suppress(CodecError):
        decode_all(data, read)


@given(st.text(), st.binary())
def test_leading_string_reads_the_first_value_only(text: str, rest: bytes) -> None:
    out = bytearray()
    write_string(out, text)
    assert leading_string(bytes(out) + rest) == text
    assert leading_string(memoryview(bytes(out))) == text


@pytest.mark.parametrize(
    "buf",
    [b"", b"\x05ab", b"\x02\xff\xfe", b"\x80", b"\x81\x01" + b"a" * 10, b"\x82\x01\xff" * 2],
)
def test_leading_string_is_none_without_a_whole_valid_string(buf: bytes) -> None:
    assert leading_string(buf) is None
