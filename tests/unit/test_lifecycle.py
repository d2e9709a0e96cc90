"""The session life cycle without sockets: the transition table, the record, resume checks."""

from __future__ import annotations

import ast
import hashlib
import itertools
import pathlib
from dataclasses import dataclass

import msgpack
import pytest

from provider import lifecycle
from provider.frames import MessageTemplate
from provider.history import History, ResumeRequest
from provider.lifecycle import (
    ACCEPTS_MESSAGES,
    TRANSITIONS,
    IllegalTransition,
    SessionRecord,
    SessionState,
    listed_state,
    may_follow,
    may_resume,
    replay_for,
    transition,
)

S = SessionState

#: Every change of state the provider makes, and why (server.py, sessions.py).
LEGAL = {
    (S.OPEN, S.CLOSING),  # close(): slow consumer, rate limit, shutdown, …
    (S.OPEN, S.DETACHED),  # the connection dropped; or a resume on a new connection
    (S.OPEN, S.CLOSED),  # the client closed with 1000
    (S.CLOSING, S.DETACHED),  # closed for shutdown: kept for a resume
    (S.CLOSING, S.CLOSED),  # closed for good
    (S.DETACHED, S.OPEN),  # resumed here
    (S.DETACHED, S.MOVING_OUT),  # resumed on another instance
    (S.DETACHED, S.MOVING_IN),  # rebuilt here from a live instance, being claimed
    (S.DETACHED, S.CLOSED),  # window over, evicted, endpoint gone
    (S.MOVING_OUT, S.DETACHED),  # the move failed: kept here
    (S.MOVING_OUT, S.CLOSED),  # the move is done (or the endpoint went away)
    (S.MOVING_IN, S.OPEN),  # the old holder let go
    (S.MOVING_IN, S.CLOSED),  # the old holder kept it
}


@dataclass
class Thing:
    state: SessionState


def record(**changes: object) -> SessionRecord:
    fields: dict[str, object] = {
        "session_id": "ws_AAAAAAAAAAAAAAAAAAAAAA",
        "component_id": "echo",
        "link_name": "default",
        "subscriptions": ("a.b", "room.*"),
        "seq": 7,
        "resume_hash": hashlib.sha256(b"S" * 43).digest(),
        "identity": "alice",
        "connected_at": 1_700_000_000.5,
        "detached": True,
    }
    fields.update(changes)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def req(secret: str = "S" * 43, last_seq: int = 0) -> ResumeRequest:
    return ResumeRequest("ws_AAAAAAAAAAAAAAAAAAAAAA", secret, last_seq)


# --- the table ------------------------------------------------------------------------------


def test_the_table_is_exactly_the_transitions_that_exist() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert set(TRANSITIONS) == set(SessionState)


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL, key=str))
def test_every_legal_transition_changes_the_state(
    current: SessionState, target: SessionState
) -> None:
    thing = Thing(current)
    transition(thing, target)
    assert thing.state is target
    assert may_follow(current, target)


ILLEGAL = sorted(set(itertools.product(SessionState, SessionState)) - LEGAL, key=str)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_raises_and_changes_nothing(
    current: SessionState, target: SessionState
) -> None:
    thing = Thing(current)
    with pytest.raises(IllegalTransition) as info:
        transition(thing, target)
    assert thing.state is current
    assert (info.value.current, info.value.target) == (current, target)
    assert f"from {current.value} to {target.value}" in str(info.value)
    assert not may_follow(current, target)


def test_closed_is_final_and_every_state_can_end() -> None:
    assert TRANSITIONS[S.CLOSED] == frozenset()
    assert all(S.CLOSED in TRANSITIONS[s] for s in SessionState if s is not S.CLOSED)


def test_which_states_take_messages_and_how_they_are_listed() -> None:
    assert set(ACCEPTS_MESSAGES) == {S.OPEN, S.DETACHED, S.MOVING_IN}
    assert [listed_state(s) for s in SessionState] == [
        "connected",
        "closing",
        "detached",
        "closing",
        "closing",
        "closing",
    ]


