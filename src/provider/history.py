"""Per-session message history and resume tokens (docs/RESUME.md). Sans-I/O.

Every message frame the provider sends to a session carries the session's next `seq`
(1, 2, 3, …, never reused). The history keeps the newest messages (bounded by count, bytes
and age) so that a client that comes back with the last `seq` it processed gets exactly the
ones after it, in order, or learns that the gap cannot be covered.

A resume token is `<session id>.<secret>`: the session id locates the session (components
know it, so it is not secret); the 32-byte random secret proves the client owns it. Only the
SHA-256 of the secret is kept (in memory and in JetStream), so reading the stored state does
not let anyone resume a session. Tokens rotate on every (re)connection.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from .frames import MessageTemplate
from .ids import looks_like_session_id

RESUME_QUERY = "resume"
LAST_SEQ_QUERY = "last_seq"
SECRET_BYTES = 32

#: What the store keeps per pending append (`AppendWindow`).
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """What a client presented to resume: the token's parts and the last `seq` it processed."""

    session_id: str
    secret: str
    last_seq: int


def new_resume_token(session_id: str) -> tuple[str, bytes]:
    """A fresh token for `session_id` and the hash to keep (never the token itself)."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{session_id}.{secret}", secret_hash(secret)


def secret_hash(secret: str) -> bytes:
    """SHA-256 of a token's secret part."""
    return hashlib.sha256(secret.encode()).digest()


def token_matches(req: ResumeRequest, stored_hash: bytes | None) -> bool:
    """Constant-time check of a presented token against the kept hash."""
    return stored_hash is not None and hmac.compare_digest(secret_hash(req.secret), stored_hash)


def parse_resume(path: str) -> ResumeRequest | str | None:
    """The resume request in an upgrade URL's query (`?resume=<token>&last_seq=<n>`).

    None when the client did not ask; a string saying what is wrong when it asked badly.
    """
    query = parse_qs(urlsplit(path).query)
    tokens = query.get(RESUME_QUERY)
    if not tokens:
        return None
    session_id, dot, secret = tokens[0].partition(".")
    if not dot or not looks_like_session_id(session_id) or len(secret) < 16:
        return "the resume token is malformed"
    raw_seq = query.get(LAST_SEQ_QUERY, ["0"])[0]
    if not (raw_seq.isascii() and raw_seq.isdigit()) or len(raw_seq) > 15:
        return "last_seq must be a non-negative integer"
    return ResumeRequest(session_id, secret, int(raw_seq))


class History:
    """The newest messages of one session, bounded by count, bytes and age.

    Kept seqs are contiguous (`first`, `first + 1`, …), so a message costs two deque slots
    (the message, shared by every session a broadcast went to, and its time) and no tuple:
    a broadcast to 10k sessions allocates no per-session object the garbage collector would
    have to track.
    """

    __slots__ = (
        "_bytes",
        "_dropped_upto",
        "_first",
        "_messages",
        "_times",
        "max_age",
        "max_bytes",
        "max_messages",
    )

    def __init__(self, max_messages: int, max_bytes: int, max_age: float) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._messages: deque[MessageTemplate] = deque()
        self._times: deque[float] = deque()
        self._first = 1  # the seq of _messages[0]
        self._bytes = 0
        #: The highest seq no longer kept (0: nothing dropped yet).
        self._dropped_upto = 0

    def __len__(self) -> int:
        return len(self._messages)

    def append(self, seq: int, message: MessageTemplate, now: float) -> None:
        """Keep `message` as `seq`. Seqs increase by one; a jump (a message that was never
        kept) forgets everything before it."""
        messages = self._messages
        if seq != self._first + len(messages):
            self._dropped_upto = seq - 1
            messages.clear()
            self._times.clear()
            self._bytes = 0
            self._first = seq
        messages.append(message)
        self._times.append(now)
        self._bytes += message.size
        while len(messages) > self.max_messages or (
            self._bytes > self.max_bytes and len(messages) > 1
        ):
            self._drop_oldest()

    def expire(self, now: float) -> None:
        """Forget messages older than the resume window."""
        times = self._times
        while times and now - times[0] > self.max_age:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        message = self._messages.popleft()
        self._times.popleft()
        self._bytes -= message.size
        self._dropped_upto = self._first
        self._first += 1

    def after(
        self, last_seq: int, current_seq: int, now: float
    ) -> list[tuple[int, MessageTemplate]] | None:
        """The messages after `last_seq`, in order; None when that gap cannot be covered
        (the client claims more than was sent, or what it missed is no longer kept)."""
        self.expire(now)
        if last_seq > current_seq:
            return None
        if last_seq == current_seq:
            return []
        messages = self._messages
        first = self._first if messages else current_seq + 1
        if last_seq < self._dropped_upto or first > last_seq + 1:
            return None
        if self._first + len(messages) - 1 != current_seq:
            return None  # sent but never kept (e.g. not in the store after a crash)
        start = last_seq + 1 - self._first
        return [(self._first + i, messages[i]) for i in range(start, len(messages))]

    def entries(self) -> list[tuple[int, MessageTemplate]]:
        """Everything kept (for a move to another instance)."""
        return [(self._first + i, m) for i, m in enumerate(self._messages)]

    def restore(
        self, entries: list[tuple[int, MessageTemplate]], dropped_upto: int, now: float
    ) -> None:
        """Load a history that moved in from elsewhere (a hole forgets what is before it)."""
        self._dropped_upto = dropped_upto
        self._first = dropped_upto + 1
        for seq, message in entries:
            self.append(seq, message, now)

    @property
    def dropped_upto(self) -> int:
        """The highest seq this history can no longer replay."""
        return self._dropped_upto


