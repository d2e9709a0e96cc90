"""A pure-Python implementation of the wasmCloud 1.x capability-provider protocol.

Host data, control plane (links, health, shutdown, config), link secrets, the wRPC NATS
transport and value codec, and typed bindings for `wasmcloud:messaging@0.2.0`.

The names below are imported on first use (PEP 562), so importing one plain module of the
SDK (say `wasmcloud_provider_sdk.messaging`) does not load NATS, asyncio or the runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bindings import ConsumerHandler, HandlerClient, serve_consumer
    from .context import ProviderContext
    from .errors import (
        CodecError,
        HostDataError,
        InvocationTimeout,
        LatticeConnectError,
        LatticeUnavailable,
        LinkError,
        LinkNotInEffect,
        NeedMoreBytes,
        NkeyError,
        NotServedError,
        ProviderSdkError,
        SecretError,
        TransportError,
    )
    from .hostdata import HostData, encode_host_data, parse_host_data, read_host_data
    from .later import Deferred, Later
    from .links import InterfaceLinkDefinition, LinkConfig, LinkIdentity, LinkTable, Role
    from .messaging import BrokerMessage, Err, Ok
    from .provider import HealthCheckResponse, Provider
    from .run import run_provider
    from .runtime import ProviderRuntime
    from .secrets import SecretValue
    from .wrpc import InvocationContext, WrpcTransport

#: Public name -> the submodule that defines it.
_HOME = {
    "BrokerMessage": "messaging",
    "CodecError": "errors",
    "ConsumerHandler": "bindings",
    "Err": "messaging",
    "HandlerClient": "bindings",
    "HealthCheckResponse": "provider",
    "HostData": "hostdata",
    "HostDataError": "errors",
    "InterfaceLinkDefinition": "links",
    "InvocationContext": "wrpc",
    "InvocationTimeout": "errors",
    "LatticeConnectError": "errors",
    "LatticeUnavailable": "errors",
    "Deferred": "later",
    "Later": "later",
    "LinkConfig": "links",
    "LinkError": "errors",
    "LinkIdentity": "links",
    "LinkNotInEffect": "errors",
    "LinkTable": "links",
    "NeedMoreBytes": "errors",
    "NkeyError": "errors",
    "NotServedError": "errors",
    "Ok": "messaging",
    "Provider": "provider",
    "ProviderContext": "context",
    "ProviderRuntime": "runtime",
    "ProviderSdkError": "errors",
    "Role": "links",
    "SecretError": "errors",
    "SecretValue": "secrets",
    "TransportError": "errors",
    "WrpcTransport": "wrpc",
    "encode_host_data": "hostdata",
    "parse_host_data": "hostdata",
    "read_host_data": "hostdata",
    "run_provider": "run",
    "serve_consumer": "bindings",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BrokerMessage",
    "CodecError",
    "ConsumerHandler",
    "Deferred",
    "Err",
    "HandlerClient",
    "HealthCheckResponse",
    "HostData",
    "HostDataError",
    "InterfaceLinkDefinition",
    "InvocationContext",
    "InvocationTimeout",
    "Later",
    "LatticeConnectError",
    "LatticeUnavailable",
    "LinkConfig",
    "LinkError",
    "LinkIdentity",
    "LinkNotInEffect",
    "LinkTable",
    "NeedMoreBytes",
    "NkeyError",
    "NotServedError",
    "Ok",
    "Provider",
    "ProviderContext",
    "ProviderRuntime",
    "ProviderSdkError",
    "Role",
    "SecretError",
    "SecretValue",
    "TransportError",
    "WrpcTransport",
    "encode_host_data",
    "parse_host_data",
    "read_host_data",
    "run_provider",
    "serve_consumer",
]