def test_no_state_is_assigned_outside_the_table() -> None:
    """Every `<x>.state = …` in the product goes through `transition` (only lifecycle.py and,
    for client-mode connections, client_policy.py assign; a new session or connection gets
    its first state when it is made)."""
    src = pathlib.Path(lifecycle.__file__).parent
    offenders = []
    for path in sorted(src.glob("*.py")):
        if path.name in ("lifecycle.py", "client_policy.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "state":
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


# --- the record -----------------------------------------------------------------------------


def test_the_record_round_trips_through_bytes_and_maps() -> None:
    rec = record()
    assert SessionRecord.from_bytes(rec.to_bytes()) == rec
    assert SessionRecord.from_map(rec.to_map()) == rec
    no_resume = record(resume_hash=None, identity=None, subscriptions=(), detached=False)
    assert SessionRecord.from_bytes(no_resume.to_bytes()) == no_resume


def test_the_record_keeps_the_stored_format() -> None:
    """The map the store has always written (and a move carries): same keys, same types."""
    rec = record()
    stored = msgpack.unpackb(rec.to_bytes(updated_at=5.0), raw=False)
    assert stored == {
        "sid": "ws_AAAAAAAAAAAAAAAAAAAAAA",
        "component": "echo",
        "link": "default",
        "subs": ["a.b", "room.*"],
        "seq": 7,
        "hash": hashlib.sha256(b"S" * 43).digest(),
        "identity": "alice",
        "connected_at": 1_700_000_000.5,
        "detached": True,
        "updated_at": 5.0,
    }
    # ... and reads what earlier versions wrote (extra keys ignored, subscriptions sorted).
    old = dict(stored, subs=["room.*", "a.b"], something_new=1)
    assert SessionRecord.from_bytes(msgpack.packb(old, use_bin_type=True)) == rec
    assert rec.key == ("echo", "default")


@pytest.mark.parametrize(
    "data",
    [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"sid": "x", "hash": "not bytes"})],
)
def test_what_is_not_a_record_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a session record"):
        SessionRecord.from_bytes(data)


def test_the_record_is_frozen() -> None:
    rec = record()
    with pytest.raises(AttributeError):
        rec.seq = 8  # type: ignore[misc]


# --- resume ---------------------------------------------------------------------------------


def test_a_resume_needs_the_token_the_endpoint_and_the_identity() -> None:
    rec = record()
    key = ("echo", "default")
    assert may_resume(rec, req(), key, "alice")
    assert not may_resume(rec, req(secret="T" * 43), key, "alice")  # wrong secret
    assert not may_resume(rec, req(), ("echo", "other"), "alice")  # another endpoint
    assert not may_resume(rec, req(), key, "mallory")  # another identity
    assert not may_resume(rec, req(), key, None)
    assert not may_resume(record(session_id="ws_BBBBBBBBBBBBBBBBBBBBBB"), req(), key, "alice")
    assert not may_resume(record(resume_hash=None), req(), key, "alice")  # no resume offered


def msg(n: int) -> MessageTemplate:
    return MessageTemplate("s", str(n).encode(), None)


def seqs(replay: list[tuple[int, MessageTemplate]] | None) -> list[tuple[int, bytes]] | None:
    return None if replay is None else [(seq, m.body) for seq, m in replay]


def test_the_replay_is_what_the_client_missed_or_none() -> None:
    history = History(3, 1 << 20, 60.0)
    for seq in range(1, 6):
        history.append(seq, msg(seq), now=1.0)
    assert seqs(replay_for(history, 3, 5, now=2.0)) == [(4, b"4"), (5, b"5")]
    assert replay_for(history, 5, 5, now=2.0) == []  # missed nothing
    assert replay_for(history, 1, 5, now=2.0) is None  # 2 is no longer kept
    assert replay_for(history, 6, 5, now=2.0) is None  # claims more than was sent
    assert replay_for(history, 3, 5, now=100.0) is None  # older than the window


def test_without_history_only_a_client_that_missed_nothing_recovers() -> None:
    assert replay_for(None, 4, 4, now=0.0) == []
    assert replay_for(None, 3, 4, now=0.0) is None
