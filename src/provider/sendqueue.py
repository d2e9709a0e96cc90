"""A session's send queue and its slow-consumer policy. Sans-I/O.

Frames for one client wait here until the writer sends them. The queue is bounded twice:
by frames (SEND_QUEUE_LIMIT) and by bytes (SEND_QUEUE_BYTES). A frame that does not fit is
decided by the policy (SLOW_CONSUMER): `drop_oldest` makes room by dropping the oldest
frames; `disconnect` refuses it, and the session closes with 1008 (slow consumer).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

#: Frames always allowed in a send queue whatever their size: a client that reads normally
#: but receives a few messages larger than SEND_QUEUE_BYTES is not a slow consumer.
MIN_QUEUED_FRAMES = 2

#: What a frame may wait for before it is written (the session's: its history stored).
G = TypeVar("G")

#: A queued frame: text or binary, alone or with what it waits for.
Queued = str | bytes | tuple[str | bytes, G]


def frame_len(item: str | bytes | tuple[str | bytes, object]) -> int:
    """Bytes of a queued frame (characters for text: close enough for a bound)."""
    return len(item[0] if isinstance(item, tuple) else item)


class SendQueue(Generic[G]):
    """Frames waiting for the writer, bounded by count and bytes, with the policy for a
    frame that does not fit.

    `frames` is the queue itself (read it; change it only through the methods, which keep
    `queued_bytes` right).
    """

    __slots__ = ("drop_oldest", "frames", "limit", "limit_bytes", "queued_bytes")

    def __init__(self, limit: int, limit_bytes: int, drop_oldest: bool) -> None:
        self.frames: deque[Queued[G]] = deque()
        #: Bytes of the frames in `frames`.
        self.queued_bytes = 0
        self.limit = limit
        self.limit_bytes = limit_bytes
        #: True: a frame that does not fit drops the oldest ones; False: it is refused.
        self.drop_oldest = drop_oldest

    def push(self, item: Queued[G]) -> int | None:
        """Queue `item` and return how many of the oldest frames were dropped to make room
        (0 when it fitted). None: it did not fit and the policy is `disconnect`; nothing was
        queued or dropped, and the session is to close with 1008 (slow consumer)."""
        size = frame_len(item)
        frames = self.frames
        dropped = 0
        if len(frames) >= self.limit or (
            len(frames) >= MIN_QUEUED_FRAMES and self.queued_bytes + size > self.limit_bytes
        ):
            if not self.drop_oldest:
                return None
            while frames and (
                len(frames) >= self.limit
                or (
                    len(frames) >= MIN_QUEUED_FRAMES and self.queued_bytes + size > self.limit_bytes
                )
            ):
                self.queued_bytes -= frame_len(frames.popleft())
                dropped += 1
        frames.append(item)
        self.queued_bytes += size
        return dropped

    def pop(self) -> Queued[G]:
        """The oldest frame, taken out (IndexError when empty)."""
        item = self.frames.popleft()
        self.queued_bytes -= frame_len(item)
        return item

    def clear(self) -> None:
        """Drop every queued frame (the client is gone; what it missed is in the history)."""
        self.frames.clear()
        self.queued_bytes = 0

    def __len__(self) -> int:
        return len(self.frames)
