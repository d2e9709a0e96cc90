"""The send queue's bounds and slow-consumer policy, without sockets or an event loop."""

from __future__ import annotations

import pytest

from provider.sendqueue import MIN_QUEUED_FRAMES, SendQueue, frame_len


def queue(limit: int = 3, limit_bytes: int = 100, drop_oldest: bool = False) -> SendQueue[str]:
    return SendQueue(limit, limit_bytes, drop_oldest)


def test_frames_that_fit_are_accepted_in_order_and_counted() -> None:
    q = queue()
    assert q.push("ab") == 0
    assert q.push(b"cde") == 0
    assert len(q) == 2 and q.queued_bytes == 5
    assert q.pop() == "ab" and q.queued_bytes == 3
    assert q.pop() == b"cde" and q.queued_bytes == 0
    with pytest.raises(IndexError):
        q.pop()


def test_a_frame_waiting_for_something_counts_its_frame_bytes_only() -> None:
    q = queue()
    assert frame_len(("abcd", "gate")) == 4
    assert q.push(("abcd", "gate")) == 0
    assert q.queued_bytes == 4
    assert q.pop() == ("abcd", "gate")


def test_disconnect_refuses_past_the_frame_limit_and_changes_nothing() -> None:
    q = queue(limit=2)
    q.push("a")
    q.push("b")
    assert q.push("c") is None  # the session closes 1008 (slow consumer)
    assert list(q.frames) == ["a", "b"] and q.queued_bytes == 2


def test_disconnect_refuses_past_the_byte_limit() -> None:
    q = queue(limit=100, limit_bytes=10)
    for frame in ("aaaa", "bbbb"):
        assert q.push(frame) == 0
    assert q.push("cccc") is None
    assert q.queued_bytes == 8


def test_a_few_frames_larger_than_the_byte_limit_are_still_queued() -> None:
    q = queue(limit=100, limit_bytes=10)
    big = "x" * 50
    for _ in range(MIN_QUEUED_FRAMES):
        assert q.push(big) == 0
    assert q.push(big) is None  # one more is over: a slow consumer after all
    assert len(q) == MIN_QUEUED_FRAMES


def test_drop_oldest_makes_room_past_the_frame_limit() -> None:
    q = queue(limit=2, drop_oldest=True)
    q.push("a")
    q.push("b")
    assert q.push("c") == 1
    assert list(q.frames) == ["b", "c"] and q.queued_bytes == 2


def test_drop_oldest_drops_as_many_as_the_bytes_need() -> None:
    q = queue(limit=100, limit_bytes=10, drop_oldest=True)
    for frame in ("aa", "bb", "cc", "dd"):
        assert q.push(frame) == 0
    assert q.push("eeeeee") == 2  # 8 + 6 > 10: "aa" and "bb" go, 4 + 6 fits
    assert list(q.frames) == ["cc", "dd", "eeeeee"] and q.queued_bytes == 10


def test_drop_oldest_keeps_a_large_frame_with_few_queued() -> None:
    q = queue(limit=100, limit_bytes=10, drop_oldest=True)
    for frame in ("aa", "bb", "cc"):
        q.push(frame)
    # Dropping stops once fewer than MIN_QUEUED_FRAMES are left: the big frame goes in.
    assert q.push("x" * 50) == 2
    assert list(q.frames) == ["cc", "x" * 50] and q.queued_bytes == 52


def test_clear_empties_frames_and_bytes() -> None:
    q = queue()
    q.push("abc")
    q.clear()
    assert len(q) == 0 and not q.frames and q.queued_bytes == 0
