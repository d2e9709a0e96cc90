"""The WebSocket frame format, version 1 (README: "Frame format"). Sans-I/O.

Text frames carry a JSON object, binary frames the same object in MessagePack:

* message (client <-> server): `{"type": "message"?, "subject": str, "body": …,
  "reply_to": str | null}`; binary data goes in `"body_b64"` in JSON, or as raw bytes in
  MessagePack. A JSON string body is its UTF-8 bytes; any other JSON body is sent to the
  component as its compact JSON encoding.
* control (server -> client): `welcome`, `error` (with a stable `code` and a `retryable`
  flag), `ack` (the component accepted message `id`);
  (client -> server): `subscribe`, `unsubscribe` with a `subject` pattern.

Decoding never raises anything but `FrameError`, whose `code` is part of the public contract.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import FrameError, PatternError
from .topics import validate_pattern

PROTOCOL_VERSION = 1

# Stable error codes (the public contract; never rename one).
BAD_FRAME = "bad_frame"  # not JSON / not MessagePack / not an object
BAD_UTF8 = "bad_utf8"  # a text frame or string that is not valid UTF-8
BAD_FIELD = "bad_field"  # a field missing or of the wrong type
BAD_BASE64 = "bad_base64"  # body_b64 is not valid base64
TOO_COMPLEX = "too_complex"  # past MAX_CONTAINERS / MAX_VALUES, or a body too big as JSON
UNKNOWN_TYPE = "unknown_type"  # a "type" this server does not know
RESERVED_SUBJECT = "reserved_subject"  # clients cannot send ws.session.*
BAD_SUBJECT = "bad_subject"  # a subscribe pattern that is not a valid subject pattern
NO_HANDLER = "no_handler"  # the endpoint has no handler link: inbound messages refused
HANDLER_ERROR = "handler_error"  # the component returned Err
DELIVERY_FAILED = "delivery_failed"  # the call failed at transport level (e.g. a trap)
COMPONENT_UNAVAILABLE = "component_unavailable"  # nobody serves handle-message (NATS 503)
HANDLER_TIMEOUT = "handler_timeout"  # no answer within HANDLER_TIMEOUT_SEC
LATTICE_UNAVAILABLE = "lattice_unavailable"  # the provider's lattice NATS connection is down
RATE_LIMITED = "rate_limited"  # the rate limiter dropped this message
UNSUPPORTED = "unsupported"  # e.g. subscribe on an endpoint without session tracking
OVERLOADED = "overloaded"  # the component is behind: this message was not taken
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"  # MAX_SUBSCRIPTIONS reached

#: Codes after which sending the same frame again later can succeed without any change on
#: the client's side (the `retryable` field of error frames). Everything else needs a
#: different frame (bad_*), a configuration change, or a fix in the component
#: (`handler_error`; `delivery_failed`, which a trapping component gives).
RETRYABLE = frozenset(
    {COMPONENT_UNAVAILABLE, HANDLER_TIMEOUT, LATTICE_UNAVAILABLE, OVERLOADED, RATE_LIMITED}
)

RESERVED_PREFIX = "ws.session."

MSGPACK_MAX_CONTAINER = 256
#: Arrays and maps one frame may hold, its body included. A structured body is for
#: convenience (bulk data goes in a string or a binary body); decoding a frame of nothing but
#: tiny containers (one per byte, a million in 1 MiB) would hold the event loop for
#: hundreds of milliseconds and every other session with it. With this bound the worst
#: frame decodes in about a millisecond.
MAX_CONTAINERS = 1000
#: Values in those arrays and objects (array items and object members, the frame's own
#: fields included). A flat array of 200,000 short numbers is cheap to send and took
#: 150-400 ms to turn into the JSON body the component gets (decode, then encode); floats
#: are the dearest to encode (~2 us each), so the worst frame within this bound costs ~8 ms.
MAX_VALUES = 4096

#: A client's frame `id`: a string or an integer (JS clients often count), echoed as given.
FrameId = str | int


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message frame from a client."""

    subject: str
    body: bytes
    reply_to: str | None
    frame_id: FrameId | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """`{"type": "subscribe", "subject": pattern}`."""

    pattern: str
    frame_id: FrameId | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """`{"type": "unsubscribe", "subject": pattern}`."""

    pattern: str
    frame_id: FrameId | None = None


Inbound = InboundMessage | Subscribe | Unsubscribe


