"""Sans-I/O codec for component-model values as wRPC puts them on the wire.

docs/PROTOCOL.md, section 5.

Encoding appends to a `bytearray`; decoding reads from a `Reader` over a byte buffer that may
end in the middle of a value, in which case `NeedMoreBytes` is raised and the caller decodes
again from the start once more bytes have arrived. Every length is checked against the buffer
before anything is copied, so a retry on a partial buffer costs O(1) per value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import CodecError, NeedMoreBytes

T = TypeVar("T")
E = TypeVar("E")

U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


# --- encoding ---------------------------------------------------------------------------------


def write_uleb128(out: bytearray, value: int, *, max_value: int = U64_MAX) -> None:
    """Append `value` as unsigned LEB128; raise `CodecError` if it is negative or too large."""
    if value < 0 or value > max_value:
        raise CodecError(f"unsigned LEB128 value out of range: {value}")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def write_sleb128(out: bytearray, value: int, *, bits: int = 64) -> None:
    """Append `value` as signed LEB128; raise `CodecError` if it does not fit in `bits`."""
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise CodecError(f"signed LEB128 value out of range for s{bits}: {value}")
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return


def write_u8(out: bytearray, value: int) -> None:
    """Append a `u8` (one raw byte)."""
    if not 0 <= value <= 0xFF:
        raise CodecError(f"u8 value out of range: {value}")
    out.append(value)


def write_u32(out: bytearray, value: int) -> None:
    """Append a `u32` (unsigned LEB128, 1-5 bytes)."""
    write_uleb128(out, value, max_value=U32_MAX)


def write_u64(out: bytearray, value: int) -> None:
    """Append a `u64` (unsigned LEB128, 1-10 bytes)."""
    write_uleb128(out, value, max_value=U64_MAX)


def write_bool(out: bytearray, value: bool) -> None:
    """Append a `bool` (one byte, 0 or 1)."""
    out.append(1 if value else 0)


def write_bytes(out: bytearray, value: bytes | bytearray | memoryview) -> None:
    """Append a `list<u8>`: LEB128 length, then the raw bytes."""
    write_uleb128(out, len(value), max_value=U32_MAX)
    out += value


def write_string(out: bytearray, value: str) -> None:
    """Append a `string`: LEB128 byte length, then UTF-8."""
    write_bytes(out, value.encode("utf-8"))


def write_option(out: bytearray, value: T | None, write: Callable[[bytearray, T], None]) -> None:
    """Append an `option<T>`: `00`, or `01` followed by the value."""
    if value is None:
        out.append(0)
    else:
        out.append(1)
        write(out, value)


# --- decoding ---------------------------------------------------------------------------------


class Reader:
    """A cursor over a byte buffer; each read either consumes a whole value or raises.

    `NeedMoreBytes` means the buffer ends inside the value (retry with more bytes);
    `CodecError` means the bytes can never decode as the expected type.
    """

    __slots__ = ("_buf", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self._buf = memoryview(buf)
        self.pos = pos

    @property
    def remaining(self) -> int:
        """Bytes left after the cursor."""
        return len(self._buf) - self.pos

    def at_end(self) -> bool:
        """True when every byte has been consumed."""
        return self.pos >= len(self._buf)

    def _take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self._buf):
            raise NeedMoreBytes(f"need {end - len(self._buf)} more byte(s)")
        view = self._buf[self.pos : end]
        self.pos = end
        return view

    def u8(self) -> int:
        """Read a `u8`."""
        if self.pos >= len(self._buf):
            raise NeedMoreBytes("need 1 more byte(s)")
        value = self._buf[self.pos]
        self.pos += 1
        return value

    def uleb128(self, bits: int) -> int:
        """Read an unsigned LEB128 value of at most `bits` bits."""
        max_len = (bits + 6) // 7
        result = 0
        shift = 0
        for i in range(max_len):
            byte = self.u8()
            if i == max_len - 1 and byte >> (bits - shift) != 0:
                raise CodecError(f"LEB128 value overflows u{bits}")
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
        raise CodecError(f"LEB128 value overflows u{bits}")  # pragma: no cover - caught above

    def sleb128(self, bits: int) -> int:
        """Read a signed LEB128 value of at most `bits` bits."""
        max_len = (bits + 6) // 7
        result = 0
        shift = 0
        for _ in range(max_len):
            byte = self.u8()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte & 0x40:
                    result -= 1 << shift
                if not -(1 << (bits - 1)) <= result < (1 << (bits - 1)):
                    raise CodecError(f"LEB128 value overflows s{bits}")
                return result
        raise CodecError(f"LEB128 value overflows s{bits}")

    def u32(self) -> int:
        """Read a `u32`."""
        return self.uleb128(32)

    def u64(self) -> int:
        """Read a `u64`."""
        return self.uleb128(64)

    def boolean(self) -> bool:
        """Read a `bool`; any byte other than 0 or 1 is an error."""
        value = self.u8()
        if value > 1:
            raise CodecError(f"invalid bool byte: {value:#04x}")
        return value == 1

    def byte_list(self) -> bytes:
        """Read a `list<u8>`."""
        n = self.uleb128(32)
        return bytes(self._take(n))

    def string(self) -> str:
        """Read a `string`; invalid UTF-8 is an error."""
        n = self.uleb128(32)
        raw = self._take(n)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"string is not valid UTF-8: {exc.reason}") from None

    def option(self, read: Callable[[Reader], T]) -> T | None:
        """Read an `option<T>`."""
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read(self)
        raise CodecError(f"invalid option discriminant: {tag:#04x}")

    def result_tag(self) -> bool:
        """Read the discriminant of a `result<_, _>`: True for ok, False for err."""
        tag = self.u8()
        if tag == 0:
            return True
        if tag == 1:
            return False
        raise CodecError(f"invalid result discriminant: {tag:#04x}")


def decode_all(buf: bytes | bytearray | memoryview, read: Callable[[Reader], T]) -> T:
    """Decode exactly one value from `buf`; trailing bytes are an error.

    Raises `NeedMoreBytes` when `buf` ends inside the value.
    """
    reader = Reader(buf)
    value = read(reader)
    if not reader.at_end():
        raise CodecError(f"{reader.remaining} unexpected trailing byte(s) after the value")
    return value


def leading_string(buf: bytes | bytearray | memoryview) -> str | None:
    """The `string` a tuple's encoding starts with, read without decoding the rest; None
    when `buf` does not start with a whole valid string. For a route that only needs the
    first parameter (a consumer call's subject) to decide where a call belongs."""
    if buf and buf[0] < 0x80:  # the usual short string: a one-byte length
        end = 1 + buf[0]
        if len(buf) < end:
            return None
        try:
            return str(buf[1:end], "utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return Reader(buf).string()
    except CodecError:  # NeedMoreBytes included
        return None
