"""Scale-out: instances of one provider id act as one, through the lattice's NATS.

README, "Running several instances".

Subjects, all under the provider's own prefix `wsp.{lattice}.{provider id}`:

* `….s.{session id}`: the instance holding a session subscribes it while the session lives
  (server sessions, and the tracked outbound connections of client-mode links).
  A targeted publish or request for a session held elsewhere is a NATS request there; "no
  responders" means no instance holds it: `NoSuchSession` (an `Err`).
* `….fanout`: every instance subscribes; a broadcast or topic publish is delivered locally,
  then published here once, and each other instance delivers it to its own sessions.
* `….list`: every instance answers with its sessions (`list_ws_clients(cluster=True)`).
* A session's subject also carries the requests that move a session to another instance,
  and `….answers` the answers its client gives there to requests made here (moves.py).

Payloads are MessagePack maps. The holder checks session isolation itself (the same links
reach every instance), so a component cannot reach another's sessions through a peer.

The bus is split by direction, so that no part both holds another and is called back by it:

* `ClusterLink` (here), outgoing: what the hub (as its `peers.Peers`), the exports and the
  client connections ask of the other instances. It holds the NATS connection and, to
  subscribe a session's subject, the incoming half's message callback; nothing it holds
  calls it.
* `cluster_inbox.ClusterInbox`, incoming: the NATS callbacks (targeted sends and requests
  for sessions held here, fan-out, list, moves, answers coming back). It holds this
  instance's `LocalCalls` and `moves.Holder` and only hands off to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from wasmcloud_provider_sdk import BrokerMessage, Err, Ok
from wasmcloud_provider_sdk.wire import Wire

from .buswire import BusMessage, pack_map, unpack_map
from .errors import NoSuchSession
from .history import ResumeRequest
from .moves import MOVE_TIMEOUT, MoveRequester, PairKey, SessionMove

if TYPE_CHECKING:
    from .jsstore import HistoryStore

log = logging.getLogger(__name__)

#: How long a targeted publish to another instance may take before it is an `Err`.
PUBLISH_TIMEOUT = 2.0
HOLDER_QUEUE = "holder"
#: How long a session's subscription may take to be confirmed by the server (PING/PONG).
SUBSCRIBE_CONFIRM_TIMEOUT = 2.0
#: How long `list_ws_clients(cluster=True)` collects answers from the other instances.
LIST_WINDOW = 0.25

LocalPublish = Callable[[str, BrokerMessage, str | None], Awaitable[Ok | Err]]
LocalRequest = Callable[[str, str, bytes, int], Awaitable[Ok | Err]]
LocalList = Callable[[], list[dict[str, Any]]]
#: The incoming half's callback for a session's subject (plain: it only hands off)...
MsgHandler = Callable[[BusMessage], None]
#: ...and the same as a coroutine function, as nats-py wants its callbacks.
NatsMsgHandler = Callable[[Msg], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LocalCalls:
    """How this instance carries out what the other instances pass on to it; `handover`
    serves a consumer call another instance handed over (`data`, `headers`, `reply` of the
    message: the SDK's `take_handover`)."""

    publish: LocalPublish
    request: LocalRequest
    list: LocalList
    handover: Callable[[bytes, Mapping[str, str], str], None] | None = None


def reply_for(result: Ok | Err) -> dict[str, Any]:
    """The answer to a targeted publish/request from another instance (see `result_of`)."""
    if isinstance(result, Err):
        return {"err": result.message}
    if isinstance(result.value, BrokerMessage):
        answer = result.value
        return {
            "answer": {
                "subject": answer.subject,
                "body": answer.body,
                "reply_to": answer.reply_to,
            }
        }
    return {"ok": True}


def result_of(obj: dict[str, Any]) -> Ok | Err:
    """What a targeted publish/request to another instance came to (its `reply_for`)."""
    if "err" in obj:
        return Err(str(obj["err"]))
    answer = obj.get("answer")
    if isinstance(answer, dict):
        return Ok(BrokerMessage(answer["subject"], answer["body"], answer.get("reply_to")))
    return Ok()


def bus_base(lattice: str, provider_id: str) -> str:
    """The prefix of every subject of one provider id's cluster bus."""
    return f"wsp.{lattice}.{provider_id}"


def publish_payload(component_id: str, msg: BrokerMessage) -> dict[str, Any]:
    """A targeted publish, as the holding instance reads it."""
    return {
        "op": "publish",
        "from": component_id,
        "subject": msg.subject,
        "body": msg.body,
        "reply_to": msg.reply_to,
    }


def request_payload(
    component_id: str, subject: str, body: bytes, timeout_ms: int
) -> dict[str, Any]:
    """A targeted request, as the holding instance reads it."""
    return {
        "op": "request",
        "from": component_id,
        "subject": subject,
        "body": body,
        "timeout_ms": timeout_ms,
    }


#: How long a targeted publish may take: the session may be moving out of its holder.
PUBLISH_DEADLINE = PUBLISH_TIMEOUT + MOVE_TIMEOUT


def request_deadline(timeout_ms: int) -> float:
    """How long a targeted request may take: the holder enforces `timeout_ms`; allow it the
    time to say so, and for a move."""
    return timeout_ms / 1000 + PUBLISH_TIMEOUT + MOVE_TIMEOUT


def too_big(nc: NatsClient, data: bytes) -> Err | None:
    """Err when `data` does not fit one message of the lattice NATS."""
    limit = nc.max_payload
    if len(data) > limit:
        return Err(
            f"message too large to forward to another instance ({len(data)} bytes; the "
            f"lattice NATS max_payload is {limit})"
        )
    return None


async def ask_holder(
    nc: NatsClient, base: str, sid: str, payload: dict[str, Any], timeout: float
) -> Ok | Err:
    """Send a targeted publish/request to the instance holding session `sid` now (used by
    the outgoing half, and by the incoming half to follow a session that just moved out)."""
    data = pack_map(payload)
    refused = too_big(nc, data)
    if refused is not None:
        return refused
    try:
        reply = await nc.request(f"{base}.s.{sid}", data, timeout=timeout)
    except NoRespondersError:
        return NoSuchSession.of(sid)
    except NatsTimeout:
        return Err(f"timed out reaching the instance that holds session {sid}")
    except Exception as exc:  # connection trouble: the caller gets a clear Err
        return Err(f"could not reach the other instances: {exc}")
    try:
        return result_of(unpack_map(reply.data, "cluster message"))
    except Exception as exc:
        return Err(f"bad answer from the instance holding {sid}: {exc}")


class ClusterLink:
    """The outgoing half of the cluster bus: what this instance asks of the other instances
    (the `peers.Peers` the hub is built with; the exports' and client connections' way out).

    It holds the NATS connection, the asking side of moves, and `on_session_message` (the
    incoming half's callback, given to NATS for the subject of each session held here); it
    never calls that callback, and nothing it holds calls it back.
    """

    def __init__(
        self,
        nc: NatsClient,
        base: str,
        instance_id: str,
        on_session_message: MsgHandler,
        on_session_nats_message: NatsMsgHandler,
        *,
        store: HistoryStore | None = None,
        wire: Wire | None = None,
    ) -> None:
        self.nc = nc
        #: The connection the sessions' subjects are subscribed on: our own NATS client
        #: (`Wire`) under a host, where a subscription is a dict entry and a callback (with
        #: nats-py each one is a queue and a task: ~4 KB for every session); else `nc`.
        self.wire = wire
        self.base = base
        self.instance_id = instance_id
        self._on_session_message = on_session_message
        self._on_session_nats_message = on_session_nats_message
        #: The asking side of moves (the new holder's).
        self.moves = MoveRequester(nc, base, store)
        self._session_subs: dict[str, Subscription | int] = {}

    async def stop(self) -> None:
        """Unsubscribe the sessions' subjects (connections close with the lattice connection)."""
        subs = list(self._session_subs.values())
        self._session_subs.clear()
        for sub in subs:
            with contextlib.suppress(Exception):
                await self._unsubscribe(sub)

    async def _unsubscribe(self, sub: Subscription | int) -> None:
        if isinstance(sub, int):
            if self.wire is not None:
                self.wire.unsubscribe(sub)
        else:
            await sub.unsubscribe()

    # --- sessions held here -------------------------------------------------------------------

    async def session_id_opened(self, session_id: str, confirmed: bool = False) -> None:
        """Make the local session (server or client mode) with this id reachable;
        `confirmed`: return once the server has the subscription (for a session someone may
        publish to as soon as this returns: one resumed or moved in here)."""
        if session_id in self._session_subs:
            if confirmed and self.wire is not None:
                await self._confirm(session_id)
            return
        # A queue group: while a session moves between instances both subscribe for a moment,
        # and each targeted send must reach one of them only.
        subject = f"{self.base}.s.{session_id}"
        if self.wire is not None:
            self._session_subs[session_id] = self.wire.subscribe(
                subject, self._on_session_message, HOLDER_QUEUE
            )
            if confirmed:
                await self._confirm(session_id)
            return
        sub = await self.nc.subscribe(subject, queue=HOLDER_QUEUE, cb=self._on_session_nats_message)
        if session_id in self._session_subs:  # subscribed meanwhile: one responder only
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            return
        self._session_subs[session_id] = sub

    async def _confirm(self, session_id: str) -> None:
        """Wait until the server has this connection's subscriptions (PING/PONG): a resumed
        client's welcome, or a move's claim (sent on the other connection), must not
        overtake the subscription, or a publish made right after it through another
        instance finds no one holding the session."""
        assert self.wire is not None
        try:
            await self.wire.flush(SUBSCRIBE_CONFIRM_TIMEOUT)
        except Exception as exc:  # down or slow: it is subscribed again when it reconnects
            log.debug("session %s: subscription not confirmed: %r", session_id, exc)

    async def session_id_closed(self, session_id: str) -> None:
        """The local session with this id ended."""
        sub = self._session_subs.pop(session_id, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await self._unsubscribe(sub)

    # --- sessions held elsewhere ----------------------------------------------------------------

    def session_subject(self, session_id: str) -> str:
        """The subject the instance holding `session_id` subscribes (a handover goes there)."""
        return f"{self.base}.s.{session_id}"

    async def fetch_move(
        self, session_id: str, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | None:
        """Start moving a session held elsewhere here, for a resume (`MoveRequester.fetch`)."""
        return await self.moves.fetch(session_id, req, key, identity)

    async def find_orphan(
        self, session_id: str, serves: Callable[[PairKey], bool]
    ) -> SessionMove | None:
        """A session no instance holds, from the store (`MoveRequester.find_orphan`)."""
        return await self.moves.find_orphan(session_id, serves)

    async def send_answer_back(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A moved-in session's client answered a request made on its old instance."""
        await self.moves.send_answer_back(session_id, token, answer)

    async def publish_remote(self, component_id: str, msg: BrokerMessage) -> Ok | Err:
        """Targeted publish to a session this instance does not hold."""
        sid = msg.subject.partition(".")[0]
        payload = publish_payload(component_id, msg)
        return await ask_holder(self.nc, self.base, sid, payload, PUBLISH_DEADLINE)

    async def request_remote(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` to a session this instance does not hold."""
        sid = subject.partition(".")[0]
        payload = request_payload(component_id, subject, body, timeout_ms)
        return await ask_holder(self.nc, self.base, sid, payload, request_deadline(timeout_ms))

    # --- fan-out ----------------------------------------------------------------------------

    def fanout_refusal(self, component_id: str, msg: BrokerMessage) -> Err | None:
        """Err when this publish could not be fanned out (checked before local delivery, so
        that a refused publish reaches nobody rather than only this instance's sessions)."""
        return too_big(self.nc, pack_map(self._fanout_payload(component_id, msg)))

    def _fanout_payload(self, component_id: str, msg: BrokerMessage) -> dict[str, Any]:
        return {
            "origin": self.instance_id,
            "from": component_id,
            "subject": msg.subject,
            "body": msg.body,
            "reply_to": msg.reply_to,
        }

    async def fanout(
        self, component_id: str, msg: BrokerMessage, mid: str | None = None
    ) -> Ok | Err:
        """Have every other instance deliver a broadcast/topic publish to its sessions."""
        payload = self._fanout_payload(component_id, msg)
        payload["mid"] = mid
        try:
            await self.nc.publish(f"{self.base}.fanout", pack_map(payload))
        except Exception as exc:
            return Err(f"delivered here, but not to the other instances: {exc}")
        return Ok()

    # --- listing ----------------------------------------------------------------------------

    async def list_all(self) -> list[dict[str, Any]]:
        """Every instance's sessions (answers collected for LIST_WINDOW seconds)."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        out: list[dict[str, Any]] = []
        try:
            await self.nc.publish(f"{self.base}.list", b"", reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LIST_WINDOW
            while (remaining := deadline - loop.time()) > 0:
                try:
                    reply = await sub.next_msg(timeout=remaining)
                except NatsTimeout:
                    break
                with contextlib.suppress(Exception):
                    out.extend(unpack_map(reply.data, "cluster message").get("sessions", []))
        finally:
            await sub.unsubscribe()
        return out
