"""Client mode's decisions without a socket: the state table, connect failures, the outbound
buffer, and what a frame from the server is."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from provider import client_policy as policy
from provider.client_policy import (
    TRANSITIONS,
    BadFrame,
    ClientState,
    Ignored,
    IllegalClientTransition,
    OutboundBuffer,
)
from provider.errors import WebSocketProviderError
from provider.settings import client_settings
from wasmcloud_provider_sdk import BrokerMessage

C = ClientState
URI = "ws://example.com/ws?token=secret"


def settings(**config: str) -> policy.ClientSettings:
    return client_settings({"URI": URI, **config})


@dataclass
class Holder:
    state: ClientState = C.CONNECTING


# --- the state table ------------------------------------------------------------------------


LEGAL = [
    (C.CONNECTING, C.CONNECTED),
    (C.CONNECTING, C.WAITING),
    (C.CONNECTING, C.FAILED),
    (C.CONNECTED, C.WAITING),
    (C.CONNECTED, C.FAILED),
    (C.WAITING, C.CONNECTING),
    (C.FAILED, C.CLOSED),
    *((state, C.CLOSED) for state in C if state is not C.CLOSED),
]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transitions(current: ClientState, target: ClientState) -> None:
    holder = Holder(current)
    policy.transition(holder, target)
    assert holder.state is target


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a in C for b in C if (a, b) not in LEGAL],
)
def test_every_other_transition_raises(current: ClientState, target: ClientState) -> None:
    holder = Holder(current)
    with pytest.raises(IllegalClientTransition) as info:
        policy.transition(holder, target)
    assert holder.state is current
    assert isinstance(info.value, WebSocketProviderError)
    assert f"from {current.value} to {target.value}" in str(info.value)


def test_closed_and_failed_are_final() -> None:
    assert TRANSITIONS[C.CLOSED] == frozenset()
    assert TRANSITIONS[C.FAILED] == {C.CLOSED}  # no more attempts, only the close
    assert C.CONNECTING not in TRANSITIONS[C.CONNECTED]  # a lost connection waits first


def test_listed_state_and_description() -> None:
    assert policy.listed_state(C.CONNECTING, 0) == "connecting"
    assert policy.listed_state(C.WAITING, 0) == "connecting"
    assert policy.listed_state(C.WAITING, 2) == "reconnecting"
    assert policy.listed_state(C.CONNECTING, 1) == "reconnecting"
    assert [policy.listed_state(s, 1) for s in (C.CONNECTED, C.FAILED, C.CLOSED)] == [
        "connected",
        "failed",
        "closed",
    ]
    assert policy.describe("c/l -> u", C.WAITING, "boom") == "c/l -> u: waiting (boom)"
    assert policy.describe("c/l -> u", C.FAILED, "no") == "c/l -> u: failed (no)"
    assert policy.describe("c/l -> u", C.CONNECTED, "old") == "c/l -> u: connected"
    assert policy.describe("c/l -> u", C.WAITING, "") == "c/l -> u: waiting"


# --- connecting -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "permanent"), [(401, True), (403, True), (404, False)])
def test_refused_credentials_are_permanent(status: int, permanent: bool) -> None:
    failure = policy.upgrade_refused(status)
    assert failure.permanent is permanent
    assert f"HTTP {status}" in failure.message


def test_failure_messages() -> None:
    cert = policy.certificate_refused("self-signed certificate")
    assert cert.permanent and "TLS_CA or TLS_CA_FILE" in cert.message
    assert policy.invalid_uri("ws://h/").permanent
    timeout = policy.handshake_timeout(0.5)
    assert not timeout.permanent
    assert timeout.message == "no completed opening handshake within 0.5s"
    assert policy.transport_failure("", "EOFError").message == "EOFError"
    assert policy.transport_failure("refused", "OSError").message == "refused"
    assert not policy.unexpected_failure("UnicodeError").permanent
    assert policy.gave_up_reason("") == "disconnected (RECONNECT=false)"
    assert policy.gave_up_reason("connection lost") == "connection lost"


def test_connect_headers_put_the_token_last() -> None:
    s = settings(HEADER_X_KEY="k", AUTH_TOKEN="t")
    assert policy.connect_headers(s) == [("x-key", "k"), ("Authorization", "Bearer t")]
    assert policy.connect_headers(settings()) == []


# --- outbound -------------------------------------------------------------------------------


def test_refusal_of_failed_and_closed_connections() -> None:
    safe = "ws://example.com/ws"
    assert policy.refusal(C.FAILED, "HTTP 401", safe) == f"connection to {safe} failed: HTTP 401"
    assert policy.refusal(C.CLOSED, "", safe) == f"connection to {safe} is closed"
    assert all(policy.refusal(s, "", safe) is None for s in (C.CONNECTING, C.WAITING))
    assert policy.refusal(C.CONNECTED, "", safe) is None


def test_buffer_refuses_when_full_and_disconnected() -> None:
    buffer = OutboundBuffer(settings(OUTBOUND_BUFFER="2"))
    assert buffer.offer("a", connected=False) is None
    assert buffer.offer("b", connected=False) is None
    refused = buffer.offer("c", connected=False)
    assert (
        refused == "outbound buffer full (2 messages) while disconnected from ws://example.com/ws"
    )
    assert list(buffer.frames) == ["a", "b"] and buffer.bytes == 2
    assert buffer.offer("c", connected=True) == (
        "outbound buffer full (2 messages) ; not read fast enough by ws://example.com/ws"
    )


def test_buffer_drop_oldest_counts_what_it_dropped() -> None:
    buffer = OutboundBuffer(settings(OUTBOUND_BUFFER="2", OUTBOUND_OVERFLOW="drop_oldest"))
    for frame in ("a", "b", "c", "d"):
        assert buffer.offer(frame, connected=False) is None
    assert list(buffer.frames) == ["c", "d"] and buffer.dropped == 2 and buffer.bytes == 2


def test_buffer_byte_bound() -> None:
    buffer = OutboundBuffer(settings(OUTBOUND_BUFFER_BYTES="1024"))
    assert buffer.offer(b"x" * 1025, connected=True) == (
        "message of 1025 bytes exceeds OUTBOUND_BUFFER_BYTES"
    )
    assert buffer.offer(b"x" * 600, connected=True) is None
    assert buffer.offer(b"y" * 600, connected=True) is not None  # 1200 bytes would be queued
    dropping = OutboundBuffer(
        settings(OUTBOUND_BUFFER_BYTES="1024", OUTBOUND_OVERFLOW="drop_oldest")
    )
    dropping.offer(b"x" * 600, connected=True)
    assert dropping.offer(b"y" * 600, connected=True) is None
    assert list(dropping.frames) == [b"y" * 600] and dropping.bytes == 600


def test_no_buffer_while_disconnected_but_one_in_flight_while_connected() -> None:
    buffer = OutboundBuffer(settings(OUTBOUND_BUFFER="0"))
    assert buffer.offer("a", connected=False) == (
        "not connected to ws://example.com/ws (OUTBOUND_BUFFER=0)"
    )
    assert buffer.offer("a", connected=True) is None
    assert buffer.offer("b", connected=True) is not None


def test_written_and_discard_go_by_identity() -> None:
    buffer = OutboundBuffer(settings())
    first, second = "same", "".join(["sa", "me"])
    buffer.offer(first, connected=True)
    buffer.offer(second, connected=True)
    buffer.discard(first, writing=True)  # the head may be on its way: it stays
    assert len(buffer) == 2
    buffer.discard(second, writing=True)
    assert list(buffer.frames) == [first] and buffer.frames[0] is first
    buffer.written(second)  # not the head: nothing leaves
    assert len(buffer) == 1
    buffer.written(first)
    assert len(buffer) == 0 and buffer.bytes == 0
    buffer.offer(first, connected=False)
    buffer.discard(first, writing=False)
    assert len(buffer) == 0


def test_adopt_appends_the_old_frames() -> None:
    new, old = OutboundBuffer(settings()), OutboundBuffer(settings())
    new.offer("n", connected=False)
    old.offer("o1", connected=False)
    old.offer("o2", connected=False)
    new.adopt(old)
    assert list(new.frames) == ["n", "o1", "o2"] and new.bytes == 5
    assert len(old) == 0 and old.bytes == 0


def test_encode_outbound() -> None:
    envelope = policy.encode_outbound(settings(), "s", b"hi", "r")
    assert isinstance(envelope, str)
    assert json.loads(envelope)["subject"] == "s"
    raw = settings(FORMAT="raw")
    assert policy.encode_outbound(raw, "s", b"hi", None) == "hi"
    assert policy.encode_outbound(raw, "s", b"\xff", None) == b"\xff"
    assert policy.encode_outbound(settings(FORMAT="raw", RAW_BINARY="true"), "s", b"hi", None) == (
        b"hi"
    )


# --- inbound --------------------------------------------------------------------------------


def test_decode_inbound() -> None:
    s = settings()
    frame = json.dumps({"type": "message", "subject": "a", "body": "x"}).encode()
    assert policy.decode_inbound(s, frame, False) == BrokerMessage("a", b"x", None)
    bad = policy.decode_inbound(s, b"{not json", False)
    assert isinstance(bad, BadFrame) and bad.code
    unknown = policy.decode_inbound(s, json.dumps({"type": "zz"}).encode(), False)
    assert isinstance(unknown, Ignored) and unknown.reason
    raw = settings(FORMAT="raw", SUBJECT="in")
    assert policy.decode_inbound(raw, b"\x00", True) == BrokerMessage("in", b"\x00", None)


def test_a_structured_body_from_the_server_is_bounded_by_max_message_bytes() -> None:
    escapes = json.dumps({"subject": "a", "body": ["\x01" * 2000]}).encode()  # 12 kB as JSON
    big = policy.decode_inbound(settings(MAX_MESSAGE_BYTES="10000"), escapes, False)
    assert isinstance(big, BadFrame) and big.code == "too_complex"
    fits = policy.decode_inbound(settings(), escapes, False)
    assert isinstance(fits, BrokerMessage) and len(fits.body) == 12_004