class AppendWindow(Generic[T]):
    """The store's appends in order: waiting to be published, then in flight (published,
    not yet acknowledged), bounded so that a stalled store holds bounded memory.

    * at most `max_in_flight` appends are unacknowledged at once (the pipeline window);
    * beyond it appends wait, up to `max_waiting_bytes` of payload (more while they will
      find a slot: memory stays below `max_in_flight` appends plus `max_waiting_bytes`); an
      append that does not fit is refused (`offer` returns False): the caller treats it as
      a failed write;
    * every append ends `timeout` seconds after it was offered at the latest (`expire`),
      acknowledged or not, so the frame waiting for it goes out.

    Appends are published in the order they were offered (`to_publish`), so the store
    keeps each session's messages in `seq` order. `T` is what the caller keeps per append.
    """

    __slots__ = (
        "_in_flight",
        "_next_id",
        "_waiting",
        "max_in_flight",
        "max_waiting_bytes",
        "timeout",
        "waiting_bytes",
    )

    def __init__(self, max_in_flight: int, max_waiting_bytes: int, timeout: float) -> None:
        self.max_in_flight = max_in_flight
        self.max_waiting_bytes = max_waiting_bytes
        self.timeout = timeout
        #: id -> (deadline, item), oldest first.
        self._in_flight: dict[int, tuple[float, T]] = {}
        #: (deadline, size, item), oldest first.
        self._waiting: deque[tuple[float, int, T]] = deque()
        #: Payload bytes of the waiting appends.
        self.waiting_bytes = 0
        self._next_id = 1

    def offer(self, item: T, size: int, now: float) -> bool:
        """Queue an append of `size` payload bytes; False when it does not fit (refused).

        An append that will find a free slot in the window is always taken (a broadcast's
        burst is published as fast as the window turns); beyond that, appends wait while
        their bytes (with those of every waiting append) stay within `max_waiting_bytes`.
        """
        waiting = self._waiting
        if (
            len(waiting) + len(self._in_flight) >= self.max_in_flight
            and self.waiting_bytes + size > self.max_waiting_bytes
        ):
            return False
        waiting.append((now + self.timeout, size, item))
        self.waiting_bytes += size
        return True

    def to_publish(self) -> list[tuple[int, T]]:
        """The waiting appends that fit in the window now, oldest first, each with the id its
        acknowledgement will carry; they count as in flight from now on."""
        out: list[tuple[int, T]] = []
        waiting, in_flight = self._waiting, self._in_flight
        while waiting and len(in_flight) < self.max_in_flight:
            deadline, size, item = waiting.popleft()
            self.waiting_bytes -= size
            ident = self._next_id
            self._next_id += 1
            in_flight[ident] = (deadline, item)
            out.append((ident, item))
        return out

    def acknowledged(self, ident: int) -> T | None:
        """The append with this id, now over (None: unknown, e.g. it expired already)."""
        entry = self._in_flight.pop(ident, None)
        return None if entry is None else entry[1]

    def expire(self, now: float) -> list[T]:
        """The appends whose time is up (in flight or still waiting), now over."""
        out: list[T] = []
        in_flight = self._in_flight
        while in_flight:
            ident, (deadline, item) = next(iter(in_flight.items()))
            if deadline > now:
                return out  # everything waiting is younger still
            del in_flight[ident]
            out.append(item)
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            _, size, item = waiting.popleft()
            self.waiting_bytes -= size
            out.append(item)
        return out

    def next_deadline(self) -> float | None:
        """When the oldest append times out (None: nothing pending)."""
        if self._in_flight:
            return next(iter(self._in_flight.values()))[0]
        return self._waiting[0][0] if self._waiting else None

    @property
    def in_flight(self) -> int:
        """Appends published and not yet acknowledged."""
        return len(self._in_flight)

    @property
    def waiting(self) -> int:
        """Appends not yet published."""
        return len(self._waiting)
