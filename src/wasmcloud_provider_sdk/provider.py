"""The provider interface: one hook per life-cycle event, named after the Rust and Go SDKs'.

Subclass `Provider`, override what you need, and run it with `run_provider`. Every hook is a
coroutine; a hook that raises makes that one event fail (the link is not stored, the health
reply says unhealthy) and never stops the provider.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import ProviderContext
from .links import LinkConfig


@dataclass(frozen=True)
class HealthCheckResponse:
    """What the health subject answers: `{"healthy": bool, "message"?: str}`."""

    healthy: bool = True
    message: str | None = None

    def to_json(self) -> dict[str, object]:
        """The host's JSON shape (`message` omitted when there is none, as in the Rust SDK)."""
        out: dict[str, object] = {"healthy": self.healthy}
        if self.message is not None:
            out["message"] = self.message
        return out


class Provider:
    """Base class of a capability provider; every hook defaults to a no-op."""

    async def init(self, ctx: ProviderContext) -> None:
        """Called once, after NATS is connected and before initial links are applied."""

    async def serve_exports(self, ctx: ProviderContext) -> None:
        """Serve this provider's wRPC exports, e.g. `await serve_consumer(ctx.transport, ...)`.

        Called once, after `init` and the initial links; the runtime then proves the new
        subscriptions live before it answers health checks. The default serves nothing (a
        provider that only calls components' exports). Raising fails the start, as in `init`:
        `run_provider` logs the error and exits 1.
        """

    async def on_link_as_target(self, link: LinkConfig) -> None:
        """A component linked to this provider (it will call our exports)."""

    async def on_link_as_source(self, link: LinkConfig) -> None:
        """This provider was linked to a component (we will call its exports)."""

    async def on_link_deleted_as_target(self, link: LinkConfig) -> None:
        """A link on which we were the target was deleted."""

    async def on_link_deleted_as_source(self, link: LinkConfig) -> None:
        """A link on which we were the source was deleted."""

    async def on_link_updated_as_target(self, old: LinkConfig, new: LinkConfig) -> None:
        """A stored target link was put again with different content.

        The default deletes `old` and applies `new`; if applying `new` fails it re-applies
        `old` and raises, so that the previous link stays in force (the runtime keeps it).
        """
        await self.on_link_deleted_as_target(old)
        try:
            await self.on_link_as_target(new)
        except Exception:
            await self.on_link_as_target(old)
            raise

    async def on_link_updated_as_source(self, old: LinkConfig, new: LinkConfig) -> None:
        """Like `on_link_updated_as_target`, for a link on which we are the source."""
        await self.on_link_deleted_as_source(old)
        try:
            await self.on_link_as_source(new)
        except Exception:
            await self.on_link_as_source(old)
            raise

    async def health(self) -> HealthCheckResponse:
        """Answer a host health check; the default says healthy."""
        return HealthCheckResponse(True)

    async def on_config_update(self, config: dict[str, str]) -> None:
        """The provider-level config changed (the full merged map is given)."""

    async def shutdown(self) -> None:
        """Release everything; called before the shutdown reply, so keep it well under 300 ms."""
