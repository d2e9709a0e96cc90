"""Finding the session a resuming client names: held here, moving in from another instance,
or moving in from the store; and holding a session whose instance is gone.

The checks (token, endpoint, identity) and what to replay are lifecycle.py's (`may_resume`,
`replay_for`); this module finds the session and rebuilds it when it comes from elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .closecodes import CloseCode
from .component_calls import ComponentCalls
from .frames import MessageTemplate
from .history import ResumeRequest
from .ids import looks_like_session_id
from .lifecycle import SessionState, may_resume, replay_for
from .moves import SessionMove
from .peers import Peers
from .persistence import SessionPersistence, record_of
from .session_table import Endpoint, SessionTable, offer_detached_event
from .sessions import Session

log = logging.getLogger(__name__)

#: A session to resume and what to replay to it (None: the gap cannot be covered).
Found = tuple[Session, list[tuple[int, MessageTemplate]] | None]


class Resumes:
    """Resume of this instance's sessions, and sessions moving in to be resumed here."""

    def __init__(
        self,
        tables: SessionTable,
        peers: Peers,
        calls: ComponentCalls,
        persistence: SessionPersistence,
    ) -> None:
        self.tables = tables
        self.peers = peers
        self.calls = calls
        self.persistence = persistence

    async def find(
        self, endpoint: Endpoint, req: ResumeRequest, identity_key: str | None
    ) -> Found | None:
        """The session a resume request names, with what to replay; None when there is no
        such session for this client (a new one starts)."""
        now = time.monotonic()
        tables = self.tables
        if tables.ended_here(req.session_id):
            log.info("resume refused: session %s has ended", req.session_id)
            return None
        session = tables.sessions.get(req.session_id)
        if session is not None:
            if session.state is not SessionState.OPEN and (
                session.state is not SessionState.DETACHED
            ):
                log.info("resume refused: session %s is closing or moving", req.session_id)
                return None
            if not may_resume(record_of(session), req, endpoint.key, identity_key):
                log.info("resume refused: token does not match session %s", req.session_id)
                return None
            if session.state is SessionState.OPEN:
                # The client is back before we noticed it had gone: the new connection wins.
                old = session.ws
                session.detach()
                reason = "session resumed on another connection"
                offer_detached_event(endpoint, session, CloseCode.RESUMED_ELSEWHERE, reason)
                if old is not None:
                    asyncio.get_running_loop().create_task(
                        old.close(CloseCode.RESUMED_ELSEWHERE, reason)
                    )
            return session, replay_for(session.history, req.last_seq, session.seq, now)
        move = await self.peers.fetch_move(req.session_id, req, endpoint.key, identity_key)
        if move is None:
            return None
        return self._rebuild(endpoint, move, req, identity_key)

    def _rebuild(
        self,
        endpoint: Endpoint,
        move: SessionMove,
        req: ResumeRequest,
        identity_key: str | None,
    ) -> Found | None:
        """A session moving in from another instance or from the store."""
        if not may_resume(move.record, req, endpoint.key, identity_key):
            log.info("resume refused: token does not match session %s", req.session_id)
            return None
        session = self._session_from(endpoint, move)
        session.identity_key = identity_key
        session.pending_claim = move.claim
        session.moved_in = move.claim is not None
        return session, replay_for(session.history, req.last_seq, session.seq, time.monotonic())

    def _session_from(self, endpoint: Endpoint, move: SessionMove) -> Session:
        """A detached session rebuilt from the record and history of a move."""
        record = move.record
        session = self.tables.new_session(
            endpoint, None, record.session_id, False, SessionState.DETACHED
        )
        session.connected_at = record.connected_at
        session.subscriptions = set(record.subscriptions)
        session.seq = move.seq
        history = session.ensure_history()
        if history is not None:
            history.restore(move.history, move.dropped_upto, time.monotonic())
            self.persistence.adopt(session)
        return session

    async def move_in_orphan(self, move: SessionMove) -> bool:
        """Move in a session whose holder is gone (crash, restart), detached: publishes to it
        are kept until its client resumes (with the token it has) or the window ends."""
        tables = self.tables
        record = move.record
        sid = record.session_id
        if sid in tables.sessions:
            return True
        endpoint = tables.endpoints.get(record.key)
        if endpoint is None or not looks_like_session_id(sid) or not endpoint.persist:
            return False
        session = self._session_from(endpoint, move)
        session.resume_hash = record.resume_hash  # the token its client has still works
        session.identity_key = record.identity
        await tables.register(endpoint, session)
        self.calls.start(endpoint, session)
        session.stop_writer()  # detached: no client to write to
        self.persistence.save(session)
        tables.keep_detached(endpoint, session)
        tables.expire_later(endpoint, session, CloseCode.ABNORMAL, "moved in from the store")
        log.info("session %s moved in from the store (its instance is gone): kept", sid)
        # Reachable from the other instances once the server confirms it; the session is
        # fully set up (detached, held here) before this waits.
        await self.peers.session_id_opened(sid, confirmed=True)
        return True
