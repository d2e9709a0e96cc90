"""One client connection's life on a server endpoint, from handshake to close.

`Connections.serve` opens a session (new, resumed here, or moved in from elsewhere), sends
the welcome and what the client missed, reads frames until the connection ends (what a frame
asks for is `inbound.decide`'s; this carries it out), then detaches the session for a resume
or ends it. The listener hands each accepted connection here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wasmcloud_provider_sdk import BrokerMessage

from . import frames, inbound
from .auth import Identity
from .closecodes import CloseCode
from .component_calls import ComponentCalls
from .errors import FrameError
from .frames import MessageTemplate
from .history import ResumeRequest, new_resume_token, parse_resume
from .ids import new_session_id
from .lifecycle import SessionState, transition
from .listener import remote_addr, remote_ip, wants_msgpack
from .metrics import Metrics
from .outbound import Outbound, send_error
from .peers import Peers
from .persistence import SessionPersistence
from .resume import Found, Resumes
from .session_counts import address_of
from .session_moves import SessionMoves
from .session_table import (
    Endpoint,
    PairKey,
    SessionTable,
    offer_detached_event,
    wait_closed,
)
from .sessions import Session
from .topics import IndexFull
from .wsadapter import close_info, receive
from .wsfastread import FastReadConnection, Sink

log = logging.getLogger(__name__)

SESSION_CONNECTED = "ws.session.connected"
SESSION_RESUMED = "ws.session.resumed"


class Connections:
    """Serves the connections of this instance's server endpoints (a listener's host)."""

    def __init__(
        self,
        tables: SessionTable,
        resumes: Resumes,
        moves: SessionMoves,
        outbound: Outbound,
        calls: ComponentCalls,
        persistence: SessionPersistence,
        peers: Peers,
        readiness_check: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.tables = tables
        self.resumes = resumes
        self.moves = moves
        self.outbound = outbound
        self.calls = calls
        self.persistence = persistence
        self.peers = peers
        self.metrics: Metrics = tables.metrics
        #: Extra readiness condition (the provider under a host: lattice NATS connected).
        self.readiness_check = readiness_check
        #: Answers the fast read path sends to another instance (kept until done).
        self._answers: set[asyncio.Future[None]] = set()
        self._fast_sink: Sink = self._take_fast  # one bound method for every connection

    # --- what a listener asks of its host ------------------------------------------------------

    @property
    def endpoints(self) -> Mapping[PairKey, Endpoint]:
        """The endpoints served now, by key."""
        return self.tables.endpoints

    def readiness(self) -> tuple[bool, str]:
        """Ready to take clients? (`/readyz`: not while shutting down, nor while the provider
        is not connected to its lattice, so a load balancer sends clients elsewhere.)"""
        if self.tables.closing:
            return False, "shutting down"
        check = self.readiness_check
        if check is not None:
            return check()
        return True, "ready"

    def make_room(self, endpoint: Endpoint, ip: str) -> bool:
        """End the oldest detached session of `ip` on `endpoint`; False if it has none."""
        return self.tables.make_room(endpoint, ip)

    async def run_session(
        self, endpoint: Endpoint, ws: ServerConnection, identity: Identity | None = None
    ) -> None:
        """Serve one connection from handshake to close: a new session, or a resumed one."""
        settings = endpoint.settings
        tables = self.tables
        binary = wants_msgpack(ws)
        identity_key = identity.subject if identity is not None else None
        asked: ResumeRequest | str | None = None
        if settings.resumable and ws.request is not None:
            asked = parse_resume(ws.request.path)
        session: Session | None = None
        replay: list[tuple[int, MessageTemplate]] | None = None
        if isinstance(asked, ResumeRequest):
            found: Found | None
            try:
                found = await self.resumes.find(endpoint, asked, identity_key)
            except Exception:  # bad stored or handed-over data: a new session, said so
                log.exception("resume of %s failed", asked.session_id)
                found = None
            if found is not None:
                session, replay = found
        elif isinstance(asked, str):
            log.info("resume refused on %s: %s", settings.path, asked)
        resumed = session is not None
        moved_in: list[MessageTemplate] = []
        # Admitted as a resume (which adds no session), but it is not one: a new session must
        # pass the capacity checks a new client passes.
        if (
            session is None
            and isinstance(asked, ResumeRequest)
            and (
                endpoint.live_sessions >= settings.max_sessions
                or not tables.room_for(endpoint, remote_ip(ws))
            )
        ):
            await ws.close(CloseCode.TRY_AGAIN, "no room for a new session, try again later")
            return
        if session is None:
            session = tables.new_session(endpoint, ws, new_session_id(), binary)
            session.identity_key = identity_key
            self.metrics.connects += 1
        elif tables.sessions.get(session.id) is session:
            session.attach(ws, binary, remote_addr(ws))  # resumed here
            endpoint.detached.pop(session.id, None)
        else:
            session.ws, session.binary = ws, binary  # moved in from elsewhere
            session.remote_addr = remote_addr(ws)
            session.detached_at = None
            claim, session.pending_claim = session.pending_claim, None
            # From a live instance: reachable here first (what arrives meanwhile is kept),
            # then claimed; the client learns nothing (no new token) before that worked.
            # From the store (no live holder): the same steps with nothing to claim, so that
            # the session is held here, keeping what arrives, while it becomes reachable.
            claimed = await self.moves.move_in(endpoint, session, claim or nothing_to_claim)
            if claimed is None:
                await ws.close(CloseCode.TRY_AGAIN, "session is moving, resume again")
                return
            moved_in = claimed
            transition(session, SessionState.OPEN)
        fresh = session.id not in endpoint.sessions
        if fresh and settings.session_tracking:
            # A new session: reachable from the other instances before the client learns its
            # id (the client, or whoever it tells, may have the component publish to it at
            # once, and that call may land on another instance). Nobody can reach it here
            # meanwhile: nobody knows its id. It counts toward MAX_SESSIONS_PER_IP from
            # before that wait: other connections from its address are admitted meanwhile.
            endpoint.addresses.count(session.id, address_of(session.remote_addr))
            try:
                await self.peers.session_id_opened(session.id, confirmed=True)
            except BaseException:
                endpoint.addresses.uncount(session.id)
                raise
            if tables.closing or tables.endpoints.get(endpoint.key) is not endpoint:
                endpoint.addresses.uncount(session.id)
                await self.peers.session_id_closed(session.id)
                await ws.close(CloseCode.GOING_AWAY, "server shutting down")
                return
        token = None
        if settings.resumable:
            token, session.resume_hash = new_resume_token(session.id)
        # The welcome, then the replay, go out before anything else can be queued (no await
        # in between): the client sees its session id, then what it missed, then live traffic.
        if settings.welcome:
            session.send(
                frames.encode_welcome(
                    session.id,
                    session.binary,
                    seq=session.seq,
                    resume_token=token,
                    resume_window=settings.resume_window,
                    resumed=resumed if asked is not None else None,
                    recovered=replay is not None,
                )
            )
        for seq, message in replay or ():
            session.send(message.render(seq, session.binary))
        for message in moved_in:  # what reached the session while it moved, in order
            self.outbound.send(session, message)
        if asked is not None:
            outcome = "recovered" if replay is not None else ("resumed" if resumed else "new")
            self.metrics.resumes[outcome] += 1
        if fresh:
            await tables.register(endpoint, session)
            self.calls.start(endpoint, session)
        self.persistence.save(session)
        log.debug(
            "session %s %s from %s on %s",
            session.id,
            "resumed" if resumed else "opened",
            session.remote_addr,
            settings.path,
            extra=session.log_fields,
        )
        try:
            if settings.session_events and endpoint.handler is not None:
                event: dict[str, Any] = {
                    "session_id": session.id,
                    "remote_addr": session.remote_addr,
                    "identity": identity.to_json() if identity is not None else None,
                }
                subject = SESSION_CONNECTED
                if resumed:
                    subject = SESSION_RESUMED
                    event["recovered"] = replay is not None
                body = json.dumps(event).encode()
                await session.put_inbound(BrokerMessage(subject, body, session.id), None)
            await self._read_loop(endpoint, session, ws)
        finally:
            await self._connection_ended(endpoint, session, ws)

    async def _read_loop(self, endpoint: Endpoint, session: Session, ws: ServerConnection) -> None:
        idle = endpoint.settings.idle_timeout
        fast = ws if isinstance(ws, FastReadConnection) else None
        if fast is not None:
            fast.take_messages(self._fast_sink, (endpoint, session, ws))
        try:
            await self._read_from_library(endpoint, session, ws, fast, idle)
        finally:
            if fast is not None:
                fast.take_messages(None)

    async def _read_from_library(
        self,
        endpoint: Endpoint,
        session: Session,
        ws: ServerConnection,
        fast: FastReadConnection | None,
        idle: float | None,
    ) -> None:
        """Read the messages the library parsed (all of them without the fast path) until
        the connection ends; `idle`: IDLE_TIMEOUT_SEC, counting the fast path's messages."""
        wait = idle
        while True:
            if session.ws is not ws:
                return  # another connection resumed this session
            try:
                if wait is not None:
                    data = await asyncio.wait_for(receive(ws), wait)
                else:
                    data = await receive(ws)
            except TimeoutError:
                assert idle is not None
                quiet = time.monotonic() - fast.last_message_at if fast is not None else idle
                if quiet < idle:  # the fast path took a message meanwhile
                    wait = idle - quiet
                    continue
                session.close(CloseCode.NORMAL, "idle timeout")
                await wait_closed(session)
                return
            except ConnectionClosed:
                return
            wait = idle
            if data is None:
                session.counters.messages_in += 1
                send_error(self.metrics, session, inbound.NOT_UTF8.code, inbound.NOT_UTF8.message)
            else:
                if isinstance(data, str):
                    pending = self._take_frame(endpoint, session, data.encode(), False)
                else:
                    pending = self._take_frame(endpoint, session, data, True)
                if pending is not None:
                    await pending
            if fast is not None:
                fast.message_done()

    def _take_fast(
        self, owner: tuple[Endpoint, Session, ServerConnection], data: bytes, binary: bool
    ) -> None:
        """The fast path's sink (one for all sessions; `owner` says whose message):
        `_take_frame` without the library."""
        endpoint, session, ws = owner
        if session.ws is not ws:
            return  # another connection resumed this session: this one is on its way out
        if not binary and not data.isascii():
            try:
                data.decode()
            except UnicodeDecodeError:
                session.counters.messages_in += 1
                send_error(self.metrics, session, inbound.NOT_UTF8.code, inbound.NOT_UTF8.message)
                return
        pending = self._take_frame(endpoint, session, data, binary)
        if pending is not None:
            task = asyncio.ensure_future(pending)
            self._answers.add(task)
            task.add_done_callback(self._answer_sent)

    def _answer_sent(self, task: asyncio.Future[None]) -> None:
        self._answers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relaying a client's answer failed", exc_info=task.exception())

    def _take_frame(
        self, endpoint: Endpoint, session: Session, data: bytes, binary: bool
    ) -> Coroutine[Any, Any, None] | None:
        """One frame from the client: counted, rate limited, decoded, then what `inbound`
        decides is carried out here; what must wait (an answer for a request made on
        another instance) is returned to be awaited."""
        metrics = self.metrics
        session.counters.messages_in += 1
        session.counters.bytes_in += len(data)
        metrics.messages_in += 1
        metrics.bytes_in += len(data)
        limiter = session.limiter
        if limiter is not None and not limiter.allow(len(data), time.monotonic()):
            session.counters.rate_limited += 1
            metrics.rate_limited += 1
            refusal = inbound.rate_limited(limiter.strikes, endpoint.settings)
            if isinstance(refusal, inbound.CloseSession):
                log.info(
                    "session %s closed: rate limit exceeded %d times in a row",
                    session.id,
                    limiter.strikes,
                    extra=session.log_fields,
                )
                session.close(refusal.code, refusal.reason)
                return None
            send_error(metrics, session, refusal.code, refusal.message, refusal.frame_id)
            return None
        try:
            frame = frames.decode_frame(data, binary, max_body=endpoint.settings.max_message_bytes)
        except FrameError as exc:
            send_error(metrics, session, exc.code, exc.message, exc.frame_id)
            return None
        action = inbound.decide(
            frame,
            session.id,
            session.subscriptions,
            session.pending_requests,
            endpoint.settings,
            moved_in=session.moved_in,
            has_handler=endpoint.handler is not None,
        )
        if type(action) is inbound.ToComponent:  # the hot path first
            if not session.offer_inbound(action.message, action.frame_id):
                # Keep reading (pongs and request answers must get through); tell the client
                # this message was not taken, rather than stalling the whole connection.
                refused = inbound.overloaded(endpoint.settings, action.frame_id)
                send_error(metrics, session, refused.code, refused.message, refused.frame_id)
        elif isinstance(action, inbound.AnswerRequest):
            pending = session.pending_requests.pop(action.token, None)
            if pending is not None and not pending.done():
                pending.set_result(action.answer)
        elif isinstance(action, inbound.AnswerElsewhere):
            return self.peers.send_answer_back(session.id, action.token, action.answer)
        elif isinstance(action, inbound.AddSubscription):
            try:
                self.tables.topics.add(action.pattern, session.id)
            except IndexFull as exc:
                log.warning("subscription refused: %s", exc, extra=session.log_fields)
                refused = inbound.index_full(str(exc), action.frame_id)
                send_error(metrics, session, refused.code, refused.message, refused.frame_id)
                return None
            session.subscriptions.add(action.pattern)
        elif isinstance(action, inbound.RemoveSubscription):
            session.subscriptions.discard(action.pattern)
            self.tables.topics.remove(action.pattern, session.id)
        elif isinstance(action, inbound.SendError):
            send_error(metrics, session, action.code, action.message, action.frame_id)
        return None

    async def _connection_ended(
        self, endpoint: Endpoint, session: Session, ws: ServerConnection
    ) -> None:
        """A connection ended: detach its session for a resume, or end it."""
        if session.ws is not ws:
            return  # a resuming connection took the session over
        tables = self.tables
        await tables.teardown.turn()  # thousands at once: spread over loop iterations
        if session.ws is not ws:
            return
        code, reason = close_info(ws)
        self.metrics.disconnects[code] += 1
        settings = endpoint.settings
        keep = (
            settings.resumable
            and tables.endpoints.get(endpoint.key) is endpoint
            and (session.resumable or (session.close_code is None and code != CloseCode.NORMAL))
        )
        if not keep:
            await tables.end_session(endpoint, session, code, reason)
            return
        self.metrics.bytes_out_closed += session.counters.bytes_out
        session.counters.bytes_out = 0
        session.detach()
        self.persistence.save(session)
        if tables.closing:
            return  # shutting down: the store keeps the session for another process
        tables.keep_detached(endpoint, session)
        offer_detached_event(endpoint, session, code, reason)
        tables.expire_later(endpoint, session, code, reason)
        log.debug(
            "session %s detached (%s %s): resumable for %gs",
            session.id,
            code,
            reason,
            settings.resume_window,
            extra=session.log_fields,
        )


async def nothing_to_claim(inbound_gate: asyncio.Event) -> list[MessageTemplate]:
    """The claim of a session moved in from the store: no old holder to ask or wait for."""
    inbound_gate.set()
    return []
