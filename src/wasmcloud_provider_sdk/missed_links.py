"""Links put before this provider subscribed, recovered from the lattice's control interface.

docs/SDK.md, "Life cycle" step 8. A put published before we subscribed is lost on the wire;
the host's control interface still lists the link (`link.get`) and its named configs
(`config.get.<name>`), so the runtime reads them once, after start-up, and applies the links
it does not hold. The listing and merging rules are in `lattice_links` (sans-I/O).
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from .lattice_links import (
    LatticeLink,
    config_get_subject,
    config_values,
    ctl_response,
    link_get_subject,
    links_for,
)
from .link_ops import LinkApplier

log = logging.getLogger(__name__)

#: How long the control interface may take to list the lattice's links (or read a config).
CTL_TIMEOUT = 2.0


class MissedLinks:
    """Asks the lattice for this provider's links and applies those it missed."""

    def __init__(
        self, nc: NatsClient, lattice: str, provider_id: str, applier: LinkApplier
    ) -> None:
        self._nc = nc
        self._lattice = lattice
        self._provider_id = provider_id
        self._applier = applier

    async def recover(self) -> None:
        """Apply the links the lattice holds for this provider that never reached it (a put
        published before we subscribed is lost; see `lattice_links`). Never raises: without
        an answer (no permission, no host) one warning says what was not checked."""
        subject = link_get_subject(self._lattice)
        hint = (
            f"links put before this provider subscribed, if any, are not applied (the "
            f"provider needs permission to publish to {subject} and "
            f"{config_get_subject(self._lattice, '*')})"
        )
        try:
            reply = await self._nc.request(subject, b"", timeout=CTL_TIMEOUT)
            links, problems = links_for(ctl_response(reply.data, "link.get"), self._provider_id)
        except NoRespondersError:
            log.warning("no host answered %s: %s", subject, hint)
            return
        except NatsTimeout:
            log.warning("no answer on %s within %gs: %s", subject, CTL_TIMEOUT, hint)
            return
        except Exception as exc:  # LinkError, or the connection went away
            log.warning("could not list the lattice's links (%s): %s", exc, hint)
            return
        for problem in problems:
            log.warning("link.get: ignoring a listed link: %s", problem)
        missed = [link for link in links if not self._applier.holds(link.identity)]
        if not missed:
            log.debug("the lattice holds no link this provider missed")
            return
        configs, config_errors = await self._read_configs(
            set().union(*(link.config_names() for link in missed))
        )
        for link in missed:
            await self._apply_missed(link, configs, config_errors)

    async def _read_configs(
        self, names: set[str]
    ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """The values of these named configs, and an error text for each unreadable one."""
        configs: dict[str, dict[str, str]] = {}
        errors: dict[str, str] = {}
        for name in sorted(names):
            subject = config_get_subject(self._lattice, name)
            try:
                reply = await self._nc.request(subject, b"", timeout=CTL_TIMEOUT)
                configs[name] = config_values(ctl_response(reply.data, f"config {name!r}"), name)
            except (NoRespondersError, NatsTimeout):
                errors[name] = f"no answer on {subject}"
            except Exception as exc:
                errors[name] = str(exc)
        return configs, errors

    async def _apply_missed(
        self, link: LatticeLink, configs: dict[str, dict[str, str]], errors: dict[str, str]
    ) -> None:
        desc = link.description
        secrets = link.secret_names(self._provider_id)
        if secrets:
            log.error(
                "link %s was put before this provider subscribed and needs secrets (%s) that "
                "only a host can resolve: not applied; delete the link and put it again, or "
                "restart the provider",
                desc,
                ", ".join(secrets),
            )
            return
        unreadable = [f"{n}: {errors[n]}" for n in sorted(link.config_names()) if n in errors]
        if unreadable:
            log.error(
                "link %s was put before this provider subscribed, but its config could not "
                "be read (%s): not applied",
                desc,
                "; ".join(unreadable),
            )
            return
        log.info("link %s was put before this provider subscribed: applying it now", desc)
        await self._applier.apply_put(link.resolve(configs))
