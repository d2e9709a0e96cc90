"""The life cycle of a server-mode session, and the record kept of it. Sans-I/O.

A session is in one of the `SessionState`s; `TRANSITIONS` says which state may follow which,
and `transition` is the only way to change a session's state (an illegal change raises
`IllegalTransition`: a bug, never a client's doing)::

    OPEN ──► CLOSING ──► CLOSED
     │  ▲       │          ▲
     ▼  │       ▼          │
    DETACHED ◄──┘ ─────────┤        (a resume here: DETACHED ──► OPEN)
     │  ▲                  │
     ▼  │                  │
    MOVING_OUT ────────────┤        (the session moves to another instance)
                           │
    DETACHED ──► MOVING_IN ┴──► OPEN  (the session moves here from another instance)

"Move" is the one word for a session changing instance (docs/RESUME.md): the instance that
holds it *moves it out*, the one its client resumes on *moves it in* (from a live instance,
or from the JetStream store when its holder is gone).

`SessionRecord` is what the store keeps and a move carries of a session; `may_resume` is the
one check a resume passes (token, endpoint, identity) and `replay_for` the one computation of
what a resuming client gets again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from .errors import IllegalStateChange
from .frames import MessageTemplate
from .history import History, ResumeRequest, token_matches


class SessionState(enum.Enum):
    """Where a session is in its life cycle (see the module's diagram)."""

    #: A client is connected.
    OPEN = "open"
    #: The provider closes the connection (slow consumer, rate limit, shutdown, …).
    CLOSING = "closing"
    #: The connection is gone but the session waits (RESUME_WINDOW_SEC) for its client to
    #: resume it; messages sent to it are kept in its history.
    DETACHED = "detached"
    #: Moving out to another instance (its client resumed there): fan-out messages are kept
    #: for the new holder, targeted ones wait for the move to end and follow the session.
    MOVING_OUT = "moving_out"
    #: Moving in from another instance: reachable here, messages kept until the old holder
    #: has let go of it.
    MOVING_IN = "moving_in"
    #: Over for good (or gone to another instance).
    CLOSED = "closed"


S = SessionState

#: Every legal change of state: `TRANSITIONS[current]` are the states that may follow.
TRANSITIONS: Mapping[SessionState, frozenset[SessionState]] = {
    # close() starts closing; the connection drops (detach, or end); a resume on a new
    # connection detaches the old one first.
    S.OPEN: frozenset({S.CLOSING, S.DETACHED, S.CLOSED}),
    # the close is done: the session ends, or stays for a resume (shutdown, resumable close).
    S.CLOSING: frozenset({S.DETACHED, S.CLOSED}),
    # resumed here; resumed elsewhere (moving out); resumed here from elsewhere (moving in);
    # the window is over, evicted, or its endpoint went away.
    S.DETACHED: frozenset({S.OPEN, S.MOVING_OUT, S.MOVING_IN, S.CLOSED}),
    # the move failed (kept here, detached) or is done (gone from here).
    S.MOVING_OUT: frozenset({S.DETACHED, S.CLOSED}),
    # the old holder let go (open here) or kept it (not held here).
    S.MOVING_IN: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}

# Tuples, not sets: checked per message and session (an Enum's hash is a Python call, a
# tuple's `in` compares identities first).
#: States in which a session takes messages (sent now, kept for a resume, or kept until a
#: move in is over).
ACCEPTS_MESSAGES: tuple[SessionState, ...] = (S.OPEN, S.DETACHED, S.MOVING_IN)
#: States in which messages for a session wait for a move to end.
MOVING: tuple[SessionState, ...] = (S.MOVING_OUT, S.MOVING_IN)


class IllegalTransition(IllegalStateChange):
    """A session was asked to change to a state that may not follow its current one."""

    def __init__(self, current: SessionState, target: SessionState) -> None:
        super().__init__("a session", current, target, TRANSITIONS[current])


class HasState(Protocol):
    """Anything with a session state (a `Session`)."""

    state: SessionState


def may_follow(current: SessionState, target: SessionState) -> bool:
    """Is `current` -> `target` a legal transition?"""
    return target in TRANSITIONS[current]


def transition(holder: HasState, target: SessionState) -> None:
    """Change `holder.state` to `target`; raises IllegalTransition if that may not follow."""
    current = holder.state
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    holder.state = target


def listed_state(state: SessionState) -> str:
    """The `state` that `list_ws_clients` shows for a server-mode session."""
    if state is S.OPEN:
        return "connected"
    if state is S.DETACHED:
        return "detached"
    return "closing"


# --- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the JetStream store keeps, and a move carries, of a session.

    On the wire (the store's bucket values, the answer to a move request) it is a
    MessagePack map with the short keys of `to_map`; the store adds `updated_at`.
    """

    session_id: str
    component_id: str
    link_name: str
    #: Topic patterns, sorted.
    subscriptions: tuple[str, ...]
    #: The last sequence number sent.
    seq: int
    #: SHA-256 of the current resume token's secret (None: no resume offered).
    resume_hash: bytes | None
    #: Who authenticated (a resume must present the same).
    identity: str | None
    connected_at: float
    #: Not connected to a client when recorded.
    detached: bool
    #: The history journal its history is in (the store's: the subject of the process that
    #: wrote the record; empty when not stored).
    journal: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """The (component id, link name) of the endpoint the session belongs to."""
        return (self.component_id, self.link_name)

    def to_map(self) -> dict[str, Any]:
        """The wire map (the keys the store has always used)."""
        return {
            "sid": self.session_id,
            "component": self.component_id,
            "link": self.link_name,
            "subs": list(self.subscriptions),
            "seq": self.seq,
            "hash": self.resume_hash,
            "identity": self.identity,
            "connected_at": self.connected_at,
            "detached": self.detached,
        }

    @classmethod
    def from_map(cls, data: Mapping[str, Any]) -> SessionRecord:
        """Read a wire map; raises ValueError when it is not one (missing optional fields get
        their defaults; unknown keys such as `updated_at` are ignored)."""
        try:
            resume_hash = data.get("hash")
            if resume_hash is not None and not isinstance(resume_hash, bytes):
                raise ValueError("not a session record: hash is not bytes")
            identity = data.get("identity")
            return cls(
                session_id=str(data.get("sid") or ""),
                component_id=str(data.get("component") or ""),
                link_name=str(data.get("link") or ""),
                subscriptions=tuple(sorted(str(p) for p in data.get("subs") or ())),
                seq=int(data.get("seq") or 0),
                resume_hash=resume_hash,
                identity=None if identity is None else str(identity),
                connected_at=float(data.get("connected_at") or time.time()),
                detached=bool(data.get("detached", True)),
                journal=str(data.get("journal") or ""),
            )
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"not a session record: {exc}") from None

    def to_bytes(self, **extra: Any) -> bytes:
        """The wire map in MessagePack (with `extra` keys, e.g. the store's `updated_at`)."""
        data: bytes = msgpack.packb(dict(self.to_map(), **extra), use_bin_type=True)
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Read `to_bytes` output; raises ValueError when it is not a session record."""
        try:
            obj = msgpack.unpackb(data, raw=False, max_map_len=64)
        except Exception as exc:
            raise ValueError(f"not a session record: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("not a session record: not a map")
        return cls.from_map(obj)


# --- resume -------------------------------------------------------------------------------------


def may_resume(
    record: SessionRecord,
    req: ResumeRequest,
    endpoint_key: tuple[str, str],
    identity: str | None,
) -> bool:
    """May this client resume the recorded session? The request names it, the token's secret
    matches (constant time), it comes through the session's endpoint and, when the endpoint
    authenticates, as the same identity."""
    return (
        record.session_id == req.session_id
        and record.key == endpoint_key
        and token_matches(req, record.resume_hash)
        and record.identity == identity
    )


Replay = list[tuple[int, MessageTemplate]]


def replay_for(
    history: History | None, last_seq: int, current_seq: int, now: float
) -> Replay | None:
    """What a client that processed up to `last_seq` gets again, in order: the kept messages
    after it; [] when it missed nothing; None when the gap cannot be covered (no history, a
    `last_seq` ahead of what was sent, or messages no longer kept)."""
    if history is None:
        return [] if last_seq == current_seq else None
    return history.after(last_seq, current_seq, now)
