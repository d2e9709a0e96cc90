"""Session history and state in JetStream, so that a resume works across processes.

Resources, all named after the lattice and the provider id (docs/RESUME.md):

* stream `WSP_JRNL_<name>`, subjects `wsp.<lattice>.<provider>.j.*`: the history journal,
  one subject per provider process (`j.<journal id>`, a random id per process). Each stream
  message is a batch of records (jsjournal.py): the messages the process's sessions were
  given in one event-loop step, all sessions together. Limits: max age = the largest resume
  window, total bytes `STREAM_MAX_BYTES`, discard old. File storage (a nats-server restart
  keeps it).
* key-value bucket `WSP_SESS_<name>` (TTL = the largest window): key = session id, value =
  the session's `SessionRecord` (lifecycle.py: owner pair, subscriptions, the SHA-256 of its
  resume secret, the journal holding its history, …) as a MessagePack map, with
  `updated_at`.

Appends are JetStream publishes that the session's writer waits for before the frame goes
out, so the stored history is never behind what a client saw. The messages given to
sessions in one loop step are collected and stored as one journal message at the end of the
step; those journal messages are pipelined: up to `MAX_IN_FLIGHT` published and
unacknowledged at once, the rest waiting in order, bounded by `MAX_WAITING_BYTES` (the
bounds and the order are `history.AppendWindow`'s). So the store costs one JetStream write
per loop step however many sessions were sent to in it.

A session that moves in (from its holder, or from the store after its holder died) has its
history written to the new holder's journal, and its record names that journal from then
on: a resume reads one journal. Reading one means reading all of it (every session of that
process); a `JournalIndex` keeps what was read, per session, so that the sessions of a dead
process, resumed one after another, cost one read of its journal, continued from where the
last one stopped.

Every write (appends, session records, purges) goes out on one `Wire` (under a host, the
provider's fast NATS connection), so they reach the server in the order they were made.
Reads (a resume from the store) and the set-up of the stream and bucket use nats-py's
JetStream API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid

from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from wasmcloud_provider_sdk.wire import Wire
from wasmcloud_provider_sdk.wire_natspy import NatsPyWire

from .frames import MessageTemplate
from .jsappend import AppendPipeline
from .jsjournal import JournalIndex, Record, pack_batches, unpack_batch
from .lifecycle import SessionRecord
from .stored import Stored

log = logging.getLogger(__name__)

#: The stream's total size cap (all sessions): bounds the disk and memory JetStream spends.
STREAM_MAX_BYTES = 256 * 1024 * 1024
#: How long an append may wait for JetStream before the frame goes out anyway.
APPEND_TIMEOUT = 2.0
#: Journal messages published and not yet acknowledged at once (the pipeline window):
#: enough for a broadcast's burst to stream, few enough that a stalled JetStream is not
#: buried.
MAX_IN_FLIGHT = 1024
#: Payload bytes of journal messages waiting for room in the window; beyond it a message
#: is not stored (logged; its frames go out at once), so a stalled JetStream holds bounded
#: memory.
MAX_WAITING_BYTES = 16 * 1024 * 1024
#: Room left in a journal message for its subject, reply and headers.
PAYLOAD_MARGIN = 4096
#: How long a read (state, history) may take.
READ_TIMEOUT = 2.0
#: Journal messages fetched per request when reading a journal (each up to max_payload:
#: a few MiB at a time, and the reader yields to traffic between messages).
READ_BATCH = 4


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if len(cleaned) > 40:
        cleaned = cleaned[:24] + "_" + hashlib.sha256(name.encode()).hexdigest()[:15]
    return cleaned


class HistoryStore:
    """JetStream-backed history and session state (one per provider process)."""

    def __init__(
        self, nc: NatsClient, lattice: str, provider_id: str, wire: Wire | None = None
    ) -> None:
        self.nc = nc
        #: Where every write goes (see the module docstring).
        self.wire: Wire = NatsPyWire(nc) if wire is None else wire
        self.js = nc.jetstream(timeout=READ_TIMEOUT)
        suffix = _safe(f"{lattice}_{provider_id}")
        self.stream = f"WSP_JRNL_{suffix}"
        self.bucket = f"WSP_SESS_{suffix}"
        self.prefix = f"wsp.{lattice}.{provider_id}.j"
        #: This process's journal subject.
        self.journal = f"{self.prefix}.{uuid.uuid4().hex}"
        self._window = 0.0
        self.refresh_interval = 0.0
        self._per_session = 0
        self._appends = AppendPipeline(self.wire, APPEND_TIMEOUT, MAX_IN_FLIGHT, MAX_WAITING_BYTES)
        #: The records given to sessions in this loop step, stored together at its end.
        self._batch: list[Record] = []
        self._batch_stored: Stored | None = None
        #: Journals read (subject -> what they hold), and one lock per journal read.
        self._indexes: dict[str, JournalIndex] = {}
        self._reading: dict[str, asyncio.Lock] = {}
        #: Drops the indexes not read for a window (armed while any is kept).
        self._drop_timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls, nc: NatsClient, lattice: str, provider_id: str, wire: Wire | None = None
    ) -> HistoryStore | None:
        """The store, or None when the lattice's NATS has no JetStream (said in the log).
        `wire`: the connection writes go out on (default: `nc` itself)."""
        store = cls(nc, lattice, provider_id, wire)
        try:
            await store.js.account_info()
        except Exception as exc:
            log.warning(
                "JetStream is not available on the lattice NATS (%s): session resume works "
                "within this process only (a restarted or other instance cannot resume)",
                exc,
            )
            return None
        store._appends.start()
        return store

    async def ensure(self, window: float, per_session: int) -> None:
        """Create (or widen) the stream and the bucket for a resume window and history size;
        raises on a JetStream error (the caller keeps resume in memory then)."""
        window = max(window, self._window)
        per_session = max(per_session, self._per_session)
        if window == self._window and per_session == self._per_session:
            return
        # Several processes (and their links) share these: only ever widen the limits.
        try:
            existing = (await self.js.stream_info(self.stream)).config
        except NotFoundError:
            existing = None
        if existing is not None:
            window = max(window, existing.max_age or 0.0)
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.*"],
            max_age=window,
            max_bytes=STREAM_MAX_BYTES,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            num_replicas=1,
        )
        if existing is None:
            await self.js.add_stream(config)
        elif (existing.max_age or 0.0) < window:
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

    def append(self, session_id: str, seq: int, message: MessageTemplate) -> Stored:
        """Store message `seq` of a session; over when JetStream has it (or failed: then
        logged, and the frame goes out anyway — only a resume elsewhere is affected). The
        messages of one loop step share one outcome: they are stored together at its end."""
        stored = self._batch_stored
        if stored is None:
            stored = self._batch_stored = Stored()
            asyncio.get_running_loop().call_soon(self._store_batch)
        self._batch.append((session_id, seq, message.subject, message.body, message.reply_to))
        return stored

    def adopt(self, session_id: str, entries: list[tuple[int, MessageTemplate]]) -> None:
        """A session moved in with this history: write it to this process's journal (its
        record names this journal from now on)."""
        for seq, message in entries:
            self.append(session_id, seq, message)

    def _store_batch(self) -> None:
        """The end of a loop step: the records collected in it, as one journal message."""
        records, stored = self._batch, self._batch_stored
        self._batch, self._batch_stored = [], None
        if stored is None or not records:
            return
        try:
            # Within the server's max_payload: a big batch goes as several journal messages,
            # in order; the batch's outcome is the last one's (stored only if all were).
            *first, last = pack_batches(records, self.wire.max_payload - PAYLOAD_MARGIN)
            earlier = [self._appends.append(self.journal, payload) for payload in first]
            if earlier:
                done = self._appends.append(self.journal, last)
                done.then(lambda ok: stored.set(ok and all(e.ok for e in earlier)))
            else:
                self._appends.append(self.journal, last, stored)
        except Exception:
            # Never leave the step's frames and answers waiting for an outcome.
            log.exception("could not store %d message(s) for session resume", len(records))
            stored.set(False)

    async def history(
        self, session_id: str, after: int, journal: str
    ) -> tuple[list[tuple[int, MessageTemplate]], int]:
        """The stored messages of a session with seq > `after` (the newest
        RESUME_HISTORY_MESSAGES of them), and its last stored seq, from `journal` (its
        record's)."""
        if not journal.startswith(f"{self.prefix}."):
            return [], 0  # not a journal of this provider (or a record without one)
        now = time.monotonic()
        self._drop_unused(now)
        if self._drop_timer is None:
            loop = asyncio.get_running_loop()
            self._drop_timer = loop.call_later(self._keep_for(), self._drop_later)
        lock = self._reading.setdefault(journal, asyncio.Lock())
        async with lock:
            index = self._indexes.get(journal)
            if index is None:
                index = self._indexes[journal] = JournalIndex(self._per_session, now)
            index.used_at = now
            await self._read_on(journal, index)
        return index.history(session_id, after)

    async def _read_on(self, journal: str, index: JournalIndex) -> None:
        """Add to `index` what `journal` holds past what it was read to."""
        try:
            newest = (await self.js.get_last_msg(self.stream, journal)).seq or 0
        except NotFoundError:
            return  # nothing stored (or all of it expired)
        if newest <= index.read_to:
            return
        sub = await self.js.pull_subscribe(
            journal,
            stream=self.stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=index.read_to + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=READ_TIMEOUT * 5,
            ),
        )
        try:
            while index.read_to < newest:
                try:
                    msgs = await sub.fetch(READ_BATCH, timeout=READ_TIMEOUT)
                except NatsTimeoutError:
                    break  # the rest expired meanwhile (max age): what was there is read
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    try:
                        index.add(seq, unpack_batch(msg.data))
                    except ValueError as exc:
                        log.warning("history journal %s, message %d: %s", journal, seq, exc)
                        index.read_to = max(index.read_to, seq)
                    await asyncio.sleep(0)  # a journal can be big: let traffic through
        finally:
            name = None
            with contextlib.suppress(Exception):
                name = (await sub.consumer_info()).name
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            if name is not None:
                with contextlib.suppress(Exception):
                    await self.js.delete_consumer(self.stream, name)

    def _keep_for(self) -> float:
        return max(self._window, READ_TIMEOUT)

    def _drop_later(self) -> None:
        """The timer: drop what was not read for a window; again later while any is kept."""
        self._drop_timer = None
        self._drop_unused(time.monotonic())
        if self._indexes:
            loop = asyncio.get_running_loop()
            self._drop_timer = loop.call_later(self._keep_for(), self._drop_later)

    def _drop_unused(self, now: float) -> None:
        """Forget the journals not read from for a resume window (their sessions are gone)."""
        for journal, index in list(self._indexes.items()):
            if now - index.used_at > self._keep_for():
                lock = self._reading.get(journal)
                if lock is None or not lock.locked():
                    del self._indexes[journal]
                    self._reading.pop(journal, None)

    # --- session state -----------------------------------------------------------------------

    def save_state(self, record: SessionRecord) -> None:
        """Write a session's record, naming this process's journal (fire and forget; ordered
        with the appends)."""
        if not self.wire.is_connected:
            return  # written again on the next change or refresh
        data = record.to_bytes(updated_at=time.time(), journal=self.journal)
        with contextlib.suppress(Exception):  # lost connection: written again later
            self.wire.publish(f"$KV.{self.bucket}.{record.session_id}", data)

    async def write_state(self, record: SessionRecord) -> None:
        """Write a session's record now (the refresh loop)."""
        self.save_state(record)

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
        """A session ended for good: drop its state (queued now, in order with the writes
        before), so that no process can resume it. Its messages in the journal are never
        read again and expire with the resume window."""
        for index in self._indexes.values():
            index.forget(session_id)
        with contextlib.suppress(Exception):  # lost connection: the record expires instead
            # The KV purge as a plain publish (the KV wire protocol), sent at once and in
            # order with the writes: no instance can move the ended session in after it.
            self.wire.publish(
                f"$KV.{self.bucket}.{session_id}",
                b"",
                headers={"KV-Operation": "PURGE", "Nats-Rollup": "sub"},
            )

    async def flush(self, timeout: float = 0.2) -> None:
        """Wait up to `timeout` for background writes (shutdown)."""
        if self._drop_timer is not None:
            self._drop_timer.cancel()
            self._drop_timer = None
        self._store_batch()
        await self._appends.drain(timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.wire.flush(timeout), timeout)
