"""An endpoint's component as its handler: `await handler(msg)`, or started with a callback.

The session's inbox uses `start` (the hot path: the call's outcome arrives in the NATS
callback, no task or future per message); everything else (client mode, session events
paced to the component, tracing on) awaits the handler like any other.
"""

from __future__ import annotations

from wasmcloud_provider_sdk import BrokerMessage, Err, Ok
from wasmcloud_provider_sdk.bindings import HandlerClient
from wasmcloud_provider_sdk.wrpc_invoke import Outcome


class ComponentHandler:
    """Calls `handle-message` on one component, bounded by the link's handler timeout."""

    __slots__ = ("client", "component_id", "timeout")

    def __init__(self, client: HandlerClient, component_id: str, timeout: float) -> None:
        self.client = client
        self.component_id = component_id
        self.timeout = timeout

    async def __call__(self, msg: BrokerMessage) -> Ok | Err:
        return await self.client.handle_message(self.component_id, msg, timeout=self.timeout)

    @property
    def startable(self) -> bool:
        """Whether `start` may be used (not with tracing on: spans need the awaited call)."""
        return not self.client.traced

    def start(self, msg: BrokerMessage, timeout: float, on_outcome: Outcome) -> None:
        """Start the call, bounded by `timeout` in all; `on_outcome(result, error)` is
        called once, later. Raises `LatticeUnavailable` at once when not connected."""
        self.client.start_handle_message(self.component_id, msg, timeout, on_outcome)
