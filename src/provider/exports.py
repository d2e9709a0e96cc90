"""The consumer exports (`wasmcloud:messaging/consumer`): a component's `publish` and `request`,
routed by `routing.RoutingTable.route` and carried out here, on the instance that holds the
session, or on every instance (a broadcast or a topic).

A session held by another instance is reached through the cluster; when no instance holds it
but the JetStream store knows it, it is moved in here first (`ClusterLink.find_orphan`, then
`ServerHub.move_in_orphan`).
`publish` is on every reply's path: no awaits, tasks or copies beyond what the route needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from wasmcloud_provider_sdk import BrokerMessage, Deferred, Err, InvocationContext, Ok

from .client import OutboundClient
from .errors import NoSuchSession
from .links import PairLinks
from .routing import Elsewhere, FanOut, RoutingTable, Target, ToClientSession, ToServer, ToSession
from .server import Endpoint, ServerHub
from .sessions import Session

if TYPE_CHECKING:
    from .cluster import ClusterLink

Routes = RoutingTable[Session, Endpoint, OutboundClient]


class ConsumerExports:
    """Serves `consumer.publish` and `consumer.request` (the SDK's `ConsumerHandler`), and
    carries out the routes the cluster passes on from other instances."""

    def __init__(
        self, routes: Routes, hub: ServerHub, links: PairLinks, cluster: ClusterLink | None = None
    ) -> None:
        self.routes = routes
        self.hub = hub
        # The link tables themselves (not `links`): checked on every call.
        self._consumer_links = links.consumer
        self._pair_errors = links.errors
        #: Under a host: the other instances of this provider (None: it runs alone).
        self.cluster = cluster

    def _check_linked(self, ctx: InvocationContext) -> Err | None:
        key = (ctx.source_id, ctx.link_name)
        if key not in self._consumer_links:
            return Err(f"component not linked: {ctx.source_id} (link {ctx.link_name!r})")
        error = self._pair_errors.get(key)
        if error is not None:
            return Err(f"link {ctx.link_name!r} of {ctx.source_id} is misconfigured: {error}")
        return None

    # --- consumer -----------------------------------------------------------------------------

    def publish(
        self, ctx: InvocationContext, msg: BrokerMessage
    ) -> Ok | Err | Deferred[Ok | Err] | Awaitable[Ok | Err]:
        """`consumer.publish`: routed (`RoutingTable.route`), then carried out here, on the
        instance that holds the session, or on every instance (a broadcast or topic).

        The answer comes at once when nothing needs waiting for (a session held here, the
        usual reply: the SDK then answers the call inside the NATS callback), else as an
        awaitable."""
        refused = self._check_linked(ctx)
        if refused is not None:
            return refused
        target = self.routes.route(ctx.source_id, ctx.link_name, msg.subject)
        if type(target) is ToSession:
            return self.hub.publish_to_session_now(ctx.source_id, target, msg)
        return self._publish(ctx, msg, target)

    async def _publish(
        self, ctx: InvocationContext, msg: BrokerMessage, target: Target[Session, OutboundClient]
    ) -> Ok | Err:
        if isinstance(target, Elsewhere):
            sid = target.session_id
            if self.cluster is None:
                return NoSuchSession.of(sid)
            result = await self.cluster.publish_remote(ctx.source_id, msg)
            if not (isinstance(result, NoSuchSession) and await self._move_in_orphan(sid)):
                return result
            return await self.publish_local(ctx.source_id, msg)
        if not isinstance(target, FanOut):
            return await self._publish_to(ctx.source_id, target, msg, None)
        if self.cluster is not None:
            refused = self.cluster.fanout_refusal(ctx.source_id, msg)
            if refused is not None:
                return refused
        mid = uuid.uuid4().hex  # one id for this publish on every instance
        await self.hub.fan_out(target.sessions, msg, mid)
        if self.cluster is not None:
            return await self.cluster.fanout(ctx.source_id, msg, mid)  # the other instances
        return Ok()

    async def request(
        self, ctx: InvocationContext, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request`: ask one session and wait for its answer."""
        refused = self._check_linked(ctx)
        if refused is not None:
            return refused
        target = self.routes.route(ctx.source_id, ctx.link_name, subject)
        if isinstance(target, Elsewhere):
            sid = target.session_id
            if self.cluster is None:
                return NoSuchSession.of(sid)
            result = await self.cluster.request_remote(ctx.source_id, subject, body, timeout_ms)
            if not (isinstance(result, NoSuchSession) and await self._move_in_orphan(sid)):
                return result
            return await self.request_local(ctx.source_id, subject, body, timeout_ms)
        return await self._request_to(ctx.source_id, target, subject, body, timeout_ms)

    # --- handing a call over (the SDK's `ConsumerRoute`) ---------------------------------------

    def subject_holder(self, ctx: InvocationContext, subject: str) -> str | None:
        """Where a `consumer.publish` or `consumer.request` to `subject` belongs: the subject
        of the instance holding its session when another instance does (the SDK hands the
        call over there, without decoding the rest of it; the holder answers the host), else
        None (served here)."""
        cluster = self.cluster
        if cluster is None or self.hub.holds(subject.partition(".")[0]):
            return None  # alone, or the session is held here (the usual reply): no route
        target = self.routes.route(ctx.source_id, ctx.link_name, subject)
        if isinstance(target, Elsewhere):
            return cluster.session_subject(target.session_id)
        return None

    # --- on this instance ---------------------------------------------------------------------

    def list_local(self) -> list[dict[str, Any]]:
        """This instance's tracked sessions, server mode then client mode (for
        `list_ws_clients`, and for another instance's cluster-wide list)."""
        out = [info.to_dict() for info in self.hub.list_sessions()]
        for client in self.routes.clients.values():
            info = client.info()
            if info is not None:
                out.append(info.to_dict())
        return out

    async def publish_local(
        self, component_id: str, msg: BrokerMessage, mid: str | None = None
    ) -> Ok | Err:
        """Routing on this instance only (a publish, or a fan-out, passed on by another
        instance; or once a session was moved in here)."""
        target = self.routes.route(component_id, None, msg.subject)
        return await self._publish_to(component_id, target, msg, mid)

    async def _publish_to(
        self,
        component_id: str,
        target: Target[Session, OutboundClient],
        msg: BrokerMessage,
        mid: str | None,
    ) -> Ok | Err:
        """Carry out a publish's route on this instance."""
        if isinstance(target, ToSession):
            return await self.hub.publish_to_session(component_id, target, msg)
        if isinstance(target, ToClientSession):
            # A client-mode connection addressed by its session id: `<sid>.R` goes out with
            # subject `R` (`<sid>` alone: `<sid>`).
            return target.client.publish(BrokerMessage(target.subject, msg.body, msg.reply_to))
        if isinstance(target, ToServer):
            return target.client.publish(msg)
        if isinstance(target, FanOut):
            await self.hub.fan_out(target.sessions, msg, mid)
            return Ok()
        return NoSuchSession.of(target.session_id)  # not its to reach, or not held here

    async def request_local(
        self, component_id: str, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` to a session of this instance (either mode)."""
        target = self.routes.route(component_id, None, subject)
        return await self._request_to(component_id, target, subject, body, timeout_ms)

    async def _request_to(
        self,
        component_id: str,
        target: Target[Session, OutboundClient],
        subject: str,
        body: bytes,
        timeout_ms: int,
    ) -> Ok | Err:
        """Carry out a request's route on this instance."""
        if isinstance(target, ToSession):
            return await self.hub.request_session(component_id, target, subject, body, timeout_ms)
        if isinstance(target, ToClientSession):
            return await target.client.request(target.subject, body, timeout_ms)
        if isinstance(target, ToServer):
            return await target.client.request(subject, body, timeout_ms)
        if isinstance(target, FanOut):
            return Err(f"request needs a session id as subject (got {subject!r})")
        return NoSuchSession.of(target.session_id)  # not its to reach, or not held here

    async def _move_in_orphan(self, session_id: str) -> bool:
        """No instance holds `session_id`: move it in from the store if it knows it."""
        hub = self.hub
        if self.cluster is None:
            return False
        if hub.holds(session_id) or hub.ended_here(session_id):
            return hub.holds(session_id)
        move = await self.cluster.find_orphan(session_id, hub.endpoints.__contains__)
        return move is not None and await hub.move_in_orphan(move)
