"""The WebSocket messaging provider on top of the SDK: links, config and consumer calls."""

from __future__ import annotations

import logging

from wasmcloud_provider_sdk import (
    BrokerMessage,
    Err,
    HealthCheckResponse,
    InvocationContext,
    LinkConfig,
    Ok,
    Provider,
    ProviderContext,
    serve_consumer,
)

from .config import merge_config

log = logging.getLogger(__name__)

PairKey = tuple[str, str]  # (component id, link name)


class WebSocketMessagingProvider(Provider):
    """Serves `wasmcloud:messaging/consumer` and calls components' `handler`."""

    def __init__(self) -> None:
        self.ctx: ProviderContext | None = None
        self.consumer_links: dict[PairKey, LinkConfig] = {}
        self.handler_links: dict[PairKey, LinkConfig] = {}

    # --- SDK hooks ------------------------------------------------------------------------

    async def init(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def serve_exports(self, ctx: ProviderContext) -> None:
        """Serve the consumer interface (called by the runtime after initial links)."""
        await serve_consumer(ctx.transport, ctx.prefix, self)

    async def on_link_as_target(self, link: LinkConfig) -> None:
        self.consumer_links[(link.source_id, link.link_name)] = link

    async def on_link_as_source(self, link: LinkConfig) -> None:
        self.handler_links[(link.target_id, link.link_name)] = link

    async def on_link_deleted_as_target(self, link: LinkConfig) -> None:
        self.consumer_links.pop((link.source_id, link.link_name), None)

    async def on_link_deleted_as_source(self, link: LinkConfig) -> None:
        self.handler_links.pop((link.target_id, link.link_name), None)

    async def health(self) -> HealthCheckResponse:
        consumers, handlers = len(self.consumer_links), len(self.handler_links)
        return HealthCheckResponse(
            True, f"{consumers} consumer link(s), {handlers} handler link(s)"
        )

    # --- configuration --------------------------------------------------------------------

    def effective_config(self, component_id: str, link_name: str) -> dict[str, str]:
        """The merged config of a (component, link name) pair (DESIGN.md §3)."""
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

    # --- consumer ---------------------------------------------------------------------------

    def _check_linked(self, ctx: InvocationContext) -> Err | None:
        if (ctx.source_id, ctx.link_name) not in self.consumer_links:
            return Err(f"component not linked: {ctx.source_id} (link {ctx.link_name!r})")
        return None

    async def publish(self, ctx: InvocationContext, msg: BrokerMessage) -> Ok | Err:
        """`consumer.publish`: route to WebSocket sessions (no endpoint yet: no session)."""
        refused = self._check_linked(ctx)
        if refused is not None:
            return refused
        return Err(f"no such session: {msg.subject}")

    async def request(
        self, ctx: InvocationContext, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """`consumer.request`: ask a WebSocket session and wait for its answer."""
        refused = self._check_linked(ctx)
        if refused is not None:
            return refused
        return Err(f"no such session: {subject}")
