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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from wasmcloud_provider_sdk import BrokerMessage, Err, Ok

from .buswire import pack_map, unpack_map
from .errors import NoSuchSession
from .history import ResumeRequest
from .moves import MOVE_OP, MOVE_TIMEOUT, Holder, Mover, PairKey, SessionMove

if TYPE_CHECKING:
    from .jsstore import HistoryStore

log = logging.getLogger(__name__)

#: How long a targeted publish to another instance may take before it is an `Err`.
PUBLISH_TIMEOUT = 2.0
HOLDER_QUEUE = "holder"
#: How long `list_ws_clients(cluster=True)` collects answers from the other instances.
LIST_WINDOW = 0.25

LocalPublish = Callable[[str, BrokerMessage, str | None], Awaitable[Ok | Err]]
LocalRequest = Callable[[str, str, bytes, int], Awaitable[Ok | Err]]
LocalList = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class LocalCalls:
    """How this instance carries out what the other instances pass on to it."""

    publish: LocalPublish
    request: LocalRequest
    list: LocalList


def _reply_for(result: Ok | Err) -> dict[str, Any]:
    """The answer to a targeted publish/request from another instance (see `_result`)."""
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


def _result(obj: dict[str, Any]) -> Ok | Err:
    if "err" in obj:
        return Err(str(obj["err"]))
    answer = obj.get("answer")
    if isinstance(answer, dict):
        return Ok(BrokerMessage(answer["subject"], answer["body"], answer.get("reply_to")))
    return Ok()


