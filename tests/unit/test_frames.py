"""The frame format v1: decoding every kind of client frame and every error code."""

from __future__ import annotations

import base64
import contextlib
import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider import frames
from provider.frames import FrameError, InboundMessage, Subscribe, Unsubscribe, decode_frame


def text(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_message_variants() -> None:
    assert decode_frame(text({"subject": "a", "body": "hé"}), False) == InboundMessage(
        "a", "hé".encode(), None
    )
    assert decode_frame(
        text(
            {
                "type": "message",
                "subject": "a",
                "body": {"k": [1, True]},
                "reply_to": "r",
                "id": "9",
            }
        ),
        False,
    ) == InboundMessage("a", b'{"k":[1,true]}', "r", "9")
    assert decode_frame(text({"subject": "a", "body": 3.5}), False).body == b"3.5"  # type: ignore[union-attr]
    assert decode_frame(text({"subject": "a"}), False).body == b""  # type: ignore[union-attr]
    b64 = base64.b64encode(b"\x00\xff").decode()
    assert decode_frame(text({"subject": "a", "body_b64": b64}), False).body == b"\x00\xff"  # type: ignore[union-attr]
    assert decode_frame(text({"subject": "a", "reply_to": ""}), False).reply_to is None  # type: ignore[union-attr]


def test_msgpack_message() -> None:
    packed = msgpack.packb({"subject": "a", "body": b"\x00raw", "reply_to": "r"})
    assert decode_frame(packed, True) == InboundMessage("a", b"\x00raw", "r")
    assert decode_frame(msgpack.packb({"subject": "a", "body": "txt"}), True).body == b"txt"  # type: ignore[union-attr]
    assert decode_frame(msgpack.packb({"subject": "a", "body": [1, 2]}), True).body == b"[1,2]"  # type: ignore[union-attr]


def test_control_frames() -> None:
    assert decode_frame(text({"type": "subscribe", "subject": "a.*"}), False) == Subscribe("a.*")
    assert decode_frame(text({"type": "unsubscribe", "subject": "a.>"}), False) == Unsubscribe(
        "a.>"
    )


@pytest.mark.parametrize(
    ("data", "binary", "code"),
    [
        (b"nope", False, frames.BAD_FRAME),
        (b"[]", False, frames.BAD_FRAME),
        (b"\xff\xfe", False, frames.BAD_UTF8),
        (b"\xc1", True, frames.BAD_FRAME),
        (msgpack.packb([1]), True, frames.BAD_FRAME),
        (text({"subject": ""}), False, frames.BAD_FIELD),
        (text({"subject": 1}), False, frames.BAD_FIELD),
        (text({"subject": "a", "reply_to": 1}), False, frames.BAD_FIELD),
        (text({"subject": "a", "body": "x", "body_b64": "eA=="}), False, frames.BAD_FIELD),
        (text({"subject": "a", "body_b64": 5}), False, frames.BAD_FIELD),
        (text({"subject": "a", "body_b64": "!!"}), False, frames.BAD_BASE64),
        (text({"type": 5, "subject": "a"}), False, frames.BAD_FIELD),
        (text({"type": "nope"}), False, frames.UNKNOWN_TYPE),
        (text({"subject": "ws.session.closed"}), False, frames.RESERVED_SUBJECT),
        (b'{"subject": "a", "body": "\\ud800"}', False, frames.BAD_UTF8),
        (b'{"subject": "\\udc00"}', False, frames.BAD_UTF8),
        (text({"type": "subscribe", "subject": "a..b"}), False, frames.BAD_SUBJECT),
        (text({"type": "subscribe"}), False, frames.BAD_FIELD),
        (b"[" * 100_000, False, frames.TOO_COMPLEX),  # deep nesting
    ],
)
def test_bad_frames(data: bytes, binary: bool, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(data, binary)
    assert info.value.code == code
    assert info.value.message


def test_error_keeps_the_frame_id() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text({"subject": 5, "id": "abc"}), False)
    assert info.value.frame_id == "abc"


def test_encoders() -> None:
    assert json.loads(frames.encode_message("s", b"hi", None)) == {
        "type": "message",
        "subject": "s",
        "body": "hi",
        "reply_to": None,
    }
    assert json.loads(frames.encode_message("s", b"\xff", "r")) == {
        "type": "message",
        "subject": "s",
        "body_b64": "/w==",
        "reply_to": "r",
    }
    assert msgpack.unpackb(frames.encode_message("s", b"\xff", None, binary=True)) == {
        "type": "message",
        "subject": "s",
        "body": b"\xff",
        "reply_to": None,
    }
    assert json.loads(frames.encode_welcome("ws_x")) == {
        "type": "welcome",
        "session_id": "ws_x",
        "protocol": 1,
        "seq": 0,
    }
    assert json.loads(frames.encode_error("bad_frame", "m", "7")) == {
        "type": "error",
        "code": "bad_frame",
        "message": "m",
        "retryable": False,
        "id": "7",
    }


def test_error_frames_say_whether_a_retry_can_succeed() -> None:
    retryable = {
        "component_unavailable",
        "handler_timeout",
        "lattice_unavailable",
        "overloaded",
        "rate_limited",
    }
    assert retryable == frames.RETRYABLE
    final = [
        frames.BAD_FRAME,
        frames.BAD_UTF8,
        frames.BAD_FIELD,
        frames.BAD_BASE64,
        frames.UNKNOWN_TYPE,
        frames.RESERVED_SUBJECT,
        frames.BAD_SUBJECT,
        frames.NO_HANDLER,
        frames.HANDLER_ERROR,
        frames.DELIVERY_FAILED,
        frames.UNSUPPORTED,
        frames.TOO_MANY_SUBSCRIPTIONS,
    ]
    for code in [*retryable, *final]:
        for binary in (False, True):
            raw = frames.encode_error(code, "m", None, binary)
            obj = msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)
            assert obj["retryable"] is (code in retryable), code


