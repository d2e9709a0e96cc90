"""Effective configuration of a (component, link name) pair (README "Server mode"). Sans-I/O.

Layers, later wins: provider-level config (HostData `config`, `config.update`), the target
config of the component's `consumer` link to us, the source config of our `handler` link to
the component, then link secrets of the same names. Keys are matched case-insensitively and
stored upper-case.
"""

from __future__ import annotations

from collections.abc import Mapping

from wasmcloud_provider_sdk import SecretValue


def normalise(config: Mapping[str, str]) -> dict[str, str]:
    """Upper-case every key (users write both `MODE` and `mode`)."""
    return {key.upper(): value for key, value in config.items()}


def merge_config(
    provider_config: Mapping[str, str],
    consumer_config: Mapping[str, str] | None = None,
    handler_config: Mapping[str, str] | None = None,
    secrets: Mapping[str, SecretValue] | None = None,
) -> dict[str, str]:
    """Overlay the layers in order; secrets (as text) override config of the same name."""
    merged = normalise(provider_config)
    merged.update(normalise(consumer_config or {}))
    merged.update(normalise(handler_config or {}))
    for name, value in (secrets or {}).items():
        merged[name.upper()] = value.as_str()
    return merged
