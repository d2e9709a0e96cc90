"""The sans-I/O wRPC rules: subjects, header sizes, chunking, handshakes, abandoned calls."""

from __future__ import annotations

import pytest

from wasmcloud_provider_sdk.errors import NotServedError, TransportError
from wasmcloud_provider_sdk.wrpc_wire import (
    AbandonedCalls,
    InvocationContext,
    handshake_reply,
    header_block_len,
    invocation_subject,
    span_name,
    split_chunks,
)

SUBJECT = "default.comp.wrpc.0.0.1.wasmcloud:messaging/handler@0.2.0.handle-message"


def test_invocation_subject_with_and_without_instance() -> None:
    assert invocation_subject("p", "i", "f") == "p.wrpc.0.0.1.i.f"
    assert invocation_subject("p", "", "f") == "p.wrpc.0.0.1.f"


def test_span_name_is_the_part_after_the_protocol() -> None:
    assert span_name(SUBJECT) == "wasmcloud:messaging/handler@0.2.0.handle-message"
    assert span_name("no.protocol.here") == "no.protocol.here"


def test_header_block_len_counts_what_nats_py_writes() -> None:
    assert header_block_len(None) == 0
    assert header_block_len({}) == len(b"NATS/1.0\r\n\r\n")
    assert header_block_len({" a ": "bc "}) == len(b"NATS/1.0\r\na: bc\r\n\r\n")


def test_split_chunks_first_then_rest() -> None:
    assert split_chunks(b"abcdefg", 3, 2) == [b"abc", b"de", b"fg"]
    assert split_chunks(b"", 3, 2) == [b""]
    with pytest.raises(TransportError, match="max_payload"):
        split_chunks(b"x", 0, 10)


def test_handshake_reply_names_the_server_inbox_or_says_what_went_wrong() -> None:
    assert handshake_reply(SUBJECT, "_INBOX.a.1", None, "_INBOX.b.2") == "_INBOX.b.2"
    assert handshake_reply(SUBJECT, "_INBOX.a.1", "200", "_INBOX.b.2") == "_INBOX.b.2"
    with pytest.raises(NotServedError, match="nobody serves"):
        handshake_reply(SUBJECT, "_INBOX.a.1", "503", None)
    with pytest.raises(TransportError, match="NATS status 408"):
        handshake_reply(SUBJECT, "_INBOX.a.1", "408", "_INBOX.b.2")
    with pytest.raises(TransportError, match="results before its handshake"):
        handshake_reply(SUBJECT, "_INBOX.a.1.results", None, "_INBOX.b.2")
    with pytest.raises(TransportError, match="no reply subject"):
        handshake_reply(SUBJECT, "_INBOX.a.1", None, None)


def test_invocation_context_trace_headers() -> None:
    ctx = InvocationContext("src", "default", {"TraceParent": "00-x", "other": "y"})
    assert ctx.trace_headers == {"TraceParent": "00-x"}


def test_abandoned_calls_are_taken_once() -> None:
    calls = AbandonedCalls(memory=10.0, limit=5)
    calls.remember("1", now=0.0)
    assert "1" in calls and len(calls) == 1
    assert calls.take("1") is True
    assert calls.take("1") is False
    assert len(calls) == 0


def test_abandoned_calls_forget_the_expired_when_remembering() -> None:
    calls = AbandonedCalls(memory=10.0, limit=5)
    calls.remember("1", now=0.0)
    calls.remember("2", now=5.0)
    assert len(calls) == 2  # nothing expired yet: the first is kept until 10.0
    calls.remember("3", now=10.0)
    assert "1" not in calls and "2" in calls and "3" in calls


def test_abandoned_calls_keep_at_most_limit_oldest_first_out() -> None:
    calls = AbandonedCalls(memory=100.0, limit=3)
    for n in range(5):
        calls.remember(str(n), now=float(n))
    assert len(calls) == 3
    assert [key for key in "01234" if key in calls] == ["2", "3", "4"]
