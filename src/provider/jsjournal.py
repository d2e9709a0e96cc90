"""The history journal's format and its read side (sans-I/O).

Each provider process writes one journal subject in the history stream (jsstore.py). A
stream message there is a batch: the records of every message the process's sessions were
given in one event-loop step, each `[session id, seq, subject, body, reply_to]`, as one
MessagePack array. One JetStream write then covers many sessions, which is what keeps
history in JetStream cheap under load.

Reading is rare (a resume after the holding process died, or a history too big to move in
one message) and goes by journal: `JournalIndex` is what one journal holds per session,
filled from the journal's messages in stream order and read on from where it stopped, so a
process that takes over many sessions of a dead one reads that journal once.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .frames import MessageTemplate

#: One record: (session id, seq, subject, body, reply_to).
Record = tuple[str, int, str, bytes, str | None]


def pack_batches(records: list[Record], limit: int) -> list[bytes]:
    """`records` as journal messages, each within `limit` bytes when its records allow (a
    record bigger than that goes alone, and the store refuses it)."""
    packer = msgpack.Packer(use_bin_type=True)
    out: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for record in records:
        packed = packer.pack(record)
        if parts and size + len(packed) > limit:
            out.append(packer.pack_array_header(len(parts)) + b"".join(parts))
            parts, size = [], 0
        parts.append(packed)
        size += len(packed)
    out.append(packer.pack_array_header(len(parts)) + b"".join(parts))
    return out


def unpack_batch(data: bytes) -> list[Record]:
    """The records of one journal message; raises ValueError when it is not one."""
    try:
        value: Any = msgpack.unpackb(data, raw=False)
        return [
            (str(sid), int(seq), str(subject), bytes(body), None if reply is None else str(reply))
            for sid, seq, subject, body, reply in value
        ]
    except Exception as exc:
        raise ValueError(f"not a history journal message: {exc}") from None


class JournalIndex:
    """What one journal holds, per session: the newest `per_session` messages of each
    (0: all) and the highest seq seen, read up to stream sequence `read_to`."""

    __slots__ = ("_last", "_sessions", "per_session", "read_to", "used_at")

    def __init__(self, per_session: int, now: float) -> None:
        self.per_session = per_session
        #: The stream sequence of the last journal message added.
        self.read_to = 0
        #: When a history was last read from it (unused indexes are dropped).
        self.used_at = now
        self._sessions: dict[str, dict[int, MessageTemplate]] = {}
        self._last: dict[str, int] = {}

    def add(self, stream_seq: int, records: list[Record]) -> None:
        """The records of the journal message at `stream_seq` (in stream order)."""
        self.read_to = max(self.read_to, stream_seq)
        sessions, last, keep = self._sessions, self._last, self.per_session
        for sid, seq, subject, body, reply_to in records:
            entries = sessions.get(sid)
            if entries is None:
                entries = sessions[sid] = {}
            # A moved-in session's history is written again by its new holder: the same
            # seq, the same message.
            entries[seq] = MessageTemplate(subject, body, reply_to)
            if seq > last.get(sid, 0):
                last[sid] = seq
            if keep and len(entries) > 2 * keep:
                for old in sorted(entries)[:-keep]:
                    del entries[old]

    def history(self, session_id: str, after: int) -> tuple[list[tuple[int, MessageTemplate]], int]:
        """The session's kept messages with seq > `after`, in seq order, and its last seq."""
        entries = self._sessions.get(session_id, {})
        out = sorted(((seq, m) for seq, m in entries.items() if seq > after), key=_seq)
        if self.per_session and len(out) > self.per_session:
            out = out[-self.per_session :]
        return out, self._last.get(session_id, 0)

    def forget(self, session_id: str) -> None:
        """A session ended: nothing of it is read from here again."""
        self._sessions.pop(session_id, None)
        self._last.pop(session_id, None)


def _seq(entry: tuple[int, MessageTemplate]) -> int:
    return entry[0]
