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
from urllib.parse import parse_qs, urlsplit

from .frames import MessageTemplate
from .ids import looks_like_session_id

RESUME_QUERY = "resume"
LAST_SEQ_QUERY = "last_seq"
SECRET_BYTES = 32


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
