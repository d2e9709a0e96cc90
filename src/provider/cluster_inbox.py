"""The incoming half of the cluster bus: what the other instances pass on to this one.

cluster.py describes the subjects and the split: `cluster.ClusterLink` asks the other
instances; `ClusterInbox` (here) answers them, through NATS callbacks that only hand off to
this instance's `LocalCalls` (publish, request, list) and `moves.Holder` (its sessions, for
moves and late sends). It is held by the link (its `on_session_message` is the callback of
each session's subject) and by the provider, which starts and stops it; nothing it holds
calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from wasmcloud_provider_sdk import BrokerMessage, Err, Ok
from wasmcloud_provider_sdk.wrpc_handover import is_handover

from .buswire import BusMessage, pack_map, unpack_map
from .cluster import (
    PUBLISH_DEADLINE,
    LocalCalls,
    ask_holder,
    publish_payload,
    reply_for,
    request_deadline,
    request_payload,
)
from .moves import MOVE_OP, Holder, MoveResponder

log = logging.getLogger(__name__)


class ClusterInbox:
    """The incoming half of the cluster bus for one provider instance: every NATS callback
    of the bus (targeted sends and requests for sessions held here, fan-out, list, moves,
    answers coming back from moved sessions)."""

    def __init__(self, nc: NatsClient, base: str, instance_id: str) -> None:
        self.nc = nc
        self.base = base
        self.instance_id = instance_id
        #: What other instances pass on is carried out here (given by `start`).
        self._local: LocalCalls | None = None
        #: This instance's sessions, as the move protocol and late sends need them (given
        #: by `start`; None: no server-mode sessions to serve).
        self._holder: Holder | None = None
        #: The answering side of moves (the old holder's).
        self.moves = MoveResponder(nc, base)
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, local: LocalCalls, holder: Holder | None = None) -> None:
        """Subscribe the fan-out and list subjects, carried out by `local` (this instance's
        publish, request and session list); with `holder` (this instance's server sessions),
        serve moves and late sends too. Given here rather than when built because the hub
        and the exports are built with the outgoing half, which is built with this one."""
        self._local = local
        self._holder = holder
        self._subs.append(await self.nc.subscribe(f"{self.base}.fanout", cb=self._on_fanout))
        self._subs.append(await self.nc.subscribe(f"{self.base}.list", cb=self._on_list))
        if holder is not None:
            await self.moves.start(holder)

    async def stop(self) -> None:
        """Unsubscribe the bus's own subjects (the link unsubscribes the sessions')."""
        await self.moves.stop()
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _calls(self) -> LocalCalls:
        if self._local is None:
            raise RuntimeError("cluster message before the cluster started")
        return self._local

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- a session held here ------------------------------------------------------------------

    def on_session_message(self, msg: BusMessage) -> None:
        """The callback of a session's subject `….s.{session id}` (subscribed by the link)."""
        headers = msg.headers
        if headers is not None and is_handover(headers):
            # A consumer call another instance received, for this session: served as if
            # the host had sent it here (it checks the links and isolation as usual), in
            # this callback.
            handover = self._local.handover if self._local is not None else None
            if handover is not None:
                handover(msg.data, headers, msg.reply)
            elif msg.reply:
                self._spawn(self.nc.publish(msg.reply, b""))  # not taken: the sender serves it
            return
        # Never block the subscription: a request may wait for a client's answer.
        self._spawn(self._answer_targeted(msg))

    async def on_session_nats_message(self, msg: Msg) -> None:
        """`on_session_message` as nats-py's callback (without a host's `Wire`)."""
        self.on_session_message(msg)

    async def _answer_targeted(self, msg: BusMessage) -> None:
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
        data = pack_map(reply_for(result))
        if len(data) > self.nc.max_payload:
            data = pack_map(
                {
                    "err": f"the answer ({len(data)} bytes) exceeds the lattice NATS "
                    f"max_payload ({self.nc.max_payload})"
                }
            )
        with contextlib.suppress(Exception):
            await self.nc.publish(msg.reply, data)

    async def _forward(self, msg: BusMessage, req: dict[str, Any]) -> None:
        component, subject = str(req["from"]), str(req["subject"])
        sid = subject.partition(".")[0]
        result: Ok | Err
        if req.get("op") == "request":
            timeout_ms = int(req["timeout_ms"])
            payload = request_payload(component, subject, bytes(req["body"]), timeout_ms)
            result = await ask_holder(
                self.nc, self.base, sid, payload, request_deadline(timeout_ms)
            )
        else:
            broker = BrokerMessage(subject, bytes(req["body"]), req.get("reply_to"))
            payload = publish_payload(component, broker)
            result = await ask_holder(self.nc, self.base, sid, payload, PUBLISH_DEADLINE)
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, pack_map(reply_for(result)))

    # --- fan-out and listing ------------------------------------------------------------------

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

    async def _on_list(self, msg: Msg) -> None:
        if msg.reply:
            sessions = [dict(s, instance=self.instance_id) for s in self._calls().list()]
            await self.nc.publish(msg.reply, pack_map({"sessions": sessions}))
