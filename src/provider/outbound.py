"""Sending to server-mode sessions: carrying out what `RoutingTable.route` decides.

README "Routing". `Outbound` gives messages to sessions (their client gets them) for
`consumer.publish`/`consumer.request` and the library API: one session (rule 1, following a
session that is moving to another instance), a fan-out (rule 3), a request and its answer.
"Send" is toward a client everywhere here; toward the component is `ComponentCalls.call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from wasmcloud_provider_sdk import BrokerMessage, Deferred, Err, Ok

from . import frames
from .errors import NoSuchSession
from .frames import MessageTemplate
from .ids import new_reply_token
from .lifecycle import MOVING, SessionState
from .metrics import Metrics
from .moves import MOVE_TIMEOUT
from .peers import Peers
from .routing import FanOut, RoutingTable, ToSession
from .session_table import Endpoint
from .sessions import Session, SessionInfo, SharedFrames
from .stored import Stored

#: The answer of every publish that went well (immutable, shared).
OK = Ok()

if TYPE_CHECKING:
    from .jsstore import HistoryStore


def send_error(
    metrics: Metrics,
    session: Session,
    code: str,
    message: str,
    frame_id: frames.FrameId | None = None,
) -> None:
    """Send the client an error frame (counted per session and per code)."""
    session.counters.errors_sent += 1
    metrics.errors[code] += 1
    session.send(frames.encode_error(code, message, frame_id, session.binary))


class Outbound:
    """Messages and requests to this instance's server-mode sessions."""

    def __init__(
        self,
        routes: RoutingTable[Session, Endpoint, Any],
        peers: Peers,
        metrics: Metrics,
        store: HistoryStore | None,
    ) -> None:
        self.routes = routes
        self.sessions = routes.sessions
        self.peers = peers
        self.metrics = metrics
        #: The JetStream store, when there is one (appends for persisted sessions).
        self._store = store
        #: Requests made here to sessions that moved out: the answer comes back via the
        #: cluster (`resolve_moved_request`). Token -> (session id, future).
        self.moved_requests: dict[str, tuple[str, asyncio.Future[BrokerMessage]]] = {}

    def _written_directly(self, session: Session) -> bool:
        """May a message to `session` skip `send` (open, and no JetStream append to wait
        for)? `Session.deliver_shared` then writes it, or queues it as `deliver` would."""
        return session.state is SessionState.OPEN and (self._store is None or not session.persist)

    def send(self, session: Session, message: MessageTemplate) -> tuple[bool, Stored | None]:
        """Give `session` the message with its next seq: (taken?, the store's append when the
        session's history is kept in JetStream — the frame waits for it)."""
        if session.state in MOVING:
            session.moving_buffer.append(message)  # sent when the move is over
            return True, None
        persisted = None
        store = self._store
        if session.persist and store is not None and session.accepts_messages:
            persisted = store.append(session.id, session.seq + 1, message)
        return session.deliver(message, persisted), persisted

    async def publish(
        self, component_id: str, msg: BrokerMessage, mid: str | None = None
    ) -> Ok | Err:
        """`consumer.publish` from `component_id` to this instance's server-mode sessions
        (routing rules 1 and 3). Returns once the message is queued for every target (and
        stored, where history is kept). `mid`: the id of a broadcast/topic publish (the same
        on every instance)."""
        target = self.routes.route(component_id, None, msg.subject)
        if isinstance(target, ToSession):
            return await self.publish_to_session(component_id, target, msg)
        if isinstance(target, FanOut):
            await self.fan_out(target.sessions, msg, mid)
            return Ok()
        return NoSuchSession.of(msg.subject.partition(".")[0])

    def publish_to_session_now(
        self, component_id: str, target: ToSession[Session], msg: BrokerMessage
    ) -> Ok | Err | Deferred[Ok | Err] | Awaitable[Ok | Err]:
        """`publish_to_session` without a coroutine when nothing needs waiting for (the
        usual case: the frame is queued or written now); a `Deferred` of it while a store
        append is waited for (answered from the acknowledgement's callback); an awaitable of
        it when the session is moving out."""
        session = target.session
        if session.state is SessionState.MOVING_OUT:
            return self.publish_to_session(component_id, target, msg)
        if not session.accepts_messages:
            return NoSuchSession.of(session.id)
        message = MessageTemplate(target.subject, msg.body, msg.reply_to)
        persisted: Stored | None = None
        if self._written_directly(session):
            taken = session.deliver_shared(message, None)  # the usual case: written now
        else:
            taken, persisted = self.send(session, message)
        result: Ok | Err = OK
        if taken:
            self.metrics.messages_out += 1
        else:
            result = NoSuchSession.of(session.id)
        if persisted is None or persisted.done:
            return result
        # Answered when the store has it, from the store's callback (no task).
        return Deferred(persisted, result)

    async def publish_to_session(
        self, component_id: str, target: ToSession[Session], msg: BrokerMessage
    ) -> Ok | Err:
        """Rule 1: `msg` to one session (queued, and stored where history is kept); a session
        moving to another instance is followed there."""
        session = target.session
        if session.state is SessionState.MOVING_OUT and await self._wait_move_out(session):
            return await self.peers.publish_remote(component_id, msg)  # it moved: follow it
        if not session.accepts_messages:
            return NoSuchSession.of(session.id)
        taken, persisted = self.send(
            session, MessageTemplate(target.subject, msg.body, msg.reply_to)
        )
        if persisted is not None and not persisted.done:
            await persisted.wait()
        if not taken:
            return NoSuchSession.of(session.id)
        self.metrics.messages_out += 1
        return Ok()

    async def fan_out(
        self, sessions: list[Session], msg: BrokerMessage, mid: str | None = None
    ) -> None:
        """Rule 3 (and the library's broadcast): `msg` to each of `sessions`, with its subject;
        returns once queued for each (and stored, where history is kept)."""
        # Encoded once per format (MessageTemplate), stamped with each session's seq; where
        # it is written at once, framed once per seq and format (`deliver_shared`).
        message = MessageTemplate(msg.subject, msg.body, msg.reply_to, mid)
        framed: SharedFrames = {}
        # The sessions' messages made in one loop step share one store outcome: wait once.
        pending: dict[int, Stored] = {}
        for session in sessions:
            if self._written_directly(session):
                session.deliver_shared(message, framed)
                continue
            _, persisted = self.send(session, message)
            if persisted is not None and not persisted.done:
                pending[id(persisted)] = persisted
        self.metrics.messages_out += len(sessions)
        if pending:
            await asyncio.gather(*(persisted.wait() for persisted in pending.values()))

    async def request(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` to one of this instance's server-mode sessions (rule 1)."""
        target = self.routes.route(component_id, None, subject)
        if isinstance(target, ToSession):
            return await self.request_session(component_id, target, subject, body, timeout_ms)
        if isinstance(target, FanOut):
            return Err(f"request needs a session id as subject (got {subject!r})")
        return NoSuchSession.of(subject.partition(".")[0])

    async def request_session(
        self,
        component_id: str,
        target: ToSession[Session],
        subject: str,
        body: bytes,
        timeout_ms: int,
    ) -> Ok | Err:
        """Send `target` a request with a fresh reply token and await the answer. (A detached
        session keeps the request; its client answers it after resuming.)"""
        session = target.session
        sid = session.id
        started = time.monotonic()
        if session.state is SessionState.MOVING_OUT and await self._wait_move_out(session):
            left = max(1, timeout_ms - int((time.monotonic() - started) * 1000))
            return await self.peers.request_remote(component_id, subject, body, left)
        if not session.accepts_messages:
            return NoSuchSession.of(sid)
        token = new_reply_token()
        future: asyncio.Future[BrokerMessage] = asyncio.get_running_loop().create_future()
        session.pending_requests[token] = future
        try:
            taken, _ = self.send(session, MessageTemplate(target.subject, body, token))
            if not taken:
                return NoSuchSession.of(sid)
            try:
                reply = await asyncio.wait_for(future, timeout_ms / 1000)
            except TimeoutError:
                return Err(f"timed out after {timeout_ms} ms waiting for session {sid}")
            except ConnectionError as exc:
                return Err(f"session {sid}: {exc}")
            return Ok(reply)
        finally:
            session.pending_requests.pop(token, None)
            self.moved_requests.pop(token, None)

    def follow_requests(self, session: Session) -> None:
        """The session moved out: its open requests are answered from its new holder."""
        for token, future in session.pending_requests.items():
            self.moved_requests[token] = (session.id, future)
        session.pending_requests.clear()

    def resolve_moved_request(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A client answered, on its new instance, a request made here before it moved."""
        entry = self.moved_requests.get(token)
        if entry is not None and entry[0] == session_id and not entry[1].done():
            entry[1].set_result(answer)

    async def _wait_move_out(self, session: Session) -> bool:
        """A targeted send to a session moving out: wait for the move to end (moved or kept:
        the move always says so, within MOVE_TIMEOUT); True if it left."""
        moved = session.moved
        if moved is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), 2 * MOVE_TIMEOUT)
        return self.sessions.get(session.id) is not session

    async def send_to_session(self, session_id: str, msg: BrokerMessage) -> Ok | Err:
        """Library API: one session, no isolation check (the caller is the operator)."""
        target = self.routes.session(session_id, msg.subject)
        if not isinstance(target, ToSession) or not target.session.accepts_messages:
            return NoSuchSession.of(session_id)
        session = target.session
        taken, persisted = self.send(
            session, MessageTemplate(target.subject, msg.body, msg.reply_to)
        )
        if persisted is not None and not persisted.done:
            await persisted.wait()
        return Ok() if taken else NoSuchSession.of(session_id)

    async def broadcast_all(self, msg: BrokerMessage) -> int:
        """Library API: every session of every endpoint; returns how many were sent to."""
        sessions = self.routes.everyone()
        await self.fan_out(sessions, msg)
        return len(sessions)

    def list_sessions(self, component_id: str | None = None) -> list[SessionInfo]:
        """Tracked sessions, optionally only those `component_id` may reach."""
        return [session.info() for session in self.routes.reachable_by(component_id)]
