"""The sans-I/O part of handing an invocation over: markers and the pending table."""

from __future__ import annotations

from wasmcloud_provider_sdk.wrpc_handover import (
    Invocation,
    PendingHandovers,
    handed_over,
    handed_over_msg,
    handover_headers,
    is_handover,
)


def test_a_handover_carries_the_invocation_unchanged() -> None:
    inv = Invocation("l.p.wrpc.0.0.1.x.publish", b"\x01\x02", {"source-id": "c"}, "_INBOX.a.1")
    headers = handover_headers(inv)
    assert is_handover(headers) and not is_handover(inv.headers) and not is_handover(None)
    assert handed_over(inv.data, headers) == inv
    bare = Invocation(inv.subject, b"", None, "_INBOX.b")
    assert handed_over(b"", handover_headers(bare)) == bare


def test_pending_handovers_are_taken_once_and_forgotten_in_time() -> None:
    pending = PendingHandovers(memory=5.0)
    pending.add("h1", "one", now=0.0)
    pending.add("h2", "two", now=1.0)
    assert pending.take("h1") == "one" and pending.take("h1") is None
    pending.add("h3", "three", now=7.0)  # h2 expired at 6.0: dropped now
    assert len(pending) == 1 and pending.take("h2") is None and pending.take("h3") == "three"


def test_the_taking_instance_gets_the_message_its_caller_sent() -> None:
    inv = Invocation("l.p.wrpc.0.0.1.x.publish", b"\x01", {"source-id": "c"}, "_INBOX.a.1")
    msg = handed_over_msg(inv.data, handover_headers(inv))
    assert (msg.subject, msg.reply, msg.headers, msg.data) == (
        inv.subject,
        inv.reply,
        {"source-id": "c"},
        b"\x01",
    )
    bare = handed_over_msg(b"", handover_headers(Invocation("s", b"", None, "r")))
    assert bare.headers is None
