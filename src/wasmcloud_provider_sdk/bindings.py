"""Typed wRPC bindings for `wasmcloud:messaging@0.2.0`.

* `serve_consumer` exports `consumer.publish` / `consumer.request` and hands each call to a
  `ConsumerHandler`. A handler that raises is answered with a WIT-level `Err(string)`: a
  transport failure would trap the calling 0.2.0 component (docs/PROTOCOL.md 4.5).
* `HandlerClient` calls `handler.handle-message` on a component.
"""

from __future__ import annotations

import logging
from typing import Protocol

from nats.aio.subscription import Subscription

from .messaging import (
    CONSUMER_INSTANCE,
    HANDLER_INSTANCE,
    BrokerMessage,
    Err,
    Ok,
    RequestParams,
    decode_broker_message,
    decode_request_params,
    decode_unit_result,
    encode_broker_message,
    encode_message_result,
    encode_unit_result,
)
from .wrpc import DEFAULT_RESULT_TIMEOUT, InvocationContext, WrpcTransport

log = logging.getLogger(__name__)


class ConsumerHandler(Protocol):
    """What a provider implements to serve `wasmcloud:messaging/consumer@0.2.0`."""

    async def publish(self, ctx: InvocationContext, msg: BrokerMessage) -> Ok | Err:
        """Handle `consumer.publish`."""
        ...

    async def request(
        self, ctx: InvocationContext, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """Handle `consumer.request`; `Ok(BrokerMessage)` is the reply."""
        ...


class ConsumerRoute(Protocol):
    """Where a consumer call belongs, for a provider run as several instances: None to serve
    it here, or the subject of the instance it is handed over to (`wrpc_handover`)."""

    def publish_holder(self, ctx: InvocationContext, msg: BrokerMessage) -> str | None:
        """For `consumer.publish`."""
        ...

    def request_holder(self, ctx: InvocationContext, params: RequestParams) -> str | None:
        """For `consumer.request`."""
        ...


async def serve_consumer(
    transport: WrpcTransport,
    prefix: str,
    handler: ConsumerHandler,
    route: ConsumerRoute | None = None,
) -> list[Subscription]:
    """Serve both consumer functions under `prefix` (`{lattice}.{provider_id}`); with
    `route`, a call that belongs to another instance is handed over to it."""

    async def on_publish(ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        try:
            result = await handler.publish(ctx, msg)
        except Exception as exc:
            log.exception("consumer.publish from %s failed", ctx.source_id)
            result = Err(f"publish failed: {exc}")
        return encode_unit_result(result)

    async def on_request(ctx: InvocationContext, params: RequestParams) -> bytes:
        try:
            result = await handler.request(ctx, params.subject, params.body, params.timeout_ms)
            if isinstance(result, Ok) and not isinstance(result.value, BrokerMessage):
                raise TypeError("request handler returned Ok without a BrokerMessage")
        except Exception as exc:
            log.exception("consumer.request from %s failed", ctx.source_id)
            result = Err(f"request failed: {exc}")
        return encode_message_result(result)

    return [
        await transport.serve(
            prefix,
            CONSUMER_INSTANCE,
            "publish",
            decode_broker_message,
            on_publish,
            None if route is None else route.publish_holder,
        ),
        await transport.serve(
            prefix,
            CONSUMER_INSTANCE,
            "request",
            decode_request_params,
            on_request,
            None if route is None else route.request_holder,
        ),
    ]


class HandlerClient:
    """Calls `wasmcloud:messaging/handler@0.2.0.handle-message` on linked components."""

    def __init__(self, transport: WrpcTransport, lattice: str, provider_id: str) -> None:
        self._transport = transport
        self._lattice = lattice
        self._provider_id = provider_id

    async def handle_message(
        self,
        component_id: str,
        msg: BrokerMessage,
        *,
        timeout: float = DEFAULT_RESULT_TIMEOUT,
    ) -> Ok | Err:
        """Deliver `msg`; returns the component's `Ok`/`Err`.

        Raises `NotServedError` when no host serves the component, `InvocationTimeout` or
        `TransportError` when the call fails below the WIT level (e.g. the component trapped).
        """
        result: Ok | Err = await self._transport.invoke(
            f"{self._lattice}.{component_id}",
            HANDLER_INSTANCE,
            "handle-message",
            encode_broker_message(msg),
            decode_unit_result,
            headers={"source-id": self._provider_id, "target-id": component_id},
            # A host answers the handshake only once the component can take the call (its
            # instances are busy meanwhile), so waiting for it is part of the budget.
            handshake_timeout=timeout,
            result_timeout=timeout,
        )
        return result
