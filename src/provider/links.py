"""The links of each (component, link name) pair, and what their config says. Sans-I/O.

A pair has up to two links: the component's consumer link (the provider is its target: the
component publishes) and its handler link (the provider is the source: it calls the
component's `handle-message`). They arrive separately, and the pair's config is the two merged
over the provider's own config (`config.merge_config`). `PairLinks` keeps both tables and the
pairs whose config is not usable; `pairs.Pairs` turns a pair's links into a server endpoint or
a client connection.

Unknown config keys are warned about once (`warn_unknown_keys`, `ReportedKeys`), naming the
closest known key and never a value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from wasmcloud_provider_sdk.links import LinkConfig

from .config import merge_config
from .settings import describe_unknown_keys, unknown_keys

log = logging.getLogger(__name__)

PairKey = tuple[str, str]  # (component id, link name)

#: The wRPC call's own result timeout when HANDLER_TIMEOUT_SEC is not a number (30 s + 1 s).
DEFAULT_HANDLER_CALL_TIMEOUT = 31.0


class PairLinks:
    """Every pair's consumer and handler link, and the pairs whose config is not usable."""

    def __init__(self) -> None:
        #: Consumer links (the component publishes through the provider), by pair.
        self.consumer: dict[PairKey, LinkConfig] = {}
        #: Handler links (the provider calls the component), by pair.
        self.handler: dict[PairKey, LinkConfig] = {}
        #: Pairs whose config is not usable, with the error (health and publishes show it).
        self.errors: dict[PairKey, str] = {}

    def has_link(self, key: PairKey) -> bool:
        """Has the pair a link left (else its endpoint or connection goes)?"""
        return key in self.consumer or key in self.handler

    def effective_config(self, key: PairKey, provider_config: Mapping[str, str]) -> dict[str, str]:
        """The pair's merged config: provider config, consumer link, handler link, then the
        links' secrets (README "Server mode")."""
        consumer = self.consumer.get(key)
        handler = self.handler.get(key)
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

    def secret_names(self, key: PairKey) -> set[str]:
        """The (upper-case) keys whose values came from the pair's secrets (never shown)."""
        names: set[str] = set()
        for table in (self.consumer, self.handler):
            link = table.get(key)
            if link is not None:
                names.update(name.upper() for name in link.secrets)
        return names

    def handler_call_timeout(self, key: PairKey, provider_config: Mapping[str, str]) -> float:
        """The wRPC timeout of a `handle-message` call: a second more than
        HANDLER_TIMEOUT_SEC, so the call's own timeout never cuts that short."""
        value = self.effective_config(key, provider_config).get("HANDLER_TIMEOUT_SEC", "")
        try:
            return max(float(value), 0.1) + 1.0
        except ValueError:
            return DEFAULT_HANDLER_CALL_TIMEOUT


def warn_unknown_keys(where: str, keys: Iterable[str]) -> None:
    """One warning naming the keys no mode reads and the closest known ones (never values)."""
    unknown = unknown_keys(keys)
    if unknown:
        log.warning("%s: %s", where, describe_unknown_keys(unknown))


def warn_unknown_link_keys(link: LinkConfig, side: str, old: LinkConfig | None = None) -> None:
    """Once per link: on a put, and on an update only for keys the old link did not have."""
    keys = [*link.config, *link.secrets]
    if old is not None:
        before = {k.upper() for k in [*old.config, *old.secrets]}
        keys = [k for k in keys if k.upper() not in before]
    warn_unknown_keys(
        f"link {link.source_id} -> {link.target_id} ({link.link_name}), {side} config", keys
    )


class ReportedKeys:
    """Provider-level config keys already warned about: each is reported once per process."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def report(self, config: Iterable[str]) -> None:
        """Warn about the misspelled keys of `config` not reported before."""
        keys = list(config)
        fresh = [k for k in keys if k.upper() not in self._seen]
        self._seen.update(k.upper() for k in keys)
        warn_unknown_keys("provider config", fresh)
