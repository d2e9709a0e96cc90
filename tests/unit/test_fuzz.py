"""Fuzzing the decoders that take bytes from the network: whatever comes in, they raise
only our own error types (`FrameError`, `CodecError`). A longer run: `pytest -m slow`."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider.frames import FrameError, decode_frame
from wasmcloud_provider_sdk.errors import CodecError
from wasmcloud_provider_sdk.messaging import (
    decode_broker_message,
    decode_message_result,
    decode_request_params,
    decode_unit_result,
)

WRPC_DECODERS = [
    decode_broker_message,
    decode_request_params,
    decode_unit_result,
    decode_message_result,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
frames_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "subscribe", "unsubscribe", "ack", "x"]) | json_values,
        "subject": st.text(max_size=30) | json_values,
        "body": json_values | st.binary(max_size=30),
        "body_b64": st.text(max_size=30) | json_values,
        "reply_to": st.text(max_size=10) | json_values,
        "id": json_values,
    },
)


def check_frame(data: bytes, binary: bool) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(data, binary)


def check_wrpc(data: bytes) -> None:
    for decode in WRPC_DECODERS:
        with contextlib.suppress(CodecError):
            decode(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.booleans())
def test_frame_decoder_on_random_bytes(data: bytes, binary: bool) -> None:
    check_frame(data, binary)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames_like)
def test_frame_decoder_on_frame_shaped_input(obj: dict[str, object]) -> None:
    import json

    with contextlib.suppress(ValueError, TypeError):
        check_frame(json.dumps(obj).encode(), False)
    with contextlib.suppress(ValueError, TypeError, OverflowError):
        check_frame(msgpack.packb(obj, use_bin_type=True), True)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_wrpc_decoders_on_random_bytes(data: bytes) -> None:
    check_wrpc(data)


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2000), st.booleans())
def test_long_fuzz_run(data: bytes, binary: bool) -> None:
    check_frame(data, binary)
    check_wrpc(data)
