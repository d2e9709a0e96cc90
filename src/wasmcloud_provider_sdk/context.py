"""`ProviderContext`: what a running provider sees of the runtime that runs it.

Its own module so that `Provider` (whose hooks receive it) and `ProviderRuntime` (which builds
it) both depend on it and not on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient

from .bindings import HandlerClient
from .hostdata import HostData
from .links import LinkTable
from .otel import Telemetry
from .wrpc import WrpcTransport


async def _nothing_to_wait() -> None:
    return None


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
    #: Returns once this provider's other worker processes are ready (their initial links
    #: applied, their listeners bound), or after a timeout; at once in a worker process and
    #: where there is only one. A provider that listens on ports shared by its workers
    #: (SO_REUSEPORT) awaits it before its first listener binds: connections made meanwhile
    #: (clients reconnecting after a restart) would otherwise all go to worker 0 and stay.
    workers_ready: Callable[[], Awaitable[None]] = _nothing_to_wait

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
