"""A client's WebSocket byte stream cut into whole frames (sans-I/O), for the read fast path.

A server reads masked frames (RFC 6455, section 5.2): two header bytes (FIN, RSV1-3, opcode; MASK,
a 7-bit length), an extended length of 2 or 8 bytes when that length is 126 or 127, the
4-byte mask, then the payload. `FrameSplitter` finds where each frame ends and sorts them:

* a **fast** frame is an unfragmented text or binary message (FIN set, no RSV bit, masked)
  no longer than the endpoint's message limit, arriving while the library has no message of
  its own in hand: it comes out unmasked, to be handled at once;
* every other frame (control frames, fragments, anything the protocol forbids, an oversized
  message) and every data frame while the library is still busy with an earlier one comes
  out **raw**, its bytes as received, for websockets' own parser, which then always starts
  at a frame boundary and keeps every rule it enforces today (pongs, closes, 1002, 1009).

Order holds: the splitter counts the messages it handed to the library (`to_library`); the
reader counts those it finished (`done`); a frame is fast only when the two are equal and no
fragmented message is half-way through the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

#: Kind of a raw item (opcodes 1 and 2 are the fast items' kinds).
RAW: Final = 0
TEXT: Final = 1
BINARY: Final = 2

#: A frame bigger than this is streamed to the library as it arrives (not collected here),
#: whatever the message limit: the fast path is for the many small messages.
FAST_LIMIT: Final = 1 << 20

_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82


#: `payload` XOR the repeated 4-byte `mask`.
Unmask = Callable[[bytes, bytes], bytes]


def unmask_py(payload: bytes, mask: bytes) -> bytes:
    """`payload` XOR the repeated 4-byte `mask`, in pure Python (the adapter passes
    websockets' C version when it has one)."""
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


class FrameSplitter:
    """Cuts one connection's incoming bytes into whole frames; see the module docstring.

    `max_message`: the endpoint's message limit (None: none); a data frame announcing more
    is left to the library, which closes the connection with 1009. `unmask`: how to unmask
    a payload.
    """

    __slots__ = ("_buffer", "_limit", "_passing", "_unmask", "done", "in_fragment", "to_library")

    def __init__(self, max_message: int | None, unmask: Unmask = unmask_py) -> None:
        self._unmask = unmask
        self._buffer = b""
        self._limit = FAST_LIMIT if max_message is None else min(max_message, FAST_LIMIT)
        self._passing = 0  # bytes still to pass raw: the rest of a frame too big to collect
        #: Complete messages given raw to the library / finished by the reader.
        self.to_library = 0
        self.done = 0
        #: A fragmented message has started in the library and not ended.
        self.in_fragment = False

    def feed(self, data: bytes, fast: bool) -> list[tuple[int, bytes]]:
        """The whole frames now available, in order: (TEXT or BINARY, unmasked payload) for a
        fast frame, (RAW, bytes) for what goes to the library. `fast`: may frames be fast
        at all now (False: everything raw, frame boundaries and counts still kept)."""
        out: list[tuple[int, bytes]] = []
        if self._passing:
            take = min(self._passing, len(data))
            out.append((RAW, data[:take]))
            self._passing -= take
            data = data[take:]
        buf = self._buffer + data if self._buffer else data
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = second & 0x80
            if masked:
                head += 4
            end = pos + head + length
            if length > self._limit:
                # Too big to collect (or over the limit): the library gets it as it comes.
                self._count(first)
                out.append((RAW, buf[pos:end]))
                self._passing = max(end - n, 0)
                pos = min(end, n)
                continue
            if end > n:
                break
            if (
                fast
                and masked
                and first in (_FIN_TEXT, _FIN_BINARY)
                and self.to_library == self.done
                and not self.in_fragment
            ):
                start = end - length
                out.append((first & 0x0F, self._unmask(buf[start:end], buf[start - 4 : start])))
            else:
                self._count(first)
                out.append((RAW, buf[pos:end]))
            pos = end
        self._buffer = buf[pos:] if pos < n else b""
        return out

    def _count(self, first: int) -> None:
        """Account for a frame given to the library (its first header byte)."""
        opcode = first & 0x0F
        if opcode > 2:
            return  # control (or invalid: the library fails the connection)
        if first & 0x80:  # FIN: a message completes (unless a lone continuation)
            if opcode or self.in_fragment:
                self.to_library += 1
            self.in_fragment = False
        elif opcode:
            self.in_fragment = True
