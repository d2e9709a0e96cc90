"""Validated settings of a (component, link name) pair from its merged config. Sans-I/O.

Every key is checked when the link arrives; a bad value raises `ConfigError` naming the key,
the value and what is allowed, and fails only that link. Defaults are explained where set.

The jobs, one module each: `keys` (the known keys, the mode, the unknown-key warning),
`values` (reading one key's value), `server` (`ServerSettings`), `client` (`ClientSettings`).
"""

from __future__ import annotations

from ..errors import ConfigError as ConfigError
from .client import RESERVED_HEADERS, ClientSettings, client_settings
from .keys import KNOWN_KEYS, OPEN_KEY_PREFIXES, describe_unknown_keys, mode_of, unknown_keys
from .server import DEFAULT_SERVER_PATH, ServerSettings, parse_listen_uri, server_settings

__all__ = [
    "DEFAULT_SERVER_PATH",
    "KNOWN_KEYS",
    "OPEN_KEY_PREFIXES",
    "RESERVED_HEADERS",
    "ClientSettings",
    "ConfigError",
    "ServerSettings",
    "client_settings",
    "describe_unknown_keys",
    "mode_of",
    "parse_listen_uri",
    "server_settings",
    "unknown_keys",
]
