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
out, so the stored history is never behind what a client saw.
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
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from .frames import MessageTemplate
from .lifecycle import SessionRecord

log = logging.getLogger(__name__)

#: The stream's total size cap (all sessions): bounds the disk and memory JetStream spends.
STREAM_MAX_BYTES = 256 * 1024 * 1024
#: How long an append may wait for JetStream before the frame goes out anyway.
APPEND_TIMEOUT = 2.0
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
        if not self.nc.is_connected:
            # The lattice is down: do not hold the frame back for a store that cannot answer
            # (the hole in the stored history makes a resume elsewhere say recovered: false).
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        payload = msgpack.packb(
            [seq, message.subject, message.body, message.reply_to], use_bin_type=True
        )
        return asyncio.ensure_future(self._append(f"{self.prefix}.{session_id}", payload))

    async def _append(self, subject: str, payload: bytes) -> None:
        try:
            await self.js.publish(subject, payload, timeout=APPEND_TIMEOUT)
        except Exception as exc:
            log.warning("could not store a message for session resume: %s", exc)

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
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.flush(), timeout)
