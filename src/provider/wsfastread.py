"""websockets' server connection with a fast read path for small whole messages.

Through the library, each client message is parsed by its protocol object, queued in the
connection's message assembler, and handed over by waking the task that awaits `recv`: a
parser generator, a queue and a task switch per message, about a quarter of the provider's
own Python work per round trip. `FastReadConnection` (passed to `serve` as
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

#: Takes one message: (payload, binary). Called from `data_received`; must not block.
Sink = Callable[[bytes, bool], None]

_END_OF_REQUEST = b"\r\n\r\n"


class FastReadConnection(ServerConnection):
    """A `ServerConnection` whose small whole messages can go straight to a sink."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._splitter: FrameSplitter | None = None
        self._decided = False  # whether to split: decided on the first bytes after the upgrade
        self._request_ended = False  # the last bytes before the upgrade ended the request
        self._sink: Sink | None = None
        #: When the sink last took a message (time.monotonic()); 0.0 before that.
        self.last_message_at = 0.0

    def take_messages(self, sink: Sink | None) -> None:
        """Give small whole messages to `sink` from now on (None: all to the library)."""
        self._sink = sink

    def message_done(self) -> None:
        """The reader finished a message it got from the library (`recv`)."""
        if self._splitter is not None:
            self._splitter.done += 1

    def data_received(self, data: bytes) -> None:
        splitter = self._splitter
        if splitter is None:
            if self._decided:
                super().data_received(data)
                return
            if self.state is not State.OPEN:
                self._request_ended = data.endswith(_END_OF_REQUEST)
                super().data_received(data)
                return
            self._decided = True
            if not self._request_ended or has_extensions(self):
                super().data_received(data)
                return
            splitter = self._splitter = FrameSplitter(message_limit(self), unmask)
        sink = self._sink
        fast = sink is not None and self.state is State.OPEN
        took = False
        for kind, payload in splitter.feed(data, fast):
            if kind == RAW or sink is None:
                super().data_received(payload)
                continue
            took = True
            try:
                sink(payload, kind == BINARY)
            except Exception:  # one bad message must not cost the connection
                log.exception("taking a message failed")
        if took:
            self.last_message_at = time.monotonic()