class Cluster:
    """The cross-instance part of routing for one provider instance."""

    def __init__(
        self,
        nc: NatsClient,
        lattice: str,
        provider_id: str,
        instance_id: str,
        *,
        store: HistoryStore | None = None,
    ) -> None:
        self.nc = nc
        self.base = f"wsp.{lattice}.{provider_id}"
        self.instance_id = instance_id
        #: What other instances pass on is carried out here (given by `start`).
        self._local: LocalCalls | None = None
        #: This instance's sessions, as the move protocol and late sends need them (given
        #: by `start`; None: no server-mode sessions to serve).
        self._holder: Holder | None = None
        #: Sessions moving between instances, both sides.
        self.moves = Mover(nc, self.base, store)
        self._session_subs: dict[str, Subscription] = {}
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, local: LocalCalls, holder: Holder | None = None) -> None:
        """Subscribe the fan-out and list subjects, carried out by `local` (this instance's
        publish, request and session list); with `holder` (this instance's server sessions,
        built with this cluster as their `Peers`), serve moves and late sends too."""
        self._local = local
        self._holder = holder
        self._subs.append(await self.nc.subscribe(f"{self.base}.fanout", cb=self._on_fanout))
        self._subs.append(await self.nc.subscribe(f"{self.base}.list", cb=self._on_list))
        if holder is not None:
            await self.moves.start(holder)

    async def stop(self) -> None:
        """Unsubscribe everything (connections close with the lattice connection)."""
        await self.moves.stop()
        for sub in [*self._subs, *self._session_subs.values()]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        self._session_subs.clear()

    def _calls(self) -> LocalCalls:
        if self._local is None:
            raise RuntimeError("cluster message before the cluster started")
        return self._local

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sessions held here -------------------------------------------------------------------

    async def session_id_opened(self, session_id: str) -> None:
        """Make the local session (server or client mode) with this id reachable."""
        if session_id in self._session_subs:
            return
        # A queue group: while a session moves between instances both subscribe for a moment,
        # and each targeted send must reach one of them only.
        sub = await self.nc.subscribe(
            f"{self.base}.s.{session_id}", queue=HOLDER_QUEUE, cb=self._on_targeted
        )
        if session_id in self._session_subs:  # subscribed meanwhile: one responder only
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            return
        self._session_subs[session_id] = sub

    async def session_id_closed(self, session_id: str) -> None:
        """The local session with this id ended."""
        sub = self._session_subs.pop(session_id, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_targeted(self, msg: Msg) -> None:
        # Never block the subscription: a request may wait for a client's answer.
        self._spawn(self._answer_targeted(msg))

    async def _answer_targeted(self, msg: Msg) -> None:
        try:
            req = unpack_map(msg.data, "cluster message")
            if req.get("op") == MOVE_OP:
                if self._holder is not None:
                    await self.moves.answer_move(msg, req)
                return
            if req.get("op") == "ping":
                if msg.reply:
                    await self.nc.publish(msg.reply, pack_map({"ok": True}))
                return
            sid = str(req.get("subject", "")).partition(".")[0]
            holder = self._holder
            if holder is not None and not holder.holds(sid) and holder.recently_moved_out(sid):
                # Reached us just as the session moved out: follow it.
                await self._forward(msg, req)
                return
            component, subject = str(req["from"]), str(req["subject"])
            if req.get("op") == "request":
                result = await self._calls().request(
                    component, subject, bytes(req["body"]), int(req["timeout_ms"])
                )
            else:
                broker = BrokerMessage(subject, bytes(req["body"]), req.get("reply_to"))
                result = await self._calls().publish(component, broker, None)
        except Exception as exc:  # a malformed request from a peer: answer, don't crash
            log.warning("bad cluster request on %s: %s", msg.subject, exc)
            result = Err(f"bad cluster request: {exc}")
        if not msg.reply:
            return
        data = pack_map(_reply_for(result))
        if len(data) > self.nc.max_payload:
            data = pack_map(
                {
                    "err": f"the answer ({len(data)} bytes) exceeds the lattice NATS "
                    f"max_payload ({self.nc.max_payload})"
                }
            )
        with contextlib.suppress(Exception):
            await self.nc.publish(msg.reply, data)

    async def _forward(self, msg: Msg, req: dict[str, Any]) -> None:
        component, subject = str(req["from"]), str(req["subject"])
        if req.get("op") == "request":
            result = await self.request_remote(
                component, subject, bytes(req["body"]), int(req["timeout_ms"])
            )
        else:
            broker = BrokerMessage(subject, bytes(req["body"]), req.get("reply_to"))
            result = await self.publish_remote(component, broker)
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, pack_map(_reply_for(result)))

    # --- sessions held elsewhere (the `peers.Peers` a hub is built with) -------------------------

    async def fetch_move(
        self, session_id: str, req: ResumeRequest, key: PairKey, identity: str | None
    ) -> SessionMove | None:
        """Start moving a session held elsewhere here, for a resume (`Mover.fetch`)."""
        return await self.moves.fetch(session_id, req, key, identity)

    async def send_answer_back(self, session_id: str, token: str, answer: BrokerMessage) -> None:
        """A moved-in session's client answered a request made on its old instance."""
        await self.moves.send_answer_back(session_id, token, answer)

    async def publish_remote(self, component_id: str, msg: BrokerMessage) -> Ok | Err:
        """Targeted publish to a session this instance does not hold."""
        sid = msg.subject.partition(".")[0]
        payload = {
            "op": "publish",
            "from": component_id,
            "subject": msg.subject,
            "body": msg.body,
            "reply_to": msg.reply_to,
        }
        # The session may be moving out of its holder: allow for the move.
        return await self._ask(sid, payload, PUBLISH_TIMEOUT + MOVE_TIMEOUT)

    async def request_remote(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` to a session this instance does not hold."""
        sid = subject.partition(".")[0]
        payload = {
            "op": "request",
            "from": component_id,
            "subject": subject,
            "body": body,
            "timeout_ms": timeout_ms,
        }
        # The holder enforces the timeout; allow it the time to say so.
        return await self._ask(sid, payload, timeout_ms / 1000 + PUBLISH_TIMEOUT + MOVE_TIMEOUT)

    def _too_big(self, data: bytes) -> Err | None:
        limit = self.nc.max_payload
        if len(data) > limit:
            return Err(
                f"message too large to forward to another instance ({len(data)} bytes; the "
                f"lattice NATS max_payload is {limit})"
            )
        return None

    async def _ask(self, sid: str, payload: dict[str, Any], timeout: float) -> Ok | Err:
        data = pack_map(payload)
        refused = self._too_big(data)
        if refused is not None:
            return refused
        try:
            reply = await self.nc.request(f"{self.base}.s.{sid}", data, timeout=timeout)
        except NoRespondersError:
            return NoSuchSession.of(sid)
        except NatsTimeout:
            return Err(f"timed out reaching the instance that holds session {sid}")
        except Exception as exc:  # connection trouble: the caller gets a clear Err
            return Err(f"could not reach the other instances: {exc}")
        try:
            return _result(unpack_map(reply.data, "cluster message"))
        except Exception as exc:
            return Err(f"bad answer from the instance holding {sid}: {exc}")

    # --- fan-out ----------------------------------------------------------------------------

    def fanout_refusal(self, component_id: str, msg: BrokerMessage) -> Err | None:
        """Err when this publish could not be fanned out (checked before local delivery, so
        that a refused publish reaches nobody rather than only this instance's sessions)."""
        return self._too_big(pack_map(self._fanout_payload(component_id, msg)))

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

    async def _on_fanout(self, msg: Msg) -> None:
        # Only hand off: the local publish may wait for the JetStream store.
        self._spawn(self._deliver_fanout(msg))

    async def _deliver_fanout(self, msg: Msg) -> None:
        try:
            req = unpack_map(msg.data, "cluster message")
            if req.get("origin") == self.instance_id:
                return
            broker = BrokerMessage(str(req["subject"]), bytes(req["body"]), req.get("reply_to"))
            mid = req.get("mid")
            await self._calls().publish(str(req["from"]), broker, None if mid is None else str(mid))
        except Exception as exc:
            log.warning("bad fan-out message: %s", exc)

    # --- listing ----------------------------------------------------------------------------

    async def _on_list(self, msg: Msg) -> None:
        if msg.reply:
            sessions = [dict(s, instance=self.instance_id) for s in self._calls().list()]
            await self.nc.publish(msg.reply, pack_map({"sessions": sessions}))

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
