"""The WebSocket messaging provider: links -> endpoints, consumer calls -> routing.

Under a host the SDK calls the hooks below. Without a host, the Python API (README "Python API")
(`from_config`, `start_server_if_needed`, `list_ws_clients`, `send_to_session`,
`broadcast_to_clients`, `on_message`) drives the same server code.

The provider composes its parts: `links.PairLinks` (every pair's links and config),
`pairs.Pairs` (links -> server endpoints and client connections), `exports.ConsumerExports`
(`consumer.publish` / `request`, carrying out the routes of `routing.RoutingTable`), the
`server.ServerHub` and the client connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from nats.aio.client import Client as NatsClient

from wasmcloud_provider_sdk import (
    BrokerMessage,
    Deferred,
    Err,
    HealthCheckResponse,
    InvocationContext,
    LinkConfig,
    Ok,
    Provider,
    ProviderContext,
    serve_consumer,
)
from wasmcloud_provider_sdk.wire import Wire

from .client_policy import ClientState
from .cluster import ClusterLink, LocalCalls, bus_base
from .cluster_inbox import ClusterInbox
from .config import normalise
from .exports import ConsumerExports, Routes
from .jsstore import HistoryStore
from .links import PairKey, PairLinks, ReportedKeys, warn_unknown_keys
from .metrics import register_otel_metrics
from .pairs import Pairs, PythonHandler
from .peers import NO_PEERS, Peers
from .routing import RoutingTable, ToClientSession
from .server import ServerHub
from .settings import mode_of, server_settings

__all__ = ["STANDALONE_KEY", "PythonHandler", "WebSocketMessagingProvider"]

STANDALONE_KEY: PairKey = ("local", "default")


class WebSocketMessagingProvider(Provider):
    """Serves `wasmcloud:messaging/consumer` and calls components' `handler` over WebSocket."""

    def __init__(self, standalone_config: Mapping[str, str] | None = None) -> None:
        self.links = PairLinks()
        #: Who a subject names, both modes: the hub's endpoints and sessions, and `clients`.
        self.routes: Routes = RoutingTable()
        #: Client-mode connections by pair (the routing table's `clients`).
        self.clients = self.routes.clients
        self._python_handler: PythonHandler | None = None
        self._standalone_config = normalise(standalone_config) if standalone_config else None
        if standalone_config:
            warn_unknown_keys("config", standalone_config)
        #: Provider-level config keys already reported as unknown (reported once each).
        self._reported_provider_keys = ReportedKeys()
        self.store: HistoryStore | None = None  # JetStream history for resume (under a host)
        self.ctx: ProviderContext | None = None  # the host's context (None: library use)
        #: Under a host, instances act as one over NATS: `cluster` asks the other instances
        #: (the hub's `Peers`), `cluster_inbox` answers them (cluster.py).
        self.cluster: ClusterLink | None = None
        self.cluster_inbox: ClusterInbox | None = None
        self._assemble()

    def _assemble(
        self,
        peers: Peers = NO_PEERS,
        readiness_check: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        """Build the server side, the link handling and the consumer exports, each given
        what it needs: alone (library use, before `init`) or under a host (`init`: the
        host's context, the other instances, the store, the lattice connection)."""
        self.hub = ServerHub(
            self.routes, peers=peers, store=self.store, readiness_check=readiness_check
        )
        self.pairs = Pairs(
            self.links,
            self.hub,
            self.clients,
            ctx=self.ctx,
            cluster=self.cluster,
            python_handler=self._python_handler,
        )
        self.exports = ConsumerExports(self.routes, self.hub, self.links, self.cluster)

    @property
    def pair_errors(self) -> dict[PairKey, str]:
        """Pairs whose config is not usable, with the error (health, publishes, dev mode)."""
        return self.links.errors

    # --- Python API (README "Python API") -----------------------------------------------------

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> WebSocketMessagingProvider:
        """A provider for library use, configured like one link pair (README's config keys)."""
        return cls(standalone_config=config)

    def on_message(self, handler: PythonHandler) -> PythonHandler:
        """Register the Python handler for inbound messages (usable as a decorator).

        It serves the standalone endpoint, and hosted endpoints that have no handler link.
        """
        self._python_handler = handler
        self.pairs.use_python_handler(handler)
        return handler

    async def start_server_if_needed(self) -> int | None:
        """Start the standalone server endpoint (MODE=server); returns its port, or None."""
        if self._standalone_config is None:
            return None
        if STANDALONE_KEY not in self.hub.endpoints:
            if mode_of(self._standalone_config) != "server":
                return None
            settings = server_settings(self._standalone_config)
            pairs = self.pairs
            handler = pairs.wrap_python_handler() if pairs.python_handler else None
            await self.hub.add_endpoint(STANDALONE_KEY, settings, handler)
        return self.hub.bound_port(STANDALONE_KEY)

    async def list_ws_clients(self, cluster: bool = False) -> list[dict[str, Any]]:
        """Every tracked session: id, `mode` (`server`: a client connected to one of our
        endpoints; `client`: the outbound connection of a client-mode link), `state`,
        component, link, remote address, times, counters.

        With `cluster=True` (under a host), the sessions of every instance of this provider,
        each with the `instance` that holds it.
        """
        if cluster and self.cluster is not None:
            return await self.cluster.list_all()
        return self._local_sessions()

    async def send_to_session(self, session_id: str, msg: BrokerMessage) -> Ok | Err:
        """Send `msg` (its subject as the frame subject) to one session (either mode)."""
        target = self.routes.session(session_id, msg.subject)
        if isinstance(target, ToClientSession):
            return target.client.publish(msg)
        return await self.hub.send_to_session(session_id, msg)

    async def broadcast_to_clients(self, msg: BrokerMessage) -> int:
        """Send `msg` to every session of every endpoint; returns how many were sent."""
        return await self.hub.broadcast_all(msg)

    async def stop(self) -> None:
        """Close every session (1001), listener and client connection (1000)."""
        await self.shutdown()

    def effective_config(self, component_id: str, link_name: str) -> dict[str, str]:
        """The merged config of a (component, link name) pair (README "Server mode")."""
        return self.links.effective_config((component_id, link_name), self.pairs.provider_config)

    def _local_sessions(self) -> list[dict[str, Any]]:
        """This instance's tracked sessions, server mode then client mode."""
        return self.exports.list_local()

    # --- SDK hooks ---------------------------------------------------------------------------

    async def init(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._report_provider_keys(ctx.config)
        instance_id = ctx.host_data.instance_id or uuid.uuid4().hex
        self.store = await HistoryStore.open(
            ctx.nc, ctx.lattice, ctx.provider_id, ctx.transport.wire
        )
        await self._join_cluster(
            ctx.nc,
            bus_base(ctx.lattice, ctx.provider_id),
            instance_id,
            ctx.transport.take_handover,
            ctx.transport.wire,
        )
        self.hub.registry.listen_gate = ctx.workers_ready
        if ctx.telemetry.meter is not None:
            register_otel_metrics(ctx.telemetry.meter, self.hub.metrics)

    async def _join_cluster(
        self,
        nc: NatsClient,
        base: str,
        instance_id: str,
        handover: Callable[[bytes, Mapping[str, str], str], None] | None = None,
        wire: Wire | None = None,
    ) -> None:
        """Assemble this instance as one of several over the lattice connection `nc`: the
        cluster bus's incoming half (`ClusterInbox`), its outgoing half (`ClusterLink`,
        built with the inbox's callback for the sessions' subjects), the server side built
        again with the link as its `Peers` (no link, hence no endpoint, exists before
        `init`), then the inbox started with what it hands off to: the hub (`Holder`) and
        the exports' local calls. Nothing the inbox holds calls it, and the link holds
        neither the hub nor the exports."""
        if self.hub.endpoints:
            raise RuntimeError("init after server endpoints were added")
        inbox = ClusterInbox(nc, base, instance_id)
        link = ClusterLink(
            nc,
            base,
            instance_id,
            inbox.on_session_message,
            inbox.on_session_nats_message,
            store=self.store,
            wire=wire,
        )
        self.cluster, self.cluster_inbox = link, inbox
        self._assemble(
            peers=link,
            readiness_check=lambda: (
                (True, "ready") if nc.is_connected else (False, "not connected to the lattice")
            ),
        )
        local = LocalCalls(
            self.exports.publish_local,
            self.exports.request_local,
            self.exports.list_local,
            handover,
        )
        await inbox.start(local, self.hub)
        for client in self.clients.values():
            if client.session_id is not None:
                await link.session_id_opened(client.session_id)

    async def serve_exports(self, ctx: ProviderContext) -> None:
        """Serve the consumer interface (called by the runtime after initial links): the
        exports object itself, so a publish takes no extra call through the provider."""
        await serve_consumer(ctx.transport, ctx.prefix, self.exports, self.exports)

    # A new link is always kept (pairs.py says why); an update with a bad config is refused.

    async def on_link_as_target(self, link: LinkConfig) -> None:
        await self.pairs.put(link, "target")

    async def on_link_as_source(self, link: LinkConfig) -> None:
        await self.pairs.put(link, "source")

    async def on_link_updated_as_target(self, old: LinkConfig, new: LinkConfig) -> None:
        await self.pairs.update(old, new, "target")

    async def on_link_updated_as_source(self, old: LinkConfig, new: LinkConfig) -> None:
        await self.pairs.update(old, new, "source")

    async def on_link_deleted_as_target(self, link: LinkConfig) -> None:
        await self.pairs.delete(link, "target")

    async def on_link_deleted_as_source(self, link: LinkConfig) -> None:
        await self.pairs.delete(link, "source")

    async def on_config_update(self, config: dict[str, str]) -> None:
        self._report_provider_keys(config)

    def _report_provider_keys(self, config: Mapping[str, str]) -> None:
        """Warn about misspelled provider-level keys, each once per process."""
        self._reported_provider_keys.report(config)

    async def health(self) -> HealthCheckResponse:
        """Unhealthy only when a client connection failed permanently (401/403, untrusted
        certificate): reconnecting is normal operation, and answering unhealthy then would
        only make noise in the lattice's health events."""
        endpoints, sessions = len(self.hub.endpoints), len(self.hub.sessions)
        parts = [f"{endpoints} endpoint(s), {sessions} session(s)"]
        parts += [f"client {c.describe()}" for c in self.clients.values()]
        parts += [f"misconfigured {k[0]}/{k[1]}: {e}" for k, e in self.links.errors.items()]
        failed = any(c.state is ClientState.FAILED for c in self.clients.values())
        return HealthCheckResponse(not failed, "; ".join(parts))

    async def shutdown(self) -> None:
        if self.cluster_inbox is not None:
            await self.cluster_inbox.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        clients = list(self.clients.values())
        self.clients.clear()
        await asyncio.gather(
            self.hub.close(), *(c.close("provider shutting down", 1001) for c in clients)
        )

    # --- consumer (the SDK serves `exports` directly; these are for callers of the provider) --

    async def publish(self, ctx: InvocationContext, msg: BrokerMessage) -> Ok | Err:
        """`consumer.publish` (`ConsumerExports.publish`)."""
        answer = self.exports.publish(ctx, msg)
        if isinstance(answer, (Ok, Err)):
            return answer
        return await (answer.wait() if isinstance(answer, Deferred) else answer)

    async def request(
        self, ctx: InvocationContext, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request` (`ConsumerExports.request`)."""
        return await self.exports.request(ctx, subject, body, timeout_ms)
