"""The history journal's format and per-session index (sans-I/O)."""

from __future__ import annotations

import pytest

from provider.jsjournal import JournalIndex, Record, pack_batches, unpack_batch

A, B = "a" * 22, "b" * 22


def rec(sid: str, seq: int, body: bytes = b"x", reply: str | None = None) -> Record:
    return (sid, seq, "s", body, reply)


def test_records_round_trip_and_split_within_the_limit() -> None:
    records = [rec(A, n, b"y" * 100, "r" if n % 2 else None) for n in range(1, 41)]
    batches = pack_batches(records, 1000)
    assert len(batches) > 1 and all(len(b) <= 1000 for b in batches)
    assert [r for b in batches for r in unpack_batch(b)] == records
    # A record bigger than the limit goes alone (the store then refuses it).
    huge = [rec(A, 1, b"z" * 2000), rec(A, 2)]
    assert [len(unpack_batch(b)) for b in pack_batches(huge, 1000)] == [1, 1]


@pytest.mark.parametrize("data", [b"", b"\x93\x01\x02\x03", b"\x91\x92\x01\x02", b"\xc1"])
def test_what_is_not_a_journal_message_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a history journal message"):
        unpack_batch(data)


def test_the_index_keeps_the_newest_per_session_and_the_last_seq() -> None:
    index = JournalIndex(per_session=3, now=0.0)
    index.add(1, [rec(A, n, b"%d" % n) for n in range(1, 11)] + [rec(B, 1)])
    index.add(2, [rec(A, 11, b"11")])
    assert index.read_to == 2
    entries, last = index.history(A, 0)
    assert [seq for seq, _ in entries] == [9, 10, 11] and last == 11
    message = entries[-1][1]
    assert (message.subject, message.body, message.reply_to) == ("s", b"11", None)
    assert [seq for seq, _ in index.history(A, 10)[0]] == [11]
    assert index.history(B, 0)[1] == 1
    assert index.history("c" * 22, 0) == ([], 0)


def test_a_history_written_again_by_a_new_holder_is_not_doubled() -> None:
    index = JournalIndex(per_session=0, now=0.0)  # 0: keep all
    index.add(5, [rec(A, 1), rec(A, 2)])
    index.add(9, [rec(A, 2), rec(A, 1), rec(A, 3)])  # out of order, repeated
    entries, last = index.history(A, 0)
    assert [seq for seq, _ in entries] == [1, 2, 3] and last == 3


def test_a_forgotten_session_is_not_read_again() -> None:
    index = JournalIndex(per_session=10, now=0.0)
    index.add(1, [rec(A, 1), rec(B, 1)])
    index.forget(A)
    assert index.history(A, 0) == ([], 0)
    assert index.history(B, 0)[1] == 1
