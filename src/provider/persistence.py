"""Session state and history kept in JetStream, as the server side uses it.

`SessionPersistence` wraps the instance's `HistoryStore` (None: this process keeps sessions in
memory only) so that no other part checks whether there is a store: each call here does
nothing when there is none, or when the session's endpoint does not persist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .lifecycle import SessionRecord, SessionState
from .sessions import Session

if TYPE_CHECKING:
    from .jsstore import HistoryStore
    from .settings import ServerSettings

log = logging.getLogger(__name__)

#: How often the refresh loop yields to traffic while rewriting stored states.
REFRESH_BATCH = 500


def record_of(session: Session) -> SessionRecord:
    """What the store keeps and a move carries of a session."""
    return SessionRecord(
        session_id=session.id,
        component_id=session.component_id,
        link_name=session.link_name,
        subscriptions=tuple(sorted(session.subscriptions)),
        seq=session.seq,
        resume_hash=session.resume_hash,
        identity=session.identity_key,
        connected_at=session.connected_at,
        detached=session.state is not SessionState.OPEN,
    )


class SessionPersistence:
    """The JetStream side of resume for this instance's sessions (a no-op without a store)."""

    def __init__(self, store: HistoryStore | None) -> None:
        #: The JetStream store (None: sessions are kept in this process only).
        self.store = store
        self._refresh: asyncio.Task[None] | None = None

    async def offer(self, settings: ServerSettings, where: str) -> bool:
        """Make the store ready for an endpoint with these settings; True when its sessions
        are persisted (False: no store, no resume, RESUME_PERSIST off, or JetStream refused:
        then resume stays in this process, said in the log)."""
        store = self.store
        if store is None or not (settings.resumable and settings.resume_persist):
            return False
        try:
            await store.ensure(settings.resume_window, settings.resume_history_messages)
        except Exception as exc:
            log.warning(
                "session resume for %s stays in this process: JetStream refused the history "
                "stream or bucket (%s)",
                where,
                exc,
            )
            return False
        return True

    def save(self, session: Session) -> None:
        """Store the session's state now (in the background), if it is persisted."""
        if session.persist and self.store is not None:
            self.store.save_state(record_of(session))

    def adopt(self, session: Session) -> None:
        """The session moved in with its history: store that history in this process's
        journal, which its record names from now on."""
        if session.persist and self.store is not None and session.history is not None:
            self.store.adopt(session.id, session.history.entries())

    def forget(self, session: Session) -> None:
        """The session ended for good: no resume may load it (call before any await)."""
        if session.persist and self.store is not None:
            self.store.forget(session.id)

    def start_refresh(self, sessions: Mapping[str, Session]) -> None:
        """Keep the stored state of `sessions` (the live table) from expiring (once)."""
        if self._refresh is None and self.store is not None:
            loop = asyncio.get_running_loop()
            self._refresh = loop.create_task(self._refresh_loop(self.store, sessions))

    @staticmethod
    async def _refresh_loop(store: HistoryStore, sessions: Mapping[str, Session]) -> None:
        """Rewrite the stored state of connected sessions before its TTL (the resume window)
        ends, so that a session connected for longer can still be resumed after a crash."""
        while True:
            await asyncio.sleep(store.refresh_interval)  # a period, not a synchronisation
            for n, session in enumerate(list(sessions.values())):
                if session.persist and session.state is SessionState.OPEN:
                    await store.write_state(record_of(session))
                if n % REFRESH_BATCH == REFRESH_BATCH - 1:
                    await asyncio.sleep(0)  # let traffic through between batches

    def stop_refresh(self) -> None:
        """Stop the refresh loop (shutting down)."""
        if self._refresh is not None:
            self._refresh.cancel()

    async def flush(self, timeout: float) -> None:
        """Wait (up to `timeout`) for pending writes (shutting down)."""
        if self.store is not None:
            await self.store.flush(timeout)
