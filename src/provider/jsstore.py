"""Session history and state in JetStream, so that a resume works across processes.

Resources, all named after the lattice and the provider id (docs/RESUME.md):

* stream `WSP_HIST_<name>`, subjects `wsp.<lattice>.<provider>.h.*`: one subject per session,
  each message `[seq, subject, body, reply_to]` in MessagePack. Limits: max age = the largest
  resume window, messages per subject = the largest RESUME_HISTORY_MESSAGES, total bytes
  `STREAM_MAX_BYTES`, discard old. File storage (a nats-server restart keeps it).
* key-value bucket `WSP_SESS_<name>` (TTL = the largest window): key = session id, value =
  the session's `SessionRecord` (lifecycle.py: owner pair, subscriptions, the SHA-256 of its
  resume secret, …) as a MessagePack map, with `updated_at`.

Appends are JetStream publishes that the session's writer waits for before the frame goes
out, so the stored history is never behind what a client saw. They are pipelined: up to
`MAX_IN_FLIGHT` are published and unacknowledged at once (each waits for its own
acknowledgement, not for the ones before it), the rest wait in order, bounded by
`MAX_WAITING_BYTES`; the bounds and the order are `history.AppendWindow`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

import msgpack
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from .frames import MessageTemplate
from .history import AppendWindow
from .lifecycle import SessionRecord

log = logging.getLogger(__name__)

#: The stream's total size cap (all sessions): bounds the disk and memory JetStream spends.
STREAM_MAX_BYTES = 256 * 1024 * 1024
#: How long an append may wait for JetStream before the frame goes out anyway.
APPEND_TIMEOUT = 2.0
#: Appends published and not yet acknowledged at once (the pipeline window): enough for a
#: broadcast's burst to stream, few enough that a stalled JetStream is not buried.
MAX_IN_FLIGHT = 1024
#: Payload bytes of appends waiting for room in the window; beyond it an append is not
#: stored (logged; its frame goes out at once), so a stalled JetStream holds bounded memory.
MAX_WAITING_BYTES = 16 * 1024 * 1024
#: How long a read (state, history) may take.
READ_TIMEOUT = 2.0


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if len(cleaned) > 40:
        cleaned = cleaned[:24] + "_" + hashlib.sha256(name.encode()).hexdigest()[:15]
    return cleaned


class HistoryStore:
    """JetStream-backed history and session state (one per provider instance)."""

    def __init__(self, nc: NatsClient, lattice: str, provider_id: str) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=READ_TIMEOUT)
        suffix = _safe(f"{lattice}_{provider_id}")
        self.stream = f"WSP_HIST_{suffix}"
        self.bucket = f"WSP_SESS_{suffix}"
        self.prefix = f"wsp.{lattice}.{provider_id}.h"
        self._window = 0.0
        self.refresh_interval = 0.0
        self._per_session = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._appends = AppendPipeline(nc, APPEND_TIMEOUT, MAX_IN_FLIGHT, MAX_WAITING_BYTES)

    @classmethod
    async def open(cls, nc: NatsClient, lattice: str, provider_id: str) -> HistoryStore | None:
        """The store, or None when the lattice's NATS has no JetStream (said in the log)."""
        store = cls(nc, lattice, provider_id)
        try:
            await store.js.account_info()
        except Exception as exc:
            log.warning(
                "JetStream is not available on the lattice NATS (%s): session resume works "
                "within this process only (a restarted or other instance cannot resume)",
                exc,
            )
            return None
        await store._appends.start()
        return store

    async def ensure(self, window: float, per_session: int) -> None:
        """Create (or widen) the stream and the bucket for a resume window and history size;
        raises on a JetStream error (the caller keeps resume in memory then)."""
        window = max(window, self._window)
        per_session = max(per_session, self._per_session)
        if window == self._window and per_session == self._per_session:
            return
        # Several instances (and their links) share these: only ever widen the limits.
        try:
            existing = (await self.js.stream_info(self.stream)).config
        except NotFoundError:
            existing = None
        if existing is not None:
            window = max(window, existing.max_age or 0.0)
            per_session = max(per_session, existing.max_msgs_per_subject or 0)
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.*"],
            max_age=window,
            max_msgs_per_subject=per_session,
            max_bytes=STREAM_MAX_BYTES,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            num_replicas=1,
        )
        if existing is None:
            await self.js.add_stream(config)
        else:
            await self.js.update_stream(config)
        try:
            await self.js.key_value(self.bucket)
            kv_config = (await self.js.stream_info(f"KV_{self.bucket}")).config
            if (kv_config.max_age or 0.0) < window:
                kv_config.max_age = window
                await self.js.update_stream(kv_config)
        except BucketNotFoundError:
            await self.js.create_key_value(
                KeyValueConfig(bucket=self.bucket, history=1, ttl=window)
            )
        self._window, self._per_session = window, per_session
        # The bucket's TTL is the window: the state of a session that stays connected longer
        # is rewritten well before it would expire (`SessionPersistence`'s refresh loop).
        self.refresh_interval = max(window / 3, 0.05)
        log.info(
            "session resume: history in JetStream stream %s, state in bucket %s (window %gs)",
            self.stream,
            self.bucket,
            window,
        )

    # --- history -----------------------------------------------------------------------------

    def append(self, session_id: str, seq: int, message: MessageTemplate) -> asyncio.Future[None]:
        """Store message `seq` of a session; resolves when JetStream has it (or failed:
        then logged, and the frame goes out anyway — only a resume elsewhere is affected)."""
        payload = msgpack.packb(
            [seq, message.subject, message.body, message.reply_to], use_bin_type=True
        )
        return self._appends.append(f"{self.prefix}.{session_id}", payload)

    async def history(
        self, session_id: str, after: int
    ) -> tuple[list[tuple[int, MessageTemplate]], int]:
        """The stored messages of a session with seq > `after`, and the last stored seq."""
        subject = f"{self.prefix}.{session_id}"
        out: list[tuple[int, MessageTemplate]] = []
        last = 0
        stream_seq = 1
        while True:
            try:
                raw = await self.js.get_msg(self.stream, seq=stream_seq, subject=subject, next=True)
            except NotFoundError:
                break
            seq, msg_subject, body, reply_to = msgpack.unpackb(raw.data or b"", raw=False)
            last = max(last, int(seq))
            if seq > after:
                out.append((int(seq), MessageTemplate(msg_subject, bytes(body), reply_to)))
            stream_seq = int(raw.seq or 0) + 1
        return out, last

    async def last_seq(self, session_id: str) -> int:
        """The seq of the newest stored message of a session (0: none)."""
        try:
            raw = await self.js.get_last_msg(self.stream, f"{self.prefix}.{session_id}")
        except NotFoundError:
            return 0
        return int(msgpack.unpackb(raw.data or b"", raw=False)[0])

    # --- session state -----------------------------------------------------------------------

    def save_state(self, record: SessionRecord) -> None:
        """Write a session's record (fire and forget; ordered on this connection)."""
        if not self.nc.is_connected:
            return  # written again on the next change or refresh
        data = record.to_bytes(updated_at=time.time())
        self._spawn(self.nc.publish(f"$KV.{self.bucket}.{record.session_id}", data))

    async def write_state(self, record: SessionRecord) -> None:
        """Write a session's record now (the refresh loop: no task per session)."""
        if self.nc.is_connected:
            data = record.to_bytes(updated_at=time.time())
            with contextlib.suppress(Exception):
                await self.nc.publish(f"$KV.{self.bucket}.{record.session_id}", data)

    async def load_state(self, session_id: str) -> SessionRecord | None:
        """A session's stored record, or None (never stored, ended, expired, or not a
        record)."""
        try:
            kv = await self.js.key_value(self.bucket)
            entry = await kv.get(session_id)
        except (KeyNotFoundError, BucketNotFoundError):
            return None
        if not entry.value:
            return None
        try:
            return SessionRecord.from_bytes(entry.value)
        except ValueError as exc:
            log.warning("session %s: the stored record is unreadable: %s", session_id, exc)
            return None

    def forget(self, session_id: str) -> None:
        """A session ended for good: drop its state and history (in the background)."""

        async def drop() -> None:
            with contextlib.suppress(Exception):
                # The KV purge as a plain publish (the KV wire protocol), sent at once and in
                # order on this connection: no instance can move the ended session in after it.
                await self.nc.publish(
                    f"$KV.{self.bucket}.{session_id}",
                    b"",
                    headers={"KV-Operation": "PURGE", "Nats-Rollup": "sub"},
                )
            with contextlib.suppress(Exception):
                await self.js.purge_stream(self.stream, subject=f"{self.prefix}.{session_id}")

        self._spawn(drop())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self, timeout: float = 0.2) -> None:
        """Wait up to `timeout` for background writes (shutdown)."""
        await self._appends.drain(timeout)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.flush(), timeout)


