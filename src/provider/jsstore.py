"""Session history and state in JetStream, so that a resume works across processes.

Resources, all named after the lattice and the provider id (docs/RESUME.md):

* stream `WSP_HIST_<name>`, subjects `wsp.<lattice>.<provider>.h.*`: one subject per session,
  each message one record `[seq, subject, body, reply_to]` or a batch of them
  `[[seq, …], …]` in MessagePack. Limits: max age = the largest resume window, messages per
  subject = the largest RESUME_HISTORY_MESSAGES, total bytes `STREAM_MAX_BYTES`, discard
  old. File storage (a nats-server restart keeps it).
* key-value bucket `WSP_SESS_<name>` (TTL = the largest window): key = session id, value =
  the session's `SessionRecord` (lifecycle.py: owner pair, subscriptions, the SHA-256 of its
  resume secret, …) as a MessagePack map, with `updated_at`.

Appends are JetStream publishes that the session's writer waits for before the frame goes
out, so the stored history is never behind what a client saw. They are pipelined: up to
`MAX_IN_FLIGHT` are published and unacknowledged at once (each waits for its own
acknowledgement, not for the ones before it), the rest wait in order, bounded by
`MAX_WAITING_BYTES`; the bounds and the order are `history.AppendWindow`'s.

One append per session is in flight at a time: the messages made for a session while its
append is in flight are stored together, as one batch, when it is acknowledged. A quiet
session's message is stored alone and at once; a busy one's are stored a batch per
JetStream round trip, so the store costs less per message the busier a session is.

Every write (appends, session records, purges) goes out on one `Wire` (under a host, the
provider's fast NATS connection), so they reach the server in the order they were made: an
ended session's purge comes after its last append and record. Reads (a resume from the
store) and the set-up of the stream and bucket use nats-py's JetStream API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from functools import partial
from typing import Any

import msgpack
from nats.aio.client import Client as NatsClient
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from wasmcloud_provider_sdk.wire import Wire
from wasmcloud_provider_sdk.wire_natspy import NatsPyWire

from .frames import MessageTemplate
from .jsappend import AppendPipeline
from .lifecycle import SessionRecord
from .stored import Stored

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
#: Room left in a stored batch for the message's subject, reply and headers.
PAYLOAD_MARGIN = 4096
#: How long a read (state, history) may take.
READ_TIMEOUT = 2.0


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if len(cleaned) > 40:
        cleaned = cleaned[:24] + "_" + hashlib.sha256(name.encode()).hexdigest()[:15]
    return cleaned


class HistoryStore:
    """JetStream-backed history and session state (one per provider instance)."""

    def __init__(
        self, nc: NatsClient, lattice: str, provider_id: str, wire: Wire | None = None
    ) -> None:
        self.nc = nc
        #: Where every write goes (see the module docstring).
        self.wire: Wire = NatsPyWire(nc) if wire is None else wire
        self.js = nc.jetstream(timeout=READ_TIMEOUT)
        suffix = _safe(f"{lattice}_{provider_id}")
        self.stream = f"WSP_HIST_{suffix}"
        self.bucket = f"WSP_SESS_{suffix}"
        self.prefix = f"wsp.{lattice}.{provider_id}.h"
        self._window = 0.0
        self.refresh_interval = 0.0
        self._per_session = 0
        self._appends = AppendPipeline(self.wire, APPEND_TIMEOUT, MAX_IN_FLIGHT, MAX_WAITING_BYTES)
        #: Sessions with an append in flight -> the batch collecting behind it (None: none
        #: yet).
        self._busy: dict[str, Batch | None] = {}

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

    def append(self, session_id: str, seq: int, message: MessageTemplate) -> Stored:
        """Store message `seq` of a session; over when JetStream has it (or failed: then
        logged, and the frame goes out anyway — only a resume elsewhere is affected).
        Behind an append of the session still in flight, it joins the next batch."""
        record = [seq, message.subject, message.body, message.reply_to]
        busy = self._busy
        if session_id in busy:
            batch = busy[session_id]
            if batch is None:
                batch = busy[session_id] = Batch()
            batch.records.append(record)
            return batch.stored
        payload = msgpack.packb(record, use_bin_type=True)
        stored = self._appends.append(f"{self.prefix}.{session_id}", payload)
        if not stored.done:
            busy[session_id] = None
            stored.then(partial(self._next_batch, session_id))
        return stored

    def _next_batch(self, session_id: str, ok: bool) -> None:
        """A session's append is over: publish the batch that collected behind it."""
        batch = self._busy.pop(session_id, None)
        if batch is None:
            return
        if not ok:
            # Failed or timed out: the store is not taking writes now; the frames waiting
            # go out without another wait (a hole in the stored history, as for the first).
            batch.stored.set(False)
            return
        subject = f"{self.prefix}.{session_id}"
        # Within the server's max_payload: a big batch goes as several appends, in order; the
        # batch's outcome is the last one's (stored only if every one of them was).
        *first, last = _payloads(batch.records, self.wire.max_payload - PAYLOAD_MARGIN)
        earlier = [self._appends.append(subject, payload) for payload in first]
        stored = self._appends.append(subject, last)
        if earlier:
            stored.then(lambda ok: batch.stored.set(ok and all(e.ok for e in earlier)))
        else:
            stored.then(batch.stored.set)
        if not stored.done:
            self._busy[session_id] = None
            stored.then(partial(self._next_batch, session_id))

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
            for seq, msg_subject, body, reply_to in _records(raw.data):
                last = max(last, int(seq))
                if seq > after:
                    out.append((int(seq), MessageTemplate(msg_subject, bytes(body), reply_to)))
            stream_seq = int(raw.seq or 0) + 1
        # In seq order: a batch of the session's previous instance, acknowledged late, can
        # have been stored after the first messages of its new one.
        out.sort(key=lambda entry: entry[0])
        if self._per_session and len(out) > self._per_session:
            # The stream keeps RESUME_HISTORY_MESSAGES messages per session: batches hold more.
            out = out[-self._per_session :]
        return out, last

    async def last_seq(self, session_id: str) -> int:
        """The seq of the newest stored message of a session (0: none)."""
        try:
            raw = await self.js.get_last_msg(self.stream, f"{self.prefix}.{session_id}")
        except NotFoundError:
            return 0
        records = _records(raw.data)
        return int(records[-1][0]) if records else 0

    # --- session state -----------------------------------------------------------------------

    def save_state(self, record: SessionRecord) -> None:
        """Write a session's record (fire and forget; ordered with the appends)."""
        if not self.wire.is_connected:
            return  # written again on the next change or refresh
        data = record.to_bytes(updated_at=time.time())
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
        """A session ended for good: drop its state and history (queued now, in order with
        the writes before)."""
        batch = self._busy.pop(session_id, None)
        if batch is not None:
            batch.stored.set(False)  # not worth storing any more: its frames go out
        wire = self.wire
        with contextlib.suppress(Exception):  # lost connection: the records expire instead
            # The KV purge as a plain publish (the KV wire protocol), sent at once and in
            # order with the writes: no instance can move the ended session in after it.
            wire.publish(
                f"$KV.{self.bucket}.{session_id}",
                b"",
                headers={"KV-Operation": "PURGE", "Nats-Rollup": "sub"},
            )
        # The stream purge, a JetStream API request, once the appends made so far (the
        # session's last ones among them) are stored; its answer comes to the append inbox
        # under a token the appends never use.
        purge = json.dumps({"filter": f"{self.prefix}.{session_id}"}).encode()
        self._appends.after_pending(partial(self._purge, purge))

    def _purge(self, request: bytes) -> None:
        with contextlib.suppress(Exception):  # lost connection: the history expires instead
            self.wire.publish(
                f"$JS.API.STREAM.PURGE.{self.stream}", request, f"{self._appends.inbox}.purge"
            )

    async def flush(self, timeout: float = 0.2) -> None:
        """Wait up to `timeout` for background writes (shutdown)."""
        await self._appends.drain(timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.wire.flush(timeout), timeout)


class Batch:
    """A session's records waiting for its append in flight, stored together after it."""

    __slots__ = ("records", "stored")

    def __init__(self) -> None:
        self.records: list[list[Any]] = []
        self.stored = Stored()


def _payloads(records: list[list[Any]], limit: int) -> list[bytes]:
    """`records` as stored batches, each within `limit` bytes when its records allow (a
    record bigger than that alone goes alone, and the store refuses it)."""
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


def _records(data: bytes | None) -> list[list[Any]]:
    """The records of one stored message: one record, or a batch of them."""
    value = msgpack.unpackb(data or b"", raw=False)
    if isinstance(value, list) and value and isinstance(value[0], list):
        return value
    return [value]