@given(st.binary(max_size=256), st.booleans())
def test_decoder_raises_only_frame_errors(data: bytes, binary: bool) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(data, binary)


@given(st.text(min_size=1).filter(lambda s: not s.startswith("ws.session.")), st.binary())
def test_round_trip_through_encoder(subject: str, body: bytes) -> None:
    for binary in (False, True):
        encoded = frames.encode_message(subject, body, None, binary)
        raw = encoded if isinstance(encoded, bytes) else encoded.encode()
        try:
            decoded = decode_frame(raw, binary)
        except FrameError as exc:  # lone surrogates cannot be sent at all
            assert exc.code == frames.BAD_UTF8
            continue
        assert decoded == InboundMessage(subject, body, None)


def test_integer_frame_ids_are_echoed() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text({"subject": 5, "id": 7}), False)
    assert info.value.frame_id == 7
    assert json.loads(frames.encode_error("bad_field", "m", 7))["id"] == 7
    assert decode_frame(text({"subject": "a", "id": 12}), False).frame_id == 12  # type: ignore[union-attr]
    assert decode_frame(text({"subject": "a", "id": True}), False).frame_id is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "raw", [b'{"subject": "a", "body": NaN}', b'{"subject": "a", "body": Infinity}']
)
def test_non_standard_json_is_refused(raw: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(raw, False)
    assert info.value.code == frames.BAD_FRAME


def test_out_of_range_number_body_is_refused() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(b'{"subject": "a", "body": 1e400}', False)
    assert info.value.code == frames.BAD_FIELD


@pytest.mark.parametrize("encoded", ["-_8", "-_8=", "+/8=", "+/8"])
def test_base64_variants(encoded: str) -> None:
    assert decode_frame(text({"subject": "a", "body_b64": encoded}), False).body == b"\xfb\xff"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "encoded",
    ["-_8!", "-_ 8", "-_8\n", "-_8===", "-/8=", "+_8=", "a-b*c", "-_8=x", "é-_8"],
)
def test_base64_junk_is_refused_in_either_alphabet(encoded: str) -> None:
    """URL-safe input is validated like standard input: junk is an error, never dropped."""
    with pytest.raises(FrameError) as info:
        decode_frame(text({"subject": "a", "body_b64": encoded}), False)
    assert info.value.code == frames.BAD_BASE64


def test_msgpack_containers_are_bounded() -> None:
    huge = msgpack.packb({"subject": "a", "body": [[] for _ in range(100_000)]})
    with pytest.raises(FrameError) as info:
        decode_frame(huge, True)
    assert info.value.code == frames.BAD_FRAME


def test_deeply_nested_msgpack_body_is_a_frame_error() -> None:
    body: object = []
    for _ in range(990):
        body = [body]
    with pytest.raises(FrameError):
        decode_frame(msgpack.packb({"subject": "a", "body": body}), True)


def test_frames_with_too_many_containers_are_refused_cheaply() -> None:
    """A frame of nothing but tiny containers (one per byte) is refused before it is built."""
    nested = b"[" * 500 + b"]" * 500
    worst_json = b'{"subject":"x","body":[' + b",".join([nested] * 999) + b"]}"
    worst_msgpack = msgpack.packb({"subject": "x", "body": [[[[]] * 15] * 256] * 200})
    for data, binary in ((worst_json, False), (worst_msgpack, True)):
        with pytest.raises(FrameError) as info:
            decode_frame(data, binary)
        assert info.value.code == frames.TOO_COMPLEX
        assert str(frames.MAX_CONTAINERS) in info.value.message


