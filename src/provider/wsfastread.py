"""websockets' server connection with a fast read path for small whole messages.

Through the library, each client message is parsed by its protocol object, queued in the
connection's message assembler, and handed over by waking the task that awaits `recv`: a
parser generator, a queue and a task switch per message (taking them away cut the
provider's CPU per round trip by 13 %). `FastReadConnection` (passed to `serve` as
`create_connection`, its documented hook) cuts the incoming bytes into whole frames first
(`framesplit`) and gives each small unfragmented text or binary message to the session's
sink synchronously, in `data_received`; every other frame goes to the library unchanged,
at a frame boundary. Order is kept: no message is taken this way while one handed to the
library has not been read (`message_done`).

The fast path stays off for a connection that negotiated an extension (permessage-deflate:
the library decompresses), and for one whose opening request did not end its first bytes
(a client that sent frames before the handshake's answer, which RFC 6455 forbids): there the
library may already hold part of a frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from .framesplit import BINARY, RAW, FrameSplitter
from .wsadapter import has_extensions, message_limit, unmask

log = logging.getLogger(__name__)

#: Takes one message: (owner, payload, binary), `owner` as given to `take_messages`.
#: Called from `data_received`; must not block.
Sink = Callable[[Any, bytes, bool], None]

_END_OF_REQUEST = b"\r\n\r\n"


class _FastRead:
    """One connection's fast-path state, in one small object: the connection's own
    attributes stay at websockets' count, where the interpreter shares their keys between
    instances (five more made every connection's attribute dict ~1.3 KB bigger)."""

    __slots__ = ("decided", "last_message_at", "owner", "request_ended", "sink", "splitter")

    def __init__(self) -> None:
        self.splitter: FrameSplitter | None = None
        self.decided = False  # whether to split: decided on the first bytes after the upgrade
        self.request_ended = False  # the last bytes before the upgrade ended the request
        self.sink: Sink | None = None
        self.owner: Any = None
        self.last_message_at = 0.0


class FastReadConnection(ServerConnection):
    """A `ServerConnection` whose small whole messages can go straight to a sink."""

    #: Made with the first bytes (a class default until then: no attribute of its own).
    _fast: _FastRead | None = None

    def _state(self) -> _FastRead:
        fast = self._fast
        if fast is None:
            fast = self._fast = _FastRead()
        return fast

    @property
    def last_message_at(self) -> float:
        """When the sink last took a message (time.monotonic()); 0.0 before that."""
        fast = self._fast
        return 0.0 if fast is None else fast.last_message_at

    def take_messages(self, sink: Sink | None, owner: Any = None) -> None:
        """Give small whole messages to `sink(owner, payload, binary)` from now on (None:
        all to the library)."""
        fast = self._state()
        fast.sink, fast.owner = sink, owner

    def message_done(self) -> None:
        """The reader finished a message it got from the library (`recv`)."""
        fast = self._fast
        if fast is not None and fast.splitter is not None:
            fast.splitter.done += 1

    def data_received(self, data: bytes) -> None:
        fast = self._fast or self._state()
        splitter = fast.splitter
        if splitter is None:
            if fast.decided:
                super().data_received(data)
                return
            if self.state is not State.OPEN:
                fast.request_ended = data.endswith(_END_OF_REQUEST)
                super().data_received(data)
                return
            fast.decided = True
            if not fast.request_ended or has_extensions(self):
                super().data_received(data)
                return
            splitter = fast.splitter = FrameSplitter(message_limit(self), unmask)
        sink = fast.sink
        took = False
        for kind, payload in splitter.feed(data, sink is not None and self.state is State.OPEN):
            if kind == RAW or sink is None:
                super().data_received(payload)
                continue
            took = True
            try:
                sink(fast.owner, payload, kind == BINARY)
            except Exception:  # one bad message must not cost the connection
                log.exception("taking a message failed")
        if took:
            fast.last_message_at = time.monotonic()
