"""Links -> endpoints and connections: each pair gets the server endpoint (MODE=server) or the
client connection (MODE=client) its links ask for, and loses it when they go.

A new link is always kept: its pair's config may be completed by the pair's other link (a
consumer link and a handler link arrive separately, and the host never re-sends them). A config
error leaves the pair without endpoint or connection, is logged, and is what the component's
publishes get as `Err` until a corrected link arrives. An update with a bad config is refused
instead, keeping the previous link in force.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from wasmcloud_provider_sdk import (
    BrokerMessage,
    Err,
    LinkConfig,
    LinkNotInEffect,
    Ok,
    ProviderContext,
    TransportError,
)

from .client import OutboundClient, tls_context
from .closecodes import CloseCode
from .component_handler import ComponentHandler
from .errors import ConfigError, EndpointConflict
from .links import PairKey, PairLinks, warn_unknown_link_keys
from .server import Handler, ServerHub
from .settings import client_settings, mode_of, server_settings

if TYPE_CHECKING:
    from .cluster import ClusterLink

log = logging.getLogger(__name__)

#: A Python handler for inbound messages (library use): return Err to send the client an
#: error frame; Ok or None means accepted.
PythonHandler = Callable[[BrokerMessage], Awaitable[Ok | Err | None]]

Side = str  # "target" (a consumer link: the provider is its target) or "source" (a handler link)


class Pairs:
    """Carries out link puts, updates and deletes for both modes on the hub (endpoints) and
    `clients` (the routing table's client-mode connections)."""

    def __init__(
        self,
        links: PairLinks,
        hub: ServerHub,
        clients: dict[PairKey, OutboundClient],
        *,
        ctx: ProviderContext | None = None,
        cluster: ClusterLink | None = None,
        python_handler: PythonHandler | None = None,
    ) -> None:
        self.links = links
        self.hub = hub
        self.clients = clients
        #: Under a host: its config, the component calls (None: library use).
        self.ctx = ctx
        #: Under a host: client-mode session ids are announced to the other instances.
        self.cluster = cluster
        self.python_handler = python_handler

    # --- link hooks ---------------------------------------------------------------------------

    async def put(self, link: LinkConfig, side: Side) -> None:
        """A new link; raises `LinkNotInEffect` (the link is kept) when its pair's config is
        not usable yet."""
        warn_unknown_link_keys(link, side)
        key = self._key(link, side)
        self._table(side)[key] = link
        error = await self.reconcile_or_record(key, report=False)
        if error is not None:
            raise LinkNotInEffect(error)

    async def update(self, old: LinkConfig, new: LinkConfig, side: Side) -> None:
        """Replace in place: an unchanged endpoint keeps its sessions; a changed one is
        rebuilt (sessions closed with 1001 "endpoint reconfigured"). A bad config raises,
        and the old link stays in force."""
        warn_unknown_link_keys(new, side, old)
        table, key = self._table(side), self._key(new, side)
        table[key] = new
        try:
            await self._reconcile(key)
        except Exception:
            table[key] = old
            raise
        self.links.errors.pop(key, None)

    async def delete(self, link: LinkConfig, side: Side) -> None:
        """A link went away; with the pair's last link its endpoint or connection goes."""
        key = self._key(link, side)
        self._table(side).pop(key, None)
        await self.reconcile_or_record(key, "link deleted")

    def _table(self, side: Side) -> dict[PairKey, LinkConfig]:
        return self.links.consumer if side == "target" else self.links.handler

    @staticmethod
    def _key(link: LinkConfig, side: Side) -> PairKey:
        component = link.source_id if side == "target" else link.target_id
        return (component, link.link_name)

    async def reconcile_or_record(
        self, key: PairKey, reason: str = "endpoint reconfigured", *, report: bool = True
    ) -> str | None:
        """Reconcile the pair; a config error is recorded (health, publishes) and returned,
        and logged unless `report` is false (the caller reports it)."""
        try:
            await self._reconcile(key, reason)
        except (ConfigError, EndpointConflict, OSError) as exc:
            self.links.errors[key] = str(exc)
            error = (
                f"component {key[0]}, link {key[1]}: {exc} (no endpoint or connection until "
                "a corrected link arrives)"
            )
            if report:
                log.error("%s", error)
            return error
        self.links.errors.pop(key, None)
        return None

    # --- config -> endpoint or connection -----------------------------------------------------

    @property
    def provider_config(self) -> Mapping[str, str]:
        """The provider-level config (none without a host)."""
        return self.ctx.config if self.ctx is not None else {}

    async def _reconcile(self, key: PairKey, reason: str = "endpoint reconfigured") -> None:
        """Make the pair's endpoint or connection match its links; raises (failing the link)
        on bad config, leaving what was there before untouched."""
        try:
            await self._apply(key, reason)
        except ConfigError as exc:
            if exc.key.upper() in self.links.secret_names(key):
                raise exc.redacted() from None
            raise

    async def _apply(self, key: PairKey, reason: str) -> None:
        if not self.links.has_link(key):
            await self.hub.remove_endpoint(key, CloseCode.GOING_AWAY, "link deleted")
            await self.close_client(key, "link deleted")
            return
        config = self.links.effective_config(key, self.provider_config)
        handler = self.component_handler(key)
        if "MODE" not in config and "URI" not in config:
            # Nothing to listen on or connect to: a publish-only pair (it can still reach
            # sessions of endpoints that list it in ALLOWED_PUBLISHERS).
            await self.hub.remove_endpoint(key, CloseCode.GOING_AWAY, reason)
            await self.close_client(key, reason)
            return
        if mode_of(config) == "server":
            settings = server_settings(config)
            # Endpoint first: if it cannot be had, the client connection stays as it was.
            await self.hub.add_endpoint(key, settings, handler)
            await self.close_client(key, "link reconfigured")
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

    async def close_client(self, key: PairKey, reason: str) -> None:
        """Close the pair's client connection, if it has one."""
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

    # --- who handles inbound messages ---------------------------------------------------------

    def component_handler(self, key: PairKey) -> Handler | None:
        """The pair's component (its handler link), else the Python handler, else None."""
        if key in self.links.handler and self.ctx is not None:
            timeout = self.links.handler_call_timeout(key, self.provider_config)
            return ComponentHandler(self.ctx.handler_client, key[0], timeout)
        if self.python_handler is not None:
            return self.wrap_python_handler()
        return None

    def use_python_handler(self, handler: PythonHandler) -> None:
        """Serve inbound messages with `handler` where no component does: the standalone
        endpoint, and hosted endpoints that have no handler link."""
        self.python_handler = handler
        for key, endpoint in self.hub.endpoints.items():
            if key not in self.links.handler:
                endpoint.handler = self.wrap_python_handler()

    def wrap_python_handler(self) -> Handler:
        """The Python handler as an endpoint's handler (None from it means Ok)."""

        async def call(msg: BrokerMessage) -> Ok | Err:
            handler = self.python_handler
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