def test_container_bound_counts_containers_not_brackets_in_strings() -> None:
    brackets = "[{" * 100_000
    frame = decode_frame(text({"subject": "a", "body": brackets}), False)
    assert frame.body == brackets.encode()  # type: ignore[union-attr]
    at_limit = [[] for _ in range(frames.MAX_CONTAINERS - 2)]  # + the body list + the frame
    assert (
        decode_frame(text({"subject": "a", "body": at_limit}), False).body
        == json.dumps(  # type: ignore[union-attr]
            at_limit, separators=(",", ":")
        ).encode()
    )
    packed = msgpack.packb({"subject": "a", "body": [[] for _ in range(200)]})
    decode_frame(packed, True)


def test_container_count_is_linear_on_hostile_strings() -> None:
    """Unterminated runs of escaped quotes made a regex-based count quadratic (a 200 kB
    frame took minutes and held the event loop); the count is linear."""
    hostile = b"[" * 1001 + b'\\"' * 100_000
    with pytest.raises(FrameError) as info:
        decode_frame(hostile, False)
    assert info.value.code == frames.TOO_COMPLEX
    escaped = json.dumps({"subject": "a", "body": '[{\\"' * 50_000 + "\\"}).encode()
    assert decode_frame(escaped, False).body.startswith(b'[{\\"')  # type: ignore[union-attr]


def values_frame(n: int) -> dict[str, object]:
    """A frame holding exactly `n` values in arrays and objects (its two fields included)."""
    return {"subject": "a", "body": [0] * (n - 2)}


def test_frames_with_too_many_values_are_refused_cheaply() -> None:
    """Few containers but a great many values (a flat array of short numbers, MessagePack
    floats) cost hundreds of milliseconds to turn into a JSON body; they are refused."""
    numbers = b'{"subject":"x","body":[' + b",".join([b"1E-7"] * 200_000) + b"]}"
    floats = msgpack.packb({"subject": "x", "body": [[[1.5e-300] * 256] * 228] * 2})
    for data, binary in ((numbers, False), (floats, True)):
        with pytest.raises(FrameError) as info:
            decode_frame(data, binary)
        assert info.value.code == frames.TOO_COMPLEX
        assert f"{frames.MAX_VALUES} values" in info.value.message
    at_limit = values_frame(frames.MAX_VALUES)
    assert decode_frame(text(at_limit), False).body.startswith(b"[0,0")  # type: ignore[union-attr]
    packed = msgpack.packb({"subject": "a", "body": [[0] * 256] * 15 + [[0] * 238]})
    decode_frame(packed, True)  # 2 + 16 + 15 x 256 + 238 = MAX_VALUES
    for data, binary in (
        (text(values_frame(frames.MAX_VALUES + 1)), False),
        (msgpack.packb({"subject": "a", "body": [[0] * 256] * 15 + [[0] * 239]}), True),
    ):
        with pytest.raises(FrameError) as info:
            decode_frame(data, binary)
        assert info.value.code == frames.TOO_COMPLEX


def test_commas_in_strings_are_not_values() -> None:
    frame = decode_frame(text({"subject": "a", "body": ",[" * 50_000}), False)
    assert frame.body == b",[" * 50_000  # type: ignore[union-attr]


def test_a_structured_body_is_bounded_like_the_frame() -> None:
    """JSON spells a control character in 6 bytes: a 1 MiB MessagePack frame became a 6 MiB
    body. With `max_body` (the server passes MAX_MESSAGE_BYTES) it is refused."""
    escapes = msgpack.packb({"subject": "a", "body": ["\x01" * 100_000], "id": 7})
    with pytest.raises(FrameError) as info:
        decode_frame(escapes, True, max_body=500_000)
    assert (info.value.code, info.value.frame_id) == (frames.TOO_COMPLEX, 7)
    assert "MAX_MESSAGE_BYTES (500000)" in info.value.message
    fits = decode_frame(escapes, True, max_body=600_004)
    assert len(fits.body) == 600_004  # type: ignore[union-attr]
    # Only structured bodies are re-encoded: a string or binary body is never bigger.
    plain = msgpack.packb({"subject": "a", "body": "\x01" * 100_000})
    assert decode_frame(plain, True, max_body=100_000).body == b"\x01" * 100_000  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("subject", "body", "reply_to"),
    [
        ("a.b", b"hi", None),
        ("x", b"\xff\xfe", "r"),
        ("s\u2028", 'é"\\\n\x00\U0001f600'.encode(), 'q"'),
        ("", b"", ""),
    ],
)
def test_a_rendered_message_is_the_json_encoders_text(
    subject: str, body: bytes, reply_to: str | None
) -> None:
    """The message frame built by hand (once per message sent) is exactly what the JSON
    encoder gives for the same fields, and parses back to them."""
    rendered = frames.MessageTemplate(subject, body, reply_to).render(7, False)
    assert isinstance(rendered, str)
    expected = {"type": "message", "seq": 7} | frames._message_fields(
        subject, body, reply_to, False
    )
    assert rendered == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(rendered) == expected