_TOO_MANY = f"frame holds more than {MAX_CONTAINERS} arrays and objects"
_TOO_MANY_VALUES = f"frame holds more than {MAX_VALUES} values in arrays and objects"


class _ContainerCount:
    """msgpack hooks that stop a decode once it has built MAX_CONTAINERS containers or
    MAX_VALUES values in them."""

    __slots__ = ("left", "values_left")

    def __init__(self) -> None:
        self.left = MAX_CONTAINERS
        self.values_left = MAX_VALUES

    def __call__(self, container: Any) -> Any:
        self.left -= 1
        self.values_left -= len(container)
        if self.left < 0:
            raise _TooManyContainers(_TOO_MANY)
        if self.values_left < 0:
            raise _TooManyContainers(_TOO_MANY_VALUES)
        return container


class _TooManyContainers(Exception):
    pass


def _json_too_complex(data: bytes) -> str | None:
    """Why a JSON text holds too much to decode (`_TOO_MANY`, `_TOO_MANY_VALUES`), or None.

    Counts brackets (arrays and objects) and commas: a container's values are its commas plus
    one, so containers + commas bound the values. Brackets and commas inside strings do not
    count; they are only looked at when the quick count says there may be too many.

    Linear, in C-speed steps and without regular expressions (a regex over hostile input
    can take quadratic time): drop escaped backslashes, then escaped quotes; every quote left
    opens or closes a string, so the even pieces between quotes are outside strings."""
    containers = data.count(b"[") + data.count(b"{")
    if containers <= MAX_CONTAINERS and containers + data.count(b",") <= MAX_VALUES:
        return None
    outside = b"".join(data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    containers = outside.count(b"[") + outside.count(b"{")
    if containers > MAX_CONTAINERS:
        return _TOO_MANY
    if containers + outside.count(b",") > MAX_VALUES:
        return _TOO_MANY_VALUES
    return None


def _parse_object(data: bytes, binary: bool) -> dict[str, Any]:
    if binary:
        counter = _ContainerCount()
        try:
            # Small container limits too: a frame is a map of a few keys; a body that is a
            # map or array is for convenience, not bulk data (which goes in a bin body).
            obj = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_array_len=MSGPACK_MAX_CONTAINER,
                max_map_len=MSGPACK_MAX_CONTAINER,
                max_ext_len=0,
                list_hook=counter,
                object_hook=counter,
            )
        except _TooManyContainers as exc:
            raise FrameError(TOO_COMPLEX, str(exc)) from None
        except UnicodeDecodeError:
            raise FrameError(BAD_UTF8, "MessagePack string is not valid UTF-8") from None
        except Exception:  # msgpack raises many types (ExtraData, FormatError, ValueError…)
            raise FrameError(BAD_FRAME, "binary frame is not valid MessagePack") from None
    else:
        too_complex = _json_too_complex(data)
        if too_complex is not None:
            raise FrameError(TOO_COMPLEX, too_complex)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(BAD_UTF8, "text frame is not valid UTF-8") from None
        try:
            obj = _JSON_DECODER.decode(text)
        except (json.JSONDecodeError, RecursionError, ValueError):
            raise FrameError(BAD_FRAME, "text frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError(BAD_FRAME, f"frame must be an object, got {type(obj).__name__}")
    return obj


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; standard JSON (and every other peer) does not.
    raise ValueError(f"{name} is not JSON")


# Made once: `json.loads`/`json.dumps` with options build a new decoder/encoder per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: One JSON string literal (quotes included), as `_JSON_ENCODER` writes it.
_json_string = json.encoder.encode_basestring


_STANDARD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def _b64decode(value: str) -> bytes:
    """Standard or URL-safe base64 (one alphabet, not both), padding optional (JS clients
    produce both); anything else, junk characters included, raises `binascii.Error`."""
    if not _STANDARD_B64.fullmatch(value):
        if not _URLSAFE_B64.fullmatch(value):
            raise binascii.Error("not base64")
        value = value.translate(_URLSAFE_TO_STANDARD)
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def _string_field(obj: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise FrameError(BAD_FIELD, f"'{name}' must be a non-empty string", _frame_id(obj))
    return value


def _frame_id(obj: dict[str, Any]) -> FrameId | None:
    value = obj.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, str) or (isinstance(value, int) and abs(value) < 2**53):
        return value
    return None


def _encode_str(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError(BAD_UTF8, f"{what} contains a lone surrogate (not valid UTF-8)") from None


def _body(obj: dict[str, Any], binary: bool, max_body: int | None) -> bytes:
    has_body, has_b64 = "body" in obj, "body_b64" in obj
    if has_body and has_b64:
        raise FrameError(BAD_FIELD, "give 'body' or 'body_b64', not both", _frame_id(obj))
    if has_b64:
        value = obj["body_b64"]
        if not isinstance(value, str):
            raise FrameError(BAD_FIELD, "'body_b64' must be a string", _frame_id(obj))
        try:
            return _b64decode(value)
        except (binascii.Error, ValueError):
            raise FrameError(BAD_BASE64, "'body_b64' is not valid base64", _frame_id(obj)) from None
    if not has_body:
        return b""
    value = obj["body"]
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _encode_str(value, "'body'")
    # Any other value is sent as its compact JSON encoding (MessagePack maps and arrays too).
    try:
        encoded = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except UnicodeEncodeError:
        raise FrameError(BAD_UTF8, "'body' contains a lone surrogate") from None
    except (TypeError, ValueError, RecursionError):
        raise FrameError(
            BAD_FIELD,
            "'body' cannot be represented as JSON (e.g. a number out of range)",
            _frame_id(obj),
        ) from None
    # JSON can spell a value longer than MessagePack does (a control character takes 6 bytes,
    # a float up to 24): the body the component gets is bounded like the frame.
    if max_body is not None and len(encoded) > max_body:
        raise FrameError(
            TOO_COMPLEX,
            f"'body' as JSON is {len(encoded)} bytes, more than MAX_MESSAGE_BYTES ({max_body})",
            _frame_id(obj),
        )
    return encoded


def decode_frame(
    data: bytes, binary: bool, *, allow_reserved: bool = False, max_body: int | None = None
) -> Inbound:
    """Decode one client frame (`binary` = it arrived as a binary frame).

    `allow_reserved` lets `ws.session.*` subjects through (client mode: the peer is a server;
    the reservation protects our own session events from clients only). `max_body` bounds a
    structured body's JSON encoding (MAX_MESSAGE_BYTES; beyond: `too_complex`).
    """
    obj = _parse_object(data, binary)
    kind = obj.get("type", "message")
    if kind is None:
        kind = "message"
    if not isinstance(kind, str):
        raise FrameError(BAD_FIELD, "'type' must be a string", _frame_id(obj))
    if kind == "message":
        subject = _string_field(obj, "subject")
        assert subject is not None
        _encode_str(subject, "'subject'")
        if subject.startswith(RESERVED_PREFIX) and not allow_reserved:
            raise FrameError(
                RESERVED_SUBJECT,
                f"subjects starting with '{RESERVED_PREFIX}' are reserved for the provider",
                _frame_id(obj),
            )
        reply_to = _string_field(obj, "reply_to", optional=True)
        if reply_to is not None:
            _encode_str(reply_to, "'reply_to'")
        body = _body(obj, binary, max_body)
        return InboundMessage(subject, body, reply_to or None, _frame_id(obj))
    if kind in ("subscribe", "unsubscribe"):
        pattern = _string_field(obj, "subject")
        assert pattern is not None
        try:
            validate_pattern(pattern)
        except PatternError as exc:
            raise FrameError(BAD_SUBJECT, str(exc), _frame_id(obj)) from None
        frame_id = _frame_id(obj)
        return (
            Subscribe(pattern, frame_id) if kind == "subscribe" else Unsubscribe(pattern, frame_id)
        )
    raise FrameError(UNKNOWN_TYPE, f"unknown frame type {kind!r}", _frame_id(obj))


# --- encoding (server -> client) ---------------------------------------------------------


def _dump(obj: dict[str, Any], binary: bool) -> str | bytes:
    if binary:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return packed
    return _JSON_ENCODER.encode(obj)


def _message_fields(
    subject: str, body: bytes, reply_to: str | None, binary: bool
) -> dict[str, Any]:
    obj: dict[str, Any] = {"subject": subject}
    if binary:
        obj["body"] = body
    else:
        try:
            obj["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            obj["body_b64"] = base64.b64encode(body).decode("ascii")
    obj["reply_to"] = reply_to
    return obj


def _json_message_tail(subject: str, body: bytes, reply_to: str | None) -> str:
    """`,"subject":…,"body":…,"reply_to":…}`: the same text `_JSON_ENCODER` gives for
    `_message_fields(..., binary=False)`, built from its string encoder alone (no dict walk:
    this runs once per message sent)."""
    try:
        body_part = ',"body":' + _json_string(body.decode("utf-8"))
    except UnicodeDecodeError:
        body_part = ',"body_b64":"' + base64.b64encode(body).decode("ascii") + '"'
    reply = "null" if reply_to is None else _json_string(reply_to)
    return ',"subject":' + _json_string(subject) + body_part + ',"reply_to":' + reply + "}"


def encode_message(
    subject: str, body: bytes, reply_to: str | None, binary: bool = False, seq: int | None = None
) -> str | bytes:
    """A message frame; in JSON the body is a string when it is UTF-8, else `body_b64`.
    `seq` is the session's sequence number of the frame (server mode)."""
    obj: dict[str, Any] = {"type": "message"}
    if seq is not None:
        obj["seq"] = seq
    obj.update(_message_fields(subject, body, reply_to, binary))
    return _dump(obj, binary)


_JSON_HEAD_SEQ = '{"type":"message","seq":'
_MSGPACK_TYPE: bytes = msgpack.packb("type") + msgpack.packb("message") + msgpack.packb("seq")


class MessageTemplate:
    """One message for many sessions: encoded once per format, then stamped with each
    session's `seq` by concatenation (a broadcast to 10k sessions must not build 10k
    dicts). Also what the resume history keeps: the frame is re-rendered on replay in the
    format of the connection that resumes."""

    __slots__ = ("_json_tail", "_msgpack_n", "_msgpack_tail", "body", "mid", "reply_to", "subject")

    def __init__(
        self, subject: str, body: bytes, reply_to: str | None, mid: str | None = None
    ) -> None:
        self.subject = subject
        self.body = body
        self.reply_to = reply_to
        #: The id of a broadcast/topic publish (the same on every instance it fans out to):
        #: lets a session moving between instances get it once.
        self.mid = mid
        self._json_tail: str | None = None
        self._msgpack_tail: bytes | None = None
        self._msgpack_n = 0

    @property
    def size(self) -> int:
        """Approximate bytes this message holds (for history limits)."""
        return len(self.body) + len(self.subject) + len(self.reply_to or "") + 64

    def render(self, seq: int, binary: bool) -> str | bytes:
        """The frame with `seq`, byte-identical to `encode_message(..., seq=seq)`."""
        if binary:
            tail = self._msgpack_tail
            if tail is None:
                fields = _message_fields(self.subject, self.body, self.reply_to, True)
                parts = [
                    msgpack.packb(k) + msgpack.packb(v, use_bin_type=True)
                    for k, v in fields.items()
                ]
                tail = self._msgpack_tail = b"".join(parts)
                self._msgpack_n = len(parts) + 2
            head = bytes([0x80 | self._msgpack_n])
            packed_seq: bytes = msgpack.packb(seq)
            return head + _MSGPACK_TYPE + packed_seq + tail
        json_tail = self._json_tail
        if json_tail is None:
            json_tail = self._json_tail = _json_message_tail(self.subject, self.body, self.reply_to)
        return _JSON_HEAD_SEQ + str(seq) + json_tail


def encode_welcome(
    session_id: str,
    binary: bool = False,
    *,
    seq: int = 0,
    resume_token: str | None = None,
    resume_window: float = 0.0,
    resumed: bool | None = None,
    recovered: bool | None = None,
) -> str | bytes:
    """The first frame of every connection: the session id, the last `seq` sent so far,
    and (when the endpoint offers resume) the token to resume with; `resumed`/`recovered`
    answer a resume attempt."""
    obj: dict[str, Any] = {
        "type": "welcome",
        "session_id": session_id,
        "protocol": PROTOCOL_VERSION,
        "seq": seq,
    }
    if resume_token is not None:
        obj["resume_token"] = resume_token
        obj["resume_window_sec"] = resume_window
    if resumed is not None:
        obj["resumed"] = resumed
        obj["recovered"] = bool(recovered)
    return _dump(obj, binary)


def encode_ack(frame_id: FrameId, binary: bool = False) -> str | bytes:
    """`{"type": "ack", "id": …}`: the component accepted the message with this `id`."""
    return _dump({"type": "ack", "id": frame_id}, binary)


def encode_error(
    code: str, message: str, frame_id: FrameId | None = None, binary: bool = False
) -> str | bytes:
    """An error frame; the session stays open. `retryable` says whether the same frame
    may succeed if sent again later (see `RETRYABLE`)."""
    obj: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": message,
        "retryable": code in RETRYABLE,
    }
    if frame_id is not None:
        obj["id"] = frame_id
    return _dump(obj, binary)