class AppendPipeline:
    """JetStream publishes whose acknowledgements are collected asynchronously.

    Each append is a plain publish with its own reply subject under one inbox of this
    connection (`<inbox>.<id>`); JetStream answers there and the append's future resolves.
    One task publishes (in offer order, so each session's messages are stored in `seq`
    order) while the window has room; a timer ends appends that JetStream did not answer
    within the timeout. A failed, refused or timed-out append resolves too (logged): the
    frame waiting for it goes out anyway, as with a lattice that is down.
    """

    def __init__(
        self, nc: NatsClient, timeout: float, max_in_flight: int, max_waiting_bytes: int
    ) -> None:
        self.nc = nc
        self.window: AppendWindow[tuple[str, bytes, asyncio.Future[None]]] = AppendWindow(
            max_in_flight, max_waiting_bytes, timeout
        )
        self._inbox = ""
        self._pump: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Appends refused since the last one that fitted (logged once per stall).
        self._refused = 0
        #: Set whenever nothing is pending (shutdown waits for it).
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Subscribe the inbox acknowledgements come back to."""
        self._inbox = self.nc.new_inbox()
        await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    def append(self, subject: str, payload: bytes) -> asyncio.Future[None]:
        """Publish `payload` on `subject` (a JetStream stream's); the future resolves when
        JetStream acknowledged it, or when it failed, was refused or timed out."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self.nc.is_connected or not self._inbox:
            # The lattice is down: do not hold the frame back for a store that cannot answer
            # (the hole in the stored history makes a resume elsewhere say recovered: false).
            done.set_result(None)
            return done
        window = self.window
        if not window.offer((subject, payload, done), len(payload), loop.time()):
            if not self._refused:
                log.warning(
                    "could not store a message for session resume: JetStream is behind "
                    "(%d appends in flight, %d bytes waiting); not storing until it catches up",
                    window.in_flight,
                    window.waiting_bytes,
                )
            self._refused += 1
            done.set_result(None)
            return done
        if self._refused:
            log.warning("session resume: %d messages were not stored", self._refused)
            self._refused = 0
        self._idle.clear()
        if self._pump is None and window.in_flight < window.max_in_flight:
            self._pump = loop.create_task(self._publish())
        if self._timer is None:
            self._arm(loop)
        return done

    async def _publish(self) -> None:
        """Publish what fits in the window, oldest first."""
        publish, inbox = self.nc.publish, self._inbox
        try:
            while batch := self.window.to_publish():
                for ident, (subject, payload, done) in batch:
                    try:
                        await publish(subject, payload, reply=f"{inbox}.{ident}")
                    except Exception as exc:
                        self.window.acknowledged(ident)
                        self._failed(done, str(exc) or type(exc).__name__)
        finally:
            self._pump = None
            self._check_idle()

    async def _on_ack(self, msg: Msg) -> None:
        """JetStream's answer to one append (`{"stream": …, "seq": …}` or an error)."""
        _, _, token = msg.subject.rpartition(".")
        if not token.isdigit():
            return
        item = self.window.acknowledged(int(token))
        if item is None:
            return  # timed out already
        data = msg.data
        done = item[2]
        if not data or b'"error"' in data:
            self._failed(done, data.decode(errors="replace") or "no stream answered")
        elif not done.done():
            done.set_result(None)
        if self.window.waiting and self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._publish())
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
                if not done.done():
                    done.set_result(None)
        self._arm(loop)
        if self.window.waiting and self._pump is None:
            self._pump = loop.create_task(self._publish())
        self._check_idle()

    @staticmethod
    def _failed(done: asyncio.Future[None], why: str) -> None:
        log.warning("could not store a message for session resume: %s", why)
        if not done.done():
            done.set_result(None)

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
