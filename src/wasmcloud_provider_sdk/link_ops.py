"""Link puts, link deletes and config updates, applied in arrival order with the hooks.

docs/SDK.md, "Decisions". One worker takes the ops queue in order, so a slow hook delays
later link changes but never health checks or invocations. A link is stored only after its
hook succeeded (or raised `LinkNotInEffect`); deletes are idempotent; a config update equal
to the current config is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .context import ProviderContext
from .control import (
    Op,
    OpKind,
    link_description,
    parse_config_update,
    parse_link_definition,
    side_config,
)
from .errors import LinkError, LinkNotInEffect, NkeyError, SecretError
from .links import InterfaceLinkDefinition, LinkConfig, LinkIdentity, PutKind, Role, role_of
from .nkeys import XKey
from .provider import Provider
from .secrets import open_link_secrets

log = logging.getLogger(__name__)


class LinkApplier:
    """Applies link puts, deletes and config updates to one provider and its link table."""

    def __init__(
        self,
        provider: Provider,
        ctx: ProviderContext,
        *,
        provider_xkey: XKey | None = None,
        host_xkey: XKey | None = None,
    ) -> None:
        self._provider = provider
        self._ctx = ctx
        self._provider_id = ctx.host_data.provider_key
        self._provider_xkey = provider_xkey
        self._host_xkey = host_xkey
        #: Links deleted since start: never re-applied from the lattice's (older) list.
        self.deleted: set[LinkIdentity] = set()

    def holds(self, identity: LinkIdentity) -> bool:
        """Whether this link is stored, or was deleted since start (so not to re-apply)."""
        return self._ctx.links.get(identity) is not None or identity in self.deleted

    def _link_config(
        self, link: InterfaceLinkDefinition, role: Role, *, with_secrets: bool = True
    ) -> LinkConfig:
        """The link seen from our side: our side's config and (opened) secrets."""
        sealed = link.source_secrets if role is Role.SOURCE else link.target_secrets
        secrets = (
            open_link_secrets(sealed, self._provider_xkey, self._host_xkey) if with_secrets else {}
        )
        return side_config(link, role, secrets)

    async def apply_put(self, link: InterfaceLinkDefinition) -> None:
        """Apply a link put: a new link, an update of a stored one, or a duplicate (ignored)."""
        links = self._ctx.links
        try:
            role = role_of(link, self._provider_id)
        except LinkError as exc:
            log.warning("ignoring link put: %s", exc)
            return
        kind = links.classify(link)
        desc = link_description(link)
        if kind is PutKind.DUPLICATE:
            log.info("ignoring duplicate link put %s", desc)
            return
        try:
            config = self._link_config(link, role)
        except (SecretError, NkeyError) as exc:
            log.error("link %s rejected: its secrets could not be opened: %s", desc, exc)
            return
        if kind is PutKind.UPDATE:
            old = links.get(link.identity)
            assert old is not None
            try:
                old_config = self._link_config(old, role)
                if role is Role.SOURCE:
                    await self._provider.on_link_updated_as_source(old_config, config)
                else:
                    await self._provider.on_link_updated_as_target(old_config, config)
            except Exception as exc:
                log.warning("link %s update failed (the previous link stays): %s", desc, exc)
                return
            links.store(link)
            log.info("link %s updated", desc)
            return
        try:
            if role is Role.SOURCE:
                await self._provider.on_link_as_source(config)
            else:
                await self._provider.on_link_as_target(config)
        except LinkNotInEffect as exc:
            # Kept for when its config is completed, but nothing was applied: one error
            # line, and no "applied" line after it.
            links.store(link)
            log.error("link %s kept, not in effect: %s", desc, exc)
            return
        except Exception as exc:
            log.warning("link %s failed: %s", desc, exc)
            return
        links.store(link)
        log.info("link %s applied as %s", desc, role.value)

    async def apply_del(self, link: InterfaceLinkDefinition) -> None:
        """Apply a link delete (remembered, so the lattice's list never re-applies it)."""
        self.deleted.add(link.identity)
        try:
            role = role_of(link, self._provider_id)
        except LinkError as exc:
            log.warning("ignoring link delete: %s", exc)
            return
        stored = self._ctx.links.remove(link.identity)
        if stored is None:
            log.info(
                "link delete for unknown link %s -> %s (%s): nothing to do",
                link.source_id,
                link.target,
                link.name,
            )
            return
        # Secrets are not needed to tear down (and a delete carries none).
        config = self._link_config(stored, role, with_secrets=False)
        try:
            if role is Role.SOURCE:
                await self._provider.on_link_deleted_as_source(config)
            else:
                await self._provider.on_link_deleted_as_target(config)
        except Exception:
            log.exception("link delete hook failed for %s -> %s", link.source_id, link.target)
        log.info("link %s -> %s (%s) deleted", link.source_id, link.target, link.name)

    async def apply_config(self, data: bytes) -> None:
        """Apply a provider config update (ignored when malformed or unchanged)."""
        ctx = self._ctx
        try:
            config = parse_config_update(data)
        except (ValueError, TypeError) as exc:
            log.error("ignoring malformed config update: %s", exc)
            return
        if config == ctx.config:
            log.debug("config update identical to current config: ignored")
            return
        ctx.config = config
        log.info("provider config updated (%d key(s))", len(config))
        await self._provider.on_config_update(dict(config))


def _parse_link(data: bytes) -> InterfaceLinkDefinition | None:
    try:
        return parse_link_definition(data)
    except LinkError as exc:
        log.error("ignoring malformed link definition (%s)", exc)
        return None


async def apply_in_order(
    ops: asyncio.Queue[Op],
    applier: LinkApplier,
    recover_missed_links: Callable[[], Awaitable[None]],
) -> None:
    """Apply the queued ops one at a time, for ever; a failing op is logged and skipped."""
    while True:
        kind, data = await ops.get()
        try:
            if kind is OpKind.PUT:
                link = _parse_link(data)
                if link is not None:
                    await applier.apply_put(link)
            elif kind is OpKind.DELETE:
                link = _parse_link(data)
                if link is not None:
                    await applier.apply_del(link)
            elif kind is OpKind.LATTICE:
                await recover_missed_links()
            else:
                await applier.apply_config(data)
        except Exception:
            log.exception("failed to apply %s", kind.value)
