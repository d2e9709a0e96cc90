"""A session moving between instances of one provider: both sides of the protocol.

"Move" is the one word for a session changing instance (docs/RESUME.md, "Finding a session
that is not here"). Its client resumes on instance B while instance A holds it:

1. B asks A: a NATS request on the session's subject `….s.{session id}` (op `handover`, the
   wire name, kept for instances of earlier versions) with the token's secret, the endpoint
   and the identity. A checks them (`Holder.begin_move_out`), marks the session MOVING_OUT
   and answers with its `SessionRecord`, its history and a `claim_to` inbox.
2. B makes the session reachable (MOVING_IN: what arrives is kept), then *claims* it on
   `claim_to`, giving a `drained_to` inbox.
3. A lets go if the claim came within MOVE_TIMEOUT and what reached it meanwhile fits one
   message (`Holder.finish_move_out`): it answers with those messages, delivers what the
   client had sent it, then says so on `drained_to` (B's component gets nothing from the new
   connection before that). Otherwise it answers `refused` and keeps the session, detached.

When no instance holds the session (its holder crashed or restarted), B moves it in from the
JetStream store instead (`MoveRequester.fetch`); a publish to such an orphaned session moves
it in, detached, on the instance that receives the publish (`MoveRequester.find_orphan`,
then `Holder.move_in_orphan`).

The NATS side is split by direction, like the cluster bus: `MoveRequester` asks (the new
holder's side, part of the outgoing `cluster.ClusterLink`), `MoveResponder` answers (the old
holder's side, part of the incoming `cluster_inbox.ClusterInbox`, holding the `Holder`). The
decisions about the session itself (checks, states, tables) are the `Holder`'s (the
ServerHub; session_moves.py). Every NATS callback here only hands off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError

from wasmcloud_provider_sdk import BrokerMessage

from .buswire import BusMessage, pack_map, unpack_map
from .frames import MessageTemplate
from .history import ResumeRequest
from .lifecycle import SessionRecord

if TYPE_CHECKING:
    from .jsstore import HistoryStore

log = logging.getLogger(__name__)

#: The `op` of a move request on a session's subject (its wire name since the first version).
MOVE_OP = "handover"
#: How long the old holder waits for the new one to claim a moving session (the new holder
#: waits a little longer for the answer: the old one decides).
MOVE_TIMEOUT = 5.0
#: How long the new holder waits for the old one's first answer.
ASK_TIMEOUT = 2.0
#: How long an instance remembers that a session moved out (late sends follow it).
MOVED_MEMORY = 60.0

PairKey = tuple[str, str]
#: Claims a session from its old holder once it is reachable here; sets the event when the
#: old holder delivered what the client had sent it. The answer: what reached the old holder
#: meanwhile, or None (the old holder kept the session, or is gone).
Claim = Callable[[asyncio.Event], Awaitable[list[MessageTemplate] | None]]


@dataclass(frozen=True, slots=True)
class SessionMove:
    """A session moving in: from a live instance (with `claim`) or from the store."""

    record: SessionRecord
    #: Kept messages (seq, message), oldest first.
    history: list[tuple[int, MessageTemplate]]
    #: The highest seq that cannot be replayed any more.
    dropped_upto: int
    #: The last seq sent to the session.
    last_seq: int
    #: False when the history did not fit the old holder's answer (then read from the store).
    complete: bool = True
    claim: Claim | None = None

    @property
    def seq(self) -> int:
        """The seq the session continues from."""
        return max(self.record.seq, self.last_seq)


class Holder(Protocol):
    """What the move protocol needs of this instance's sessions (`server.ServerHub`, given to
    `MoveResponder.start`)."""

    @property
    def endpoints(self) -> Mapping[PairKey, object]:
        """The endpoints served here, by (component id, link name)."""
        ...

    def holds(self, session_id: str) -> bool:
        """Is the session held here?"""
        ...

    def ended_here(self, session_id: str) -> bool:
        """Did the session end here (recently)?"""
        ...

    def recently_moved_out(self, session_id: str) -> bool:
        """Did the session move out of this instance lately (late sends follow it)?"""
        ...

    def begin_move_out(
        self, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | None:
        """Check a move request and mark the session MOVING_OUT; None: refused."""
        ...

    async def finish_move_out(
        self,
        session_id: str,
        claimed: bool,
        max_bytes: int,
        on_drained: Callable[[], Awaitable[None]] | None = None,
    ) -> list[MessageTemplate] | None:
        """Let the session go (what reached it meanwhile) or keep it (None)."""
        ...

    def resolve_moved_request(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A client answered, on its new instance, a request made here before it moved."""
        ...

    async def move_in_orphan(self, move: SessionMove) -> bool:
        """Hold a session whose instance is gone, detached; False when it cannot be."""
        ...


