"""A pure-Python implementation of the wasmCloud 1.x capability-provider protocol.

Host data, control plane (links, health, shutdown, config), link secrets, the wRPC NATS
transport and value codec, and typed bindings for `wasmcloud:messaging@0.2.0`.
"""

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
from .links import InterfaceLinkDefinition, LinkConfig, LinkIdentity, LinkTable, Role
from .messaging import BrokerMessage, Err, Ok
from .provider import HealthCheckResponse, Provider
from .run import run_provider
from .runtime import ProviderRuntime
from .secrets import SecretValue
from .wrpc import InvocationContext, WrpcTransport

__all__ = [
    "BrokerMessage",
    "CodecError",
    "ConsumerHandler",
    "Err",
    "HandlerClient",
    "HealthCheckResponse",
    "HostData",
    "HostDataError",
    "InterfaceLinkDefinition",
    "InvocationContext",
    "InvocationTimeout",
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
