"""The sans-I/O resume core: history bounds and gaps, tokens, the resume query."""

from __future__ import annotations

import json

import msgpack

from provider import frames
from provider.frames import MessageTemplate
from provider.history import (
    AppendWindow,
    History,
    ResumeRequest,
    new_resume_token,
    parse_resume,
    token_matches,
)


def msg(body: str) -> MessageTemplate:
    return MessageTemplate("s", body.encode(), None)


def filled(n: int, **limits: float) -> History:
    history = History(
        int(limits.get("messages", 100)), int(limits.get("bytes", 1 << 20)), limits.get("age", 60)
    )
    for seq in range(1, n + 1):
        history.append(seq, msg(str(seq)), now=float(seq))
    return history


def bodies(replay: list[tuple[int, MessageTemplate]] | None) -> list[str] | None:
    return None if replay is None else [m.body.decode() for _, m in replay]


def test_after_returns_exactly_the_missed_messages_in_order() -> None:
    history = filled(5)
    assert bodies(history.after(2, 5, now=5)) == ["3", "4", "5"]
    assert bodies(history.after(5, 5, now=5)) == []
    assert bodies(history.after(0, 5, now=5)) == ["1", "2", "3", "4", "5"]


def test_gaps_that_cannot_be_covered_are_none() -> None:
    history = filled(10, messages=3)  # keeps 8, 9, 10
    assert len(history) == 3 and history.dropped_upto == 7
    assert bodies(history.after(7, 10, now=10)) == ["8", "9", "10"]
    assert history.after(6, 10, now=10) is None  # seq 7 is gone
    assert history.after(11, 10, now=10) is None  # the client claims more than was sent
    empty = History(10, 1 << 20, 60)
    assert empty.after(0, 3, now=0) is None  # messages were sent but none kept
    assert empty.after(3, 3, now=0) == []


def test_bytes_and_age_bound_the_history() -> None:
    history = History(100, 3 * msg("x").size, 60)
    for seq in range(1, 6):
        history.append(seq, msg("x"), now=0)
    assert len(history) == 3 and history.dropped_upto == 2
    aged = filled(5, age=2.5)  # appended at t=1..5
    assert bodies(aged.after(2, 5, now=5)) == ["3", "4", "5"]
    assert aged.after(2, 5, now=6) is None  # 3 is older than 2.5 s at t=6


def test_holes_and_a_history_behind_the_session_are_gaps() -> None:
    history = History(10, 1 << 20, 60)
    history.restore([(4, msg("4")), (6, msg("6"))], dropped_upto=3, now=0)
    assert history.after(3, 6, now=0) is None  # 5 missing
    history = History(10, 1 << 20, 60)
    history.restore([(4, msg("4"))], dropped_upto=3, now=0)
    assert history.after(3, 5, now=0) is None  # 5 was sent but never stored


def test_tokens_are_unguessable_rotating_and_only_hashed() -> None:
    token, kept = new_resume_token("ws_abcdefghijklmnopqrstuv")
    other, _ = new_resume_token("ws_abcdefghijklmnopqrstuv")
    assert token != other and token.startswith("ws_abcdefghijklmnopqrstuv.")
    assert token.partition(".")[2].encode() not in kept  # the secret itself is not kept
    req = parse_resume(f"/ws?resume={token}&last_seq=7")
    assert req == ResumeRequest("ws_abcdefghijklmnopqrstuv", token.partition(".")[2], 7)
    assert isinstance(req, ResumeRequest) and token_matches(req, kept)
    forged = ResumeRequest("ws_abcdefghijklmnopqrstuv", "A" * 43, 7)
    assert not token_matches(forged, kept) and not token_matches(req, None)


def test_resume_query_errors_are_named() -> None:
    assert parse_resume("/ws") is None
    assert parse_resume("/ws?format=msgpack") is None
    assert parse_resume("/ws?resume=nodot") == "the resume token is malformed"
    assert parse_resume("/ws?resume=ws_" + "a" * 22 + ".short") == "the resume token is malformed"
    assert parse_resume("/ws?resume=ws_" + "a" * 22 + "." + "x" * 43 + "&last_seq=-1") == (
        "last_seq must be a non-negative integer"
    )
    superscript_two = (
        "/ws?resume=ws_" + "a" * 22 + "." + "x" * 43 + "&last_seq=%C2%B2"
    )  # isdigit() but not int()
    assert parse_resume(superscript_two) == "last_seq must be a non-negative integer"
    ok = parse_resume("/ws?resume=ws_" + "a" * 22 + "." + "x" * 43)
    assert isinstance(ok, ResumeRequest) and ok.last_seq == 0


def test_template_renders_like_the_encoder_in_both_formats() -> None:
    for body in (b"text", "é👋".encode(), b"\xff\x00", b""):
        for reply_to in (None, "r"):
            template = MessageTemplate("a.b", body, reply_to)
            for seq in (1, 127, 128, 65_536, 2**40):
                expected_json = frames.encode_message("a.b", body, reply_to, False, seq=seq)
                assert template.render(seq, False) == expected_json
                assert json.loads(template.render(seq, False))["seq"] == seq
                packed = template.render(seq, True)
                assert packed == frames.encode_message("a.b", body, reply_to, True, seq=seq)
                assert msgpack.unpackb(packed)["seq"] == seq


# --- the store's append window -----------------------------------------------------------


def test_append_window_publishes_in_offer_order_up_to_the_window() -> None:
    window: AppendWindow[str] = AppendWindow(max_in_flight=3, max_waiting_bytes=100, timeout=2)
    for name in "abcde":
        assert window.offer(name, 10, now=0.0)
    first = window.to_publish()
    assert [item for _, item in first] == ["a", "b", "c"]
    assert window.to_publish() == []  # the window is full: d and e wait
    assert (window.in_flight, window.waiting) == (3, 2)
    # Acknowledgements may come in any order; each frees one slot, and d then e follow.
    assert window.acknowledged(first[1][0]) == "b"
    assert [item for _, item in window.to_publish()] == ["d"]
    assert window.acknowledged(first[0][0]) == "a"
    assert [item for _, item in window.to_publish()] == ["e"]
    ids = [ident for ident, _ in first]
    assert len(set(ids)) == 3


def test_append_window_refuses_beyond_the_waiting_bytes() -> None:
    window: AppendWindow[int] = AppendWindow(max_in_flight=1, max_waiting_bytes=25, timeout=2)
    assert window.offer(1, 1000, now=0.0)  # a slot is free: taken whatever its size
    window.to_publish()  # 1 in flight: the store does not answer
    assert window.offer(2, 10, now=0.0)
    assert window.offer(3, 10, now=0.0)
    assert not window.offer(4, 10, now=0.0)  # 30 bytes would wait: refused
    assert window.waiting_bytes == 20


def test_append_window_expires_unanswered_and_waiting_appends() -> None:
    window: AppendWindow[str] = AppendWindow(max_in_flight=1, max_waiting_bytes=100, timeout=2)
    window.offer("a", 1, now=0.0)
    (ident, _), *_ = window.to_publish()
    window.offer("b", 1, now=1.0)
    assert window.next_deadline() == 2.0
    assert window.expire(now=1.5) == []
    assert window.expire(now=2.0) == ["a"]
    assert window.acknowledged(ident) is None  # a late answer: already over
    assert window.next_deadline() == 3.0
    assert window.expire(now=3.0) == ["b"]  # waited too long: never published
    assert (window.in_flight, window.waiting, window.waiting_bytes) == (0, 0, 0)
    assert window.next_deadline() is None