class MoveRequester:
    """The new holder's side of a move over the lattice NATS (outgoing: it asks, and is
    called by the hub and the exports; nothing it holds calls it back)."""

    def __init__(self, nc: NatsClient, base: str, store: HistoryStore | None) -> None:
        self.nc = nc
        self.base = base
        self.store = store

    # --- the new holder -----------------------------------------------------------------------

    async def fetch(
        self, session_id: str, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | None:
        """A session this instance does not hold, for a resume here: from the instance that
        holds it, else (its holder is gone: a crash, a restart) from the JetStream store."""
        answer = await self._ask(session_id, req, key, identity)
        store = self.store
        if answer is False:
            return None  # held elsewhere, but refused (token, endpoint or identity)
        if isinstance(answer, SessionMove):
            if not answer.complete and store is not None:
                try:
                    # The holder's history did not fit in its answer: its journal has it.
                    stored = await store.load_state(session_id)
                    journal = stored.journal if stored is not None else ""
                    entries, last = await store.history(session_id, req.last_seq, journal)
                except Exception as exc:
                    log.warning("resume of %s: history not readable: %s", session_id, exc)
                    entries, last = [], answer.last_seq
                answer = dataclasses.replace(
                    answer,
                    history=entries,
                    dropped_upto=req.last_seq,
                    last_seq=max(answer.last_seq, last),
                )
            return answer
        if store is None:
            return None
        try:
            record = await store.load_state(session_id)
            if record is None:
                return None
            entries, last = await store.history(session_id, req.last_seq, record.journal)
        except Exception as exc:
            log.warning("resume of %s: the JetStream store is not reachable: %s", session_id, exc)
            return None
        return SessionMove(record, entries, req.last_seq, max(record.seq, last))

    async def _ask(
        self, session_id: str, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | bool | None:
        """Ask the instance holding a session to move it here: the session (with its `claim`),
        False when that instance refused (token, endpoint or identity do not match), None
        when no instance holds it."""
        payload = {
            "op": MOVE_OP,
            "sid": session_id,
            "secret": req.secret,
            "last_seq": req.last_seq,
            "component": key[0],
            "link": key[1],
            "identity": identity,
        }
        try:
            reply = await self.nc.request(
                f"{self.base}.s.{session_id}", pack_map(payload), timeout=ASK_TIMEOUT
            )
            obj = unpack_map(reply.data, "move message")
        except NoRespondersError:
            return None
        except Exception as exc:
            log.warning("resume of %s: the holding instance did not answer: %s", session_id, exc)
            return False  # it may hold the session: do not take it from the store
        if "err" in obj or not isinstance(obj.get("state"), dict):
            return False
        history = [
            (int(q), MessageTemplate(str(subj), bytes(body), reply_to))
            for q, subj, body, reply_to in obj.get("history") or []
        ]
        claim_to = str(obj.get("claim_to") or "")
        return SessionMove(
            SessionRecord.from_map(obj["state"]),
            history,
            int(obj.get("dropped_upto") or 0),
            int(obj.get("last_seq") or 0),
            bool(obj.get("complete", True)),
            self._claimer(session_id, claim_to) if claim_to else None,
        )

    def _claimer(self, session_id: str, claim_to: str) -> Claim:
        async def claim(drained: asyncio.Event) -> list[MessageTemplate] | None:
            # The old holder says when it has delivered what the client had sent it.
            drained_to = self.nc.new_inbox()

            async def on_drained(_msg: Msg) -> None:
                drained.set()

            drained_sub = await self.nc.subscribe(drained_to, cb=on_drained, max_msgs=1)
            try:
                reply = await self.nc.request(
                    claim_to,
                    pack_map({"drained_to": drained_to}),
                    timeout=MOVE_TIMEOUT + ASK_TIMEOUT,  # the old holder decides first
                )
                answer = unpack_map(reply.data, "move message")
                if answer.get("refused") or "buffered" not in answer:
                    raise ValueError("the old holder kept the session")
                return [
                    MessageTemplate(str(subj), bytes(body), reply_to, mid)
                    for subj, body, reply_to, mid in answer["buffered"]
                ]
            except Exception as exc:
                log.warning("session %s: claim failed: %s", session_id, exc)
                with contextlib.suppress(Exception):
                    await drained_sub.unsubscribe()
                drained.set()
                return None

        return claim

    async def held_elsewhere(self, session_id: str) -> bool:
        """Does another instance hold this session? (A failed probe counts as yes: better a
        refused publish than two instances holding one session.)"""
        try:
            await self.nc.request(
                f"{self.base}.s.{session_id}", pack_map({"op": "ping"}), timeout=ASK_TIMEOUT
            )
        except NoRespondersError:
            return False
        except Exception:
            return True
        return True

    async def find_orphan(
        self, session_id: str, serves: Callable[[PairKey], bool]
    ) -> SessionMove | None:
        """No instance answered for `session_id`: the session as the store knows it (its
        holder crashed or was restarted inside the resume window), if an endpoint this
        instance `serves` is its own and no instance holds it; None otherwise. The caller
        moves it in, detached (`Holder.move_in_orphan`)."""
        store = self.store
        if store is None:
            return None
        try:
            record = await store.load_state(session_id)
            if record is None or not serves(record.key):
                return None
            if await self.held_elsewhere(session_id):
                return None  # its holder is alive (the session is just not yours to reach)
            entries, last = await store.history(session_id, 0, record.journal)
        except Exception as exc:
            log.warning("session %s: the JetStream store is not reachable: %s", session_id, exc)
            return None
        seq = max(last, record.seq)
        dropped = entries[0][0] - 1 if entries else seq
        return SessionMove(record, entries, dropped, seq)

    async def send_answer_back(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A moved-in session's client answered a request made on its old instance."""
        payload = {
            "sid": session_id,
            "token": token,
            "subject": answer.subject,
            "body": answer.body,
            "reply_to": answer.reply_to,
        }
        with contextlib.suppress(Exception):
            await self.nc.publish(f"{self.base}.answers", pack_map(payload))


class MoveResponder:
    """The old holder's side of a move over the lattice NATS (incoming: NATS calls it; it
    holds this instance's sessions, the `Holder`, and is held by the cluster's inbox)."""

    def __init__(self, nc: NatsClient, base: str) -> None:
        self.nc = nc
        self.base = base
        #: This instance's sessions (given by `start`).
        self._holder: Holder | None = None
        self._answers: Subscription | None = None

    @property
    def holder(self) -> Holder:
        """This instance's sessions (`start` gave them)."""
        if self._holder is None:
            raise RuntimeError("MoveResponder.start(holder) was not called")
        return self._holder

    async def start(self, holder: Holder) -> None:
        """Serve `holder`'s side of moves; subscribe the subject on which answers to
        moved-out requests come back."""
        self._holder = holder
        self._answers = await self.nc.subscribe(f"{self.base}.answers", cb=self._on_answer)

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._answers is not None:
            with contextlib.suppress(Exception):
                await self._answers.unsubscribe()
            self._answers = None

    # --- the old holder -----------------------------------------------------------------------

    async def _on_answer(self, msg: Msg) -> None:
        try:
            req = unpack_map(msg.data, "move message")
            answer = BrokerMessage(str(req["subject"]), bytes(req["body"]), req.get("reply_to"))
            self.holder.resolve_moved_request(str(req["sid"]), str(req["token"]), answer)
        except Exception as exc:
            log.warning("bad answer from a moved session: %s", exc)

    async def answer_move(self, msg: BusMessage, req: Mapping[str, Any]) -> None:
        """Another instance asks for a session held here (step 1 of the module's protocol).
        Answer at once (no wait for the component), then keep the session MOVING_OUT until
        the new holder claims it: targeted sends wait and follow it, fan-out messages go to
        the new holder with the answer to its claim. Runs in a task, never in a callback."""
        holder = self.holder
        if not msg.reply:
            return
        try:
            resume = ResumeRequest(str(req["sid"]), str(req["secret"]), int(req["last_seq"]))
            key = (str(req["component"]), str(req["link"]))
            identity = req.get("identity")
            move = holder.begin_move_out(resume, key, None if identity is None else str(identity))
        except Exception as exc:
            log.warning("bad move request: %s", exc)
            move = None
        if move is None:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, pack_map({"err": "refused"}))
            return
        claim_to = self.nc.new_inbox()
        claim_sub = await self.nc.subscribe(claim_to, max_msgs=1)
        reply: dict[str, Any] = {
            "state": move.record.to_map(),
            "history": [[q, m.subject, m.body, m.reply_to] for q, m in move.history],
            "dropped_upto": move.dropped_upto,
            "last_seq": move.last_seq,
            "complete": True,
            "claim_to": claim_to,
        }
        data = pack_map(reply)
        if len(data) > self.nc.max_payload:  # the store (if any) has the history
            reply.update(history=[], dropped_upto=reply["last_seq"], complete=False)
            data = pack_map(reply)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MOVE_TIMEOUT
        claimed = None
        try:
            await self.nc.publish(msg.reply, data)
            claimed = await claim_sub.next_msg(timeout=MOVE_TIMEOUT)
        except Exception as exc:
            log.warning(
                "session %s: the move to another instance failed: %s", resume.session_id, exc
            )
        if claimed is not None and loop.time() > deadline:
            claimed_in_time = False  # read too late (e.g. this process stalled): keep it
            log.warning(
                "session %s: the move to another instance failed: claimed too late, kept here",
                resume.session_id,
            )
        else:
            claimed_in_time = claimed is not None
        drained_to = ""
        if claimed is not None:
            with contextlib.suppress(Exception):
                drained_to = str(unpack_map(claimed.data, "move message").get("drained_to") or "")

        async def drained() -> None:
            if drained_to:
                await self.nc.publish(drained_to, b"")

        buffered = await holder.finish_move_out(
            resume.session_id, claimed_in_time, self.nc.max_payload // 2, drained
        )
        with contextlib.suppress(Exception):
            await claim_sub.unsubscribe()
        if claimed is not None and claimed.reply:
            if buffered is None:
                answer = pack_map({"refused": True})
            else:
                entries = [[m.subject, m.body, m.reply_to, m.mid] for m in buffered]
                answer = pack_map({"buffered": entries})
            with contextlib.suppress(Exception):
                await self.nc.publish(claimed.reply, answer)
