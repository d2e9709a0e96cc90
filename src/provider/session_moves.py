"""This instance's side of a session move: the decisions the move protocol asks of the holder.

moves.py carries a move over NATS (both instances); this module changes the session itself:
the old holder checks a move request and lets the session go (or keeps it), the new holder
makes it reachable and claims it. The steps are moves.py's module docstring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .closecodes import CloseCode
from .component_calls import ComponentCalls
from .frames import MessageTemplate
from .history import ResumeRequest
from .lifecycle import SessionState, may_resume, transition
from .moves import MOVED_MEMORY, Claim, SessionMove
from .outbound import Outbound
from .persistence import SessionPersistence, record_of
from .session_table import Endpoint, PairKey, SessionTable, offer_detached_event
from .sessions import Session

log = logging.getLogger(__name__)


class SessionMoves:
    """Moves of this instance's sessions to and from other instances."""

    def __init__(
        self,
        tables: SessionTable,
        outbound: Outbound,
        calls: ComponentCalls,
        persistence: SessionPersistence,
    ) -> None:
        self.tables = tables
        self.outbound = outbound
        self.calls = calls
        self.persistence = persistence
        #: Sessions that moved out of this instance: id -> when.
        self.moved_out: dict[str, float] = {}

    # --- the new holder -----------------------------------------------------------------------

    async def move_in(
        self, endpoint: Endpoint, session: Session, claim: Claim
    ) -> list[MessageTemplate] | None:
        """The new holder: make the session reachable here (keeping what arrives), claim it
        from the old holder, and return what to send, in order: what reached the old holder
        meanwhile, then what reached this one (each fan-out message once). None: the old
        holder kept it (or is gone): the session is not held here."""
        transition(session, SessionState.MOVING_IN)
        session.moving_buffer = []
        # Messages the client sent before it left are still with the old holder: the
        # component gets them (and their events) before anything from this connection.
        session.inbound_gate = asyncio.Event()
        # Reachable from every instance before the claim: the old holder lets go on it.
        await self.tables.register(endpoint, session, confirmed=True)
        self.calls.start(endpoint, session)
        buffered = await claim(session.inbound_gate)
        own, session.moving_buffer = session.moving_buffer, []
        if buffered is None:
            log.warning("session %s: the move from another instance failed", session.id)
            transition(session, SessionState.CLOSED)
            self.tables.unregister(endpoint, session)
            await self.tables.unreachable(session)
            session.cancel_tasks()
            return None
        seen = {m.mid for m in buffered if m.mid is not None}
        return buffered + [m for m in own if m.mid is None or m.mid not in seen]

    # --- the old holder -----------------------------------------------------------------------

    def begin_move_out(
        self, req: ResumeRequest, key: PairKey, identity_key: str | None
    ) -> SessionMove | None:
        """Another instance resumes this session: check everything, then stop serving it here
        (no await: nothing can slip in between) until it claims it or gives up."""
        session = self.tables.sessions.get(req.session_id)
        if session is None or session.state not in (SessionState.OPEN, SessionState.DETACHED):
            return None
        if not may_resume(record_of(session), req, key, identity_key):
            log.info("move refused: token does not match session %s", req.session_id)
            return None
        old = session.ws
        reason = "session resumed on another instance"
        if session.state is SessionState.OPEN:
            session.detach()
            endpoint = self.tables.endpoints.get(key)
            if endpoint is not None:
                offer_detached_event(endpoint, session, CloseCode.RESUMED_ELSEWHERE, reason)
        if old is not None:
            asyncio.get_running_loop().create_task(old.close(CloseCode.RESUMED_ELSEWHERE, reason))
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        history = session.history
        move = SessionMove(
            record_of(session),
            history.entries() if history is not None else [],
            history.dropped_upto if history is not None else session.seq,
            session.seq,
        )
        transition(session, SessionState.MOVING_OUT)
        session.moved = asyncio.Event()
        session.moving_buffer = []
        log.debug("session %s moving to another instance", session.id)
        return move

    async def finish_move_out(
        self,
        session_id: str,
        claimed: bool,
        max_bytes: int,
        on_drained: Callable[[], Awaitable[None]] | None = None,
    ) -> list[MessageTemplate] | None:
        """The old holder: the new holder claimed the session (give it up: return what came
        meanwhile), or did not in time, or what came does not fit one message to it (keep
        the session here, detached, as before: None)."""
        tables = self.tables
        session = tables.sessions.get(session_id)
        if session is None or session.state is not SessionState.MOVING_OUT:
            return None
        moved = session.moved
        endpoint = tables.endpoints.get((session.component_id, session.link_name))
        if endpoint is None:  # the link went away meanwhile: the session ends
            transition(session, SessionState.CLOSED)
            tables.unregister_everywhere(session)
            await tables.unreachable(session)
            session.cancel_tasks()
            if moved is not None:
                moved.set()
            return None
        buffered = session.moving_buffer
        if not claimed or sum(m.size for m in buffered) > max_bytes:
            if claimed:
                log.warning(
                    "session %s: %d messages arrived during its move, more than one message "
                    "to the new instance holds: kept here (the client resumes again)",
                    session.id,
                    len(buffered),
                )
            transition(session, SessionState.DETACHED)
            session.moving_buffer = []
            for message in buffered:
                self.outbound.send(session, message)
            self.persistence.save(session)
            tables.keep_detached(endpoint, session)
            tables.expire_later(endpoint, session, CloseCode.ABNORMAL, "")
            if moved is not None:
                moved.set()
            return None
        # Give it up: unsubscribe first (sends arriving meanwhile wait for `moved`), then
        # leave the tables, then let the waiters follow the session to its new holder.
        await tables.unreachable(session)
        transition(session, SessionState.CLOSED)
        tables.unregister(endpoint, session)
        self.moved_out[session.id] = time.monotonic()
        self.outbound.follow_requests(session)  # answered from the new holder
        if moved is not None:
            moved.set()

        async def wind_down() -> None:
            # What the client sent before it left still reaches the component, from here;
            # then the new holder may hand the component what comes from the new connection.
            await session.finish_inbound(None, endpoint.settings.handler_timeout)
            session.cancel_tasks()
            if on_drained is not None:
                try:
                    await on_drained()
                except Exception:  # the new holder stops waiting after its own timeout
                    log.debug("session %s: could not say it was drained", session.id)

        tables.spawn(wind_down())
        log.debug("session %s moved out to another instance", session.id)
        return buffered

    def recently_moved_out(self, session_id: str) -> bool:
        """Did the session move out of this instance in the last minute? (Sends that still
        reach it are forwarded to the new holder.)"""
        now = time.monotonic()
        for sid in [s for s, t in self.moved_out.items() if now - t > MOVED_MEMORY]:
            del self.moved_out[sid]
        return session_id in self.moved_out
