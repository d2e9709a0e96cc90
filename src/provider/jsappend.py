"""`AppendPipeline`: JetStream publishes, pipelined, acknowledged by callback.

The history store's appends (jsstore.py) go through here. Each is a publish on the store's
`Wire` with its own reply subject; up to a window of them are unacknowledged at once, the
rest wait in order, bounded in bytes (`history.AppendWindow`). Everything runs in the
wire's callbacks and one timer: no task, future or timer per append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from wasmcloud_provider_sdk.wire import Wire, WireMsg

from .history import AppendWindow
from .stored import Stored

log = logging.getLogger(__name__)


class AppendPipeline:
    """JetStream publishes whose acknowledgements are collected by callback.

    Each append is a plain publish with its own reply subject under one inbox of this
    connection (`<inbox>.<id>`); JetStream answers there and the append's `Stored` is set.
    Appends are published at once, in offer order (so each session's messages are stored
    in `seq` order), while the window has room; the rest are published from the
    acknowledgement callback as room frees up. One timer ends the appends JetStream did not
    answer within the timeout. A failed, refused or timed-out append is over too (logged):
    the frame waiting for it goes out anyway, as with a lattice that is down. No task,
    future or timer per append: all of it runs in the wire's callbacks.
    """

    def __init__(
        self, wire: Wire, timeout: float, max_in_flight: int, max_waiting_bytes: int
    ) -> None:
        self.wire = wire
        self.window: AppendWindow[tuple[str, bytes, Stored]] = AppendWindow(
            max_in_flight, max_waiting_bytes, timeout
        )
        self._inbox = ""
        self._sid: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Appends refused since the last one that fitted (logged once per stall).
        self._refused = 0
        #: Set whenever nothing is pending (shutdown waits for it).
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def inbox(self) -> str:
        """The inbox JetStream answers to (`<inbox>.<id>`)."""
        return self._inbox

    def start(self) -> None:
        """Subscribe the inbox acknowledgements come back to."""
        self._inbox = self.wire.new_inbox()
        self._sid = self.wire.subscribe(f"{self._inbox}.*", self._on_ack)

    def append(self, subject: str, payload: bytes, done: Stored | None = None) -> Stored:
        """Publish `payload` on `subject` (a JetStream stream's); the outcome (`done`, or a
        new one) is over when JetStream acknowledged it, or when it failed, was refused or
        timed out."""
        if not self.wire.is_connected or not self._inbox:
            # The lattice is down: do not hold the frame back for a store that cannot answer
            # (the hole in the stored history makes a resume elsewhere say recovered: false).
            done = Stored() if done is None else done
            done.set(False)
            return done
        done = Stored() if done is None else done
        window = self.window
        loop = asyncio.get_running_loop()
        if not window.offer((subject, payload, done), len(payload), loop.time()):
            if not self._refused:
                log.warning(
                    "could not store a message for session resume: JetStream is behind "
                    "(%d appends in flight, %d bytes waiting); not storing until it catches up",
                    window.in_flight,
                    window.waiting_bytes,
                )
            self._refused += 1
            done.set(False)
            return done
        if self._refused:
            log.warning("session resume: %d messages were not stored", self._refused)
            self._refused = 0
        self._idle.clear()
        self._publish()
        if self._timer is None:
            self._arm(loop)
        return done

    def _publish(self) -> None:
        """Publish what fits in the window, oldest first."""
        publish, inbox = self.wire.publish, self._inbox
        failed = False
        for ident, (subject, payload, done) in self.window.to_publish():
            try:
                publish(subject, payload, f"{inbox}.{ident}")
            except Exception as exc:
                self.window.acknowledged(ident)
                self._failed(done, str(exc) or type(exc).__name__)
                failed = True
        if failed:
            self._check_idle()

    def _on_ack(self, msg: WireMsg) -> None:
        """JetStream's answer to one append (`{"stream": …, "seq": …}` or an error)."""
        token = msg.subject[len(self._inbox) + 1 :]
        if not token.isdigit():
            return  # not an answer to an append
        item = self.window.acknowledged(int(token))
        if item is None:
            return  # timed out already
        data = msg.data
        done = item[2]
        if not data or b'"error"' in data:
            self._failed(done, data.decode(errors="replace") or "no stream answered")
        else:
            done.set(True)
        if self.window.waiting:
            self._publish()
        self._check_idle()

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self.window.next_deadline()
        self._timer = None if deadline is None else loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """End the appends JetStream did not answer in time (their frames go out)."""
        loop = asyncio.get_running_loop()
        expired = self.window.expire(loop.time())
        if expired:
            log.warning(
                "could not store %d message(s) for session resume: no answer from JetStream "
                "within %gs",
                len(expired),
                self.window.timeout,
            )
            for _, _, done in expired:
                done.set(False)
        self._arm(loop)
        if self.window.waiting:
            self._publish()
        self._check_idle()

    @staticmethod
    def _failed(done: Stored, why: str) -> None:
        log.warning("could not store a message for session resume: %s", why)
        done.set(False)

    def _check_idle(self) -> None:
        if not self.window.in_flight and not self.window.waiting:
            self._idle.set()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` until every append is over (shutdown)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
