"""Typed values and wire codecs for `wasmcloud:messaging@0.2.0` (docs/PROTOCOL.md 5.1).

Sans-I/O: these functions turn the contract's parameters and results into bytes and back. The
wRPC serving and invoking live in `messaging_bindings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Reader, decode_all, write_bytes, write_option, write_string, write_u32

CONSUMER_INSTANCE = "wasmcloud:messaging/consumer@0.2.0"
HANDLER_INSTANCE = "wasmcloud:messaging/handler@0.2.0"


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    """`record broker-message { subject: string, body: list<u8>, reply-to: option<string> }`."""

    subject: str
    body: bytes = b""
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class RequestParams:
    """The parameters of `consumer.request(subject, body, timeout-ms)`."""

    subject: str
    body: bytes
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Ok:
    """The `ok` case of a WIT `result`; `value` is None for `result<_, E>`."""

    value: object = None


@dataclass(frozen=True, slots=True)
class Err:
    """The `err` case of a WIT `result<_, string>`: a domain failure the caller sees as `Err`."""

    message: str


# --- broker-message -------------------------------------------------------------------------


def write_broker_message(out: bytearray, msg: BrokerMessage) -> None:
    """Append a `broker-message` record."""
    write_string(out, msg.subject)
    write_bytes(out, msg.body)
    write_option(out, msg.reply_to, write_string)


def read_broker_message(reader: Reader) -> BrokerMessage:
    """Read a `broker-message` record."""
    subject = reader.string()
    body = reader.byte_list()
    reply_to = reader.option(Reader.string)
    return BrokerMessage(subject, body, reply_to)


def encode_broker_message(msg: BrokerMessage) -> bytes:
    """The params of `publish` and `handle-message`: one `broker-message`."""
    subject = msg.subject.encode()
    body = msg.body
    reply = None if msg.reply_to is None else msg.reply_to.encode()
    if len(subject) < 0x80 and len(body) < 0x80 and (reply is None or len(reply) < 0x80):
        # The usual message, every length one LEB128 byte: joined, no general writer.
        if reply is None:
            return b"".join((bytes((len(subject),)), subject, bytes((len(body),)), body, b"\0"))
        return b"".join(
            (
                bytes((len(subject),)),
                subject,
                bytes((len(body),)),
                body,
                bytes((1, len(reply))),
                reply,
            )
        )
    out = bytearray()
    write_broker_message(out, msg)
    return bytes(out)


def decode_broker_message(buf: bytes | bytearray | memoryview) -> BrokerMessage:
    """Inverse of `encode_broker_message` (raises `NeedMoreBytes` on a truncated buffer)."""
    if type(buf) is bytes:
        # The usual message, read without the general reader: short subject and reply
        # (one-byte lengths), a body of any length. Anything else, and every error, is
        # left to the general reader, which says precisely what is wrong.
        try:
            n = buf[0]
            if n < 0x80:
                start = 1 + n
                size = buf[start]
                at = start + 1
                if size >= 0x80:
                    size &= 0x7F
                    shift = 7
                    while True:
                        byte = buf[at]
                        at += 1
                        size |= (byte & 0x7F) << shift
                        if not byte & 0x80 or shift > 21:
                            break
                        shift += 7
                end = at + size
                length = len(buf)
                if end < length and _leb_ends(buf, start + 1, at):
                    tag = buf[end]
                    if tag == 0 and end + 1 == length:
                        return BrokerMessage(buf[1:start].decode(), buf[at:end], None)
                    if tag == 1 and end + 2 + buf[end + 1] == length and buf[end + 1] < 0x80:
                        return BrokerMessage(
                            buf[1:start].decode(), buf[at:end], buf[end + 2 :].decode()
                        )
        except (IndexError, UnicodeDecodeError):
            pass
    return decode_all(buf, read_broker_message)


def _leb_ends(buf: bytes, first: int, after: int) -> bool:
    """Is the LEB128 length in `buf[first:after]` well formed: its last byte ends it, and
    it is not longer than a u32's five bytes?"""
    return after - first <= 5 and not buf[after - 1] & 0x80


# --- request params -------------------------------------------------------------------------


def encode_request_params(params: RequestParams) -> bytes:
    """`string ‖ list<u8> ‖ u32`."""
    out = bytearray()
    write_string(out, params.subject)
    write_bytes(out, params.body)
    write_u32(out, params.timeout_ms)
    return bytes(out)


def _read_request_params(reader: Reader) -> RequestParams:
    return RequestParams(reader.string(), reader.byte_list(), reader.u32())


def decode_request_params(buf: bytes | bytearray | memoryview) -> RequestParams:
    """Inverse of `encode_request_params`."""
    return decode_all(buf, _read_request_params)


# --- results --------------------------------------------------------------------------------


def encode_unit_result(result: Ok | Err) -> bytes:
    """`result<_, string>`: `00`, or `01 ‖ string`."""
    if isinstance(result, Ok):
        return b"\x00"
    out = bytearray(b"\x01")
    write_string(out, result.message)
    return bytes(out)


def _read_unit_result(reader: Reader) -> Ok | Err:
    if reader.result_tag():
        return Ok()
    return Err(reader.string())


_OK = Ok()


def decode_unit_result(buf: bytes | bytearray | memoryview) -> Ok | Err:
    """Inverse of `encode_unit_result`."""
    if buf == b"\x00":
        return _OK  # the usual answer (an immutable value: one is enough)
    return decode_all(buf, _read_unit_result)


def encode_message_result(result: Ok | Err) -> bytes:
    """`result<broker-message, string>` (the result of `request`)."""
    if isinstance(result, Err):
        out = bytearray(b"\x01")
        write_string(out, result.message)
        return bytes(out)
    if not isinstance(result.value, BrokerMessage):
        raise TypeError("Ok value of a request result must be a BrokerMessage")
    out = bytearray(b"\x00")
    write_broker_message(out, result.value)
    return bytes(out)


def _read_message_result(reader: Reader) -> Ok | Err:
    if reader.result_tag():
        return Ok(read_broker_message(reader))
    return Err(reader.string())


def decode_message_result(buf: bytes | bytearray | memoryview) -> Ok | Err:
    """Inverse of `encode_message_result`."""
    return decode_all(buf, _read_message_result)
