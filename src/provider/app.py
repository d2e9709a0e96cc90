"""The WebSocket messaging provider: links -> endpoints, consumer calls -> routing.

Under a host the SDK calls the hooks below. Without a host, the Python API (README "Python API")
(`from_config`, `start_server_if_needed`, `list_ws_clients`, `send_to_session`,
`broadcast_to_clients`, `on_message`) drives the same server code.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from wasmcloud_provider_sdk import (
    BrokerMessage,
    Err,
    HealthCheckResponse,
    InvocationContext,
    LinkConfig,
    LinkNotInEffect,
    Ok,
    Provider,
    ProviderContext,
    TransportError,
    serve_consumer,
)

from .client import OutboundClient, tls_context
from .client_policy import ClientState
from .closecodes import CloseCode
from .cluster import Cluster
from .config import merge_config, normalise
from .errors import ConfigError, EndpointConflict, NoSuchSession
from .jsstore import HistoryStore
from .metrics import register_otel_metrics
from .routing import (
    Elsewhere,
    FanOut,
    RoutingTable,
    Target,
    ToClientSession,
    ToServer,
    ToSession,
)
from .server import Endpoint, Handler, PairKey, ServerHub
from .sessions import Session
from .settings import (
    client_settings,
    describe_unknown_keys,
    mode_of,
    server_settings,
    unknown_keys,
)

log = logging.getLogger(__name__)

#: A Python handler for inbound messages (library use): return Err to send the client an
#: error frame; Ok or None means accepted.
PythonHandler = Callable[[BrokerMessage], Awaitable[Ok | Err | None]]

STANDALONE_KEY: PairKey = ("local", "default")


def _nobody_holds(result: Ok | Err, session_id: str) -> bool:
    """Did the cluster answer "no instance holds this session" (NATS no responders)?"""
    return isinstance(result, NoSuchSession)


class WebSocketMessagingProvider(Provider):
    """Serves `wasmcloud:messaging/consumer` and calls components' `handler` over WebSocket."""

    def __init__(self, standalone_config: Mapping[str, str] | None = None) -> None:
        self.ctx: ProviderContext | None = None
        self.consumer_links: dict[PairKey, LinkConfig] = {}
        self.handler_links: dict[PairKey, LinkConfig] = {}
        #: Who a subject names, both modes: the hub's endpoints and sessions, and `clients`.
        self.routes: RoutingTable[Session, Endpoint, OutboundClient] = RoutingTable()
        self.hub = ServerHub(self.routes)
        #: Client-mode connections by pair (the routing table's `clients`).
        self.clients = self.routes.clients
        self.cluster: Cluster | None = None  # under a host: instances act as one over NATS
        self.pair_errors: dict[PairKey, str] = {}  # pairs whose config is not usable
        self._standalone_config = normalise(standalone_config) if standalone_config else None
        if standalone_config:
            _warn_unknown_keys("config", standalone_config)
        #: Provider-level config keys already reported as unknown (reported once each).
        self._reported_provider_keys: set[str] = set()
        self._python_handler: PythonHandler | None = None
        self.store: HistoryStore | None = None  # JetStream history for resume (under a host)

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
        for key, endpoint in self.hub.endpoints.items():
            if key not in self.handler_links:
                endpoint.handler = self._wrap_python_handler()
        return handler

    async def start_server_if_needed(self) -> int | None:
        """Start the standalone server endpoint (MODE=server); returns its port, or None."""
        if self._standalone_config is None:
            return None
        if STANDALONE_KEY not in self.hub.endpoints:
            if mode_of(self._standalone_config) != "server":
                return None
            settings = server_settings(self._standalone_config)
            handler = self._wrap_python_handler() if self._python_handler else None
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

    def _wrap_python_handler(self) -> Handler:
        async def call(msg: BrokerMessage) -> Ok | Err:
            handler = self._python_handler
            if handler is None:
                return Err("no handler registered")
            try:
                result = await handler(msg)
            except Exception as exc:
                # The Python counterpart of a trapping component: the client gets
                # `delivery_failed` (and its `id` an answer) rather than nothing.
                log.exception("the Python handler raised on %s", msg.subject)
                raise TransportError(f"the handler raised {type(exc).__name__}") from exc
            return Ok() if result is None else result

        return call

    # --- SDK hooks ---------------------------------------------------------------------------

    async def init(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self._report_provider_keys(ctx.config)
        instance_id = ctx.host_data.instance_id or uuid.uuid4().hex
        self.store = await HistoryStore.open(ctx.nc, ctx.lattice, ctx.provider_id)
        cluster = Cluster(
            ctx.nc,
            ctx.lattice,
            ctx.provider_id,
            instance_id,
            publish_local=self._publish_local,
            request_local=self._request_local,
            list_local=self._local_sessions,
            holder=self.hub,
            store=self.store,
        )
        await cluster.start()
        for client in self.clients.values():
            if client.session_id is not None:
                await cluster.session_id_opened(client.session_id)
        self.hub.store = self.store
        assert cluster.moves is not None
        self.hub.fetch_move = cluster.moves.fetch
        self.hub.forward_publish = cluster.publish_remote
        self.hub.forward_request = cluster.request_remote
        self.hub.answer_elsewhere = cluster.moves.send_answer_back
        self.hub.on_session_open = cluster.session_opened
        self.hub.on_session_close = cluster.session_closed
        self.cluster = cluster
        if ctx.telemetry.meter is not None:
            register_otel_metrics(ctx.telemetry.meter, self.hub.metrics)
        nc = ctx.nc
        self.hub.readiness_check = lambda: (
            (True, "ready") if nc.is_connected else (False, "not connected to the lattice")
        )

    async def serve_exports(self, ctx: ProviderContext) -> None:
        """Serve the consumer interface (called by the runtime after initial links)."""
        await serve_consumer(ctx.transport, ctx.prefix, self)

    # A new link is always kept: its pair's config may be completed by the pair's other link
    # (a consumer link and a handler link arrive separately, and the host never re-sends
    # them). A config error leaves the pair without endpoint or connection, is logged, and
    # is what the component's publishes get as `Err` until a corrected link arrives. An
    # update with a bad config is refused instead, keeping the previous link in force.

    async def on_link_as_target(self, link: LinkConfig) -> None:
        _warn_unknown_link_keys(link, "target")
        key = (link.source_id, link.link_name)
        self.consumer_links[key] = link
        await self._reconcile_new_link(key)

    async def on_link_as_source(self, link: LinkConfig) -> None:
        _warn_unknown_link_keys(link, "source")
        key = (link.target_id, link.link_name)
        self.handler_links[key] = link
        await self._reconcile_new_link(key)

    async def on_link_updated_as_target(self, old: LinkConfig, new: LinkConfig) -> None:
        # Replace in place: an unchanged endpoint keeps its sessions; a changed one is
        # rebuilt (sessions closed with 1001 "endpoint reconfigured").
        _warn_unknown_link_keys(new, "target", old)
        await self._update(self.consumer_links, (new.source_id, new.link_name), old, new)

    async def on_link_updated_as_source(self, old: LinkConfig, new: LinkConfig) -> None:
        _warn_unknown_link_keys(new, "source", old)
        await self._update(self.handler_links, (new.target_id, new.link_name), old, new)

    async def on_config_update(self, config: dict[str, str]) -> None:
        self._report_provider_keys(config)

    def _report_provider_keys(self, config: Mapping[str, str]) -> None:
        """Warn about misspelled provider-level keys, each once per process."""
        fresh = [k for k in config if k.upper() not in self._reported_provider_keys]
        self._reported_provider_keys.update(k.upper() for k in config)
        _warn_unknown_keys("provider config", fresh)

    async def _reconcile_new_link(self, key: PairKey) -> None:
        """A new link is kept even when its pair's config is not usable (yet): the runtime
        stores it and reports the error once, as the link's outcome."""
        error = await self._reconcile_or_record(key, report=False)
        if error is not None:
            raise LinkNotInEffect(error)

    async def _update(
        self, table: dict[PairKey, LinkConfig], key: PairKey, old: LinkConfig, new: LinkConfig
    ) -> None:
        table[key] = new
        try:
            await self._reconcile(key)
        except Exception:
            table[key] = old
            raise
        self.pair_errors.pop(key, None)

    async def _reconcile_or_record(
        self, key: PairKey, reason: str = "endpoint reconfigured", *, report: bool = True
    ) -> str | None:
        """Reconcile the pair; a config error is recorded (health, publishes) and returned,
        and logged unless `report` is false (the caller reports it)."""
        try:
            await self._reconcile(key, reason)
        except (ConfigError, EndpointConflict, OSError) as exc:
            self.pair_errors[key] = str(exc)
            error = (
                f"component {key[0]}, link {key[1]}: {exc} (no endpoint or connection until "
                "a corrected link arrives)"
            )
            if report:
                log.error("%s", error)
            return error
        self.pair_errors.pop(key, None)
        return None

    async def on_link_deleted_as_target(self, link: LinkConfig) -> None:
        key = (link.source_id, link.link_name)
        self.consumer_links.pop(key, None)
        await self._reconcile_or_record(key, "link deleted")

    async def on_link_deleted_as_source(self, link: LinkConfig) -> None:
        key = (link.target_id, link.link_name)
        self.handler_links.pop(key, None)
        await self._reconcile_or_record(key, "link deleted")

    async def health(self) -> HealthCheckResponse:
        """Unhealthy only when a client connection failed permanently (401/403, untrusted
        certificate): reconnecting is normal operation, and answering unhealthy then would
        only make noise in the lattice's health events."""
        endpoints, sessions = len(self.hub.endpoints), len(self.hub.sessions)
        parts = [f"{endpoints} endpoint(s), {sessions} session(s)"]
        parts += [f"client {c.describe()}" for c in self.clients.values()]
        parts += [f"misconfigured {k[0]}/{k[1]}: {e}" for k, e in self.pair_errors.items()]
        failed = any(c.state is ClientState.FAILED for c in self.clients.values())
        return HealthCheckResponse(not failed, "; ".join(parts))

    async def shutdown(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        clients = list(self.clients.values())
        self.clients.clear()
        await asyncio.gather(
            self.hub.close(), *(c.close("provider shutting down", 1001) for c in clients)
        )

    # --- links -> endpoints -------------------------------------------------------------------

    def effective_config(self, component_id: str, link_name: str) -> dict[str, str]:
        """The merged config of a (component, link name) pair (README "Server mode")."""
        provider_config = self.ctx.config if self.ctx is not None else {}
        consumer = self.consumer_links.get((component_id, link_name))
        handler = self.handler_links.get((component_id, link_name))
        secrets = {}
        if consumer is not None:
            secrets.update(consumer.secrets)
        if handler is not None:
            secrets.update(handler.secrets)
        return merge_config(
            provider_config,
            consumer.config if consumer else None,
            handler.config if handler else None,
            secrets,
        )

    def _component_handler(self, key: PairKey) -> Handler | None:
        if key in self.handler_links and self.ctx is not None:
            client = self.ctx.handler_client
            component_id = key[0]

            timeout = self._handler_timeout(key)

            async def call(msg: BrokerMessage) -> Ok | Err:
                return await client.handle_message(component_id, msg, timeout=timeout)

            return call
        if self._python_handler is not None:
            return self._wrap_python_handler()
        return None

    def _handler_timeout(self, key: PairKey) -> float:
        # The wRPC call's own result timeout must not cut HANDLER_TIMEOUT_SEC short.
        value = self.effective_config(*key).get("HANDLER_TIMEOUT_SEC", "")
        try:
            return max(float(value), 0.1) + 1.0
        except ValueError:
            return 31.0

    async def _reconcile(self, key: PairKey, reason: str = "endpoint reconfigured") -> None:
        """Make the pair's endpoint or connection match its links; raises (failing the link)
        on bad config, leaving what was there before untouched."""
        try:
            await self._apply_pair(key, reason)
        except ConfigError as exc:
            if exc.key.upper() in self._secret_names(key):
                raise exc.redacted() from None
            raise

    def _secret_names(self, key: PairKey) -> set[str]:
        names: set[str] = set()
        for table in (self.consumer_links, self.handler_links):
            link = table.get(key)
            if link is not None:
                names.update(name.upper() for name in link.secrets)
        return names

    async def _apply_pair(self, key: PairKey, reason: str) -> None:
        if key not in self.consumer_links and key not in self.handler_links:
            await self.hub.remove_endpoint(key, CloseCode.GOING_AWAY, "link deleted")
            await self._close_client(key, "link deleted")
            return
        config = self.effective_config(*key)
        handler = self._component_handler(key)
        if "MODE" not in config and "URI" not in config:
            # Nothing to listen on or connect to: a publish-only pair (it can still reach
            # sessions of endpoints that list it in ALLOWED_PUBLISHERS).
            await self.hub.remove_endpoint(key, CloseCode.GOING_AWAY, reason)
            await self._close_client(key, reason)
            return
        if mode_of(config) == "server":
            settings = server_settings(config)
            # Endpoint first: if it cannot be had, the client connection stays as it was.
            await self.hub.add_endpoint(key, settings, handler)
            await self._close_client(key, "link reconfigured")
            return
        client_config = client_settings(config)
        ssl_context = tls_context(client_config)
        await self.hub.remove_endpoint(key, CloseCode.GOING_AWAY, reason)
        existing = self.clients.get(key)
        if existing is not None and existing.settings == client_config:
            existing.handler = handler
            return
        # One logical session per link: an update that reconnects keeps the session id.
        keep_id = existing.session_id if existing is not None else None
        client = OutboundClient(key, client_config, handler, ssl_context, session_id=keep_id)
        if existing is not None:
            # Publishes that were accepted (Ok) and not yet sent go out on the new connection.
            client.adopt_buffer(existing)
        self.clients[key] = client
        if existing is not None:
            await self._retire_client(existing, "link reconfigured", keep_id=client.session_id)
        if self.cluster is not None and client.session_id is not None:
            await self.cluster.session_id_opened(client.session_id)
        client.start()

    async def _close_client(self, key: PairKey, reason: str) -> None:
        client = self.clients.pop(key, None)
        if client is not None:
            await self._retire_client(client, reason)

    async def _retire_client(
        self, client: OutboundClient, reason: str, keep_id: str | None = None
    ) -> None:
        """Close `client`; its session id stops being reachable unless it is `keep_id`."""
        sid = client.session_id
        if self.cluster is not None and sid is not None and sid != keep_id:
            await self.cluster.session_id_closed(sid)
        await client.close(reason)

    # --- sessions of both modes ------------------------------------------------------------

    def _local_sessions(self) -> list[dict[str, Any]]:
        """This instance's tracked sessions, server mode then client mode."""
        out = [info.to_dict() for info in self.hub.list_sessions()]
        for client in self.clients.values():
            info = client.info()
            if info is not None:
                out.append(info.to_dict())
        return out

    async def _publish_local(
        self, component_id: str, msg: BrokerMessage, mid: str | None = None
    ) -> Ok | Err:
        """Routing on this instance only (a publish, or a fan-out, passed on by another
        instance; or once a session was adopted here)."""
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

    async def _request_local(
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
        moves = self.cluster.moves if self.cluster is not None else None
        return moves is not None and await moves.move_in_orphan(session_id)

    # --- consumer ---------------------------------------------------------------------------

    def _check_linked(self, ctx: InvocationContext) -> Err | None:
        key = (ctx.source_id, ctx.link_name)
        if key not in self.consumer_links:
            return Err(f"component not linked: {ctx.source_id} (link {ctx.link_name!r})")
        error = self.pair_errors.get(key)
        if error is not None:
            return Err(f"link {ctx.link_name!r} of {ctx.source_id} is misconfigured: {error}")
        return None

    async def publish(self, ctx: InvocationContext, msg: BrokerMessage) -> Ok | Err:
        """`consumer.publish`: routed (`RoutingTable.route`), then carried out here, on the
        instance that holds the session, or on every instance (a broadcast or topic)."""
        refused = self._check_linked(ctx)
        if refused is not None:
            return refused
        target = self.routes.route(ctx.source_id, ctx.link_name, msg.subject)
        if isinstance(target, Elsewhere):
            sid = target.session_id
            if self.cluster is None:
                return NoSuchSession.of(sid)
            result = await self.cluster.publish_remote(ctx.source_id, msg)
            if not (_nobody_holds(result, sid) and await self._move_in_orphan(sid)):
                return result
            return await self._publish_local(ctx.source_id, msg)
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
            if not (_nobody_holds(result, sid) and await self._move_in_orphan(sid)):
                return result
            return await self._request_local(ctx.source_id, subject, body, timeout_ms)
        return await self._request_to(ctx.source_id, target, subject, body, timeout_ms)


def _warn_unknown_keys(where: str, keys: Iterable[str]) -> None:
    """One warning naming the keys no mode reads and the closest known ones (never values)."""
    unknown = unknown_keys(keys)
    if unknown:
        log.warning("%s: %s", where, describe_unknown_keys(unknown))


def _warn_unknown_link_keys(link: LinkConfig, side: str, old: LinkConfig | None = None) -> None:
    """Once per link: on a put, and on an update only for keys the old link did not have."""
    keys = [*link.config, *link.secrets]
    if old is not None:
        before = {k.upper() for k in [*old.config, *old.secrets]}
        keys = [k for k in keys if k.upper() not in before]
    _warn_unknown_keys(
        f"link {link.source_id} -> {link.target_id} ({link.link_name}), {side} config", keys
    )
