"""`ProviderContext`: what a running provider sees of the runtime that runs it.

Its own module so that `Provider` (whose hooks receive it) and `ProviderRuntime` (which builds
it) both depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient

from .bindings import HandlerClient
from .hostdata import HostData
from .links import LinkTable
from .otel import Telemetry
from .wrpc import WrpcTransport


@dataclass
class ProviderContext:
    """What a provider can use at run time: identity, NATS, wRPC, config and links."""

    host_data: HostData
    nc: NatsClient
    transport: WrpcTransport
    handler_client: HandlerClient
    links: LinkTable
    config: dict[str, str] = field(default_factory=dict)
    #: OpenTelemetry tracer/meter per the host's otel_config (None where off).
    telemetry: Telemetry = field(default_factory=Telemetry)

    @property
    def provider_id(self) -> str:
        """This provider's id on the lattice."""
        return self.host_data.provider_key

    @property
    def lattice(self) -> str:
        """The lattice name."""
        return self.host_data.lattice

    @property
    def prefix(self) -> str:
        """The wRPC prefix and queue group of this provider's exports: `{lattice}.{id}`."""
        return f"{self.lattice}.{self.provider_id}"


__all__ = ["ProviderContext"]
