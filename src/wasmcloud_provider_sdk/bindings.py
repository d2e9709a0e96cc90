"""Typed wRPC bindings for `wasmcloud:messaging@0.2.0`.

* `serve_consumer` exports `consumer.publish` / `consumer.request` and hands each call to a
  `ConsumerHandler`. A handler that raises is answered with a WIT-level `Err(string)`: a
  transport failure would trap the calling 0.2.0 component (docs/PROTOCOL.md 4.5).
* `HandlerClient` calls `handler.handle-message` on a component.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from types import MappingProxyType
from typing import Protocol

from .codec import leading_string
from .later import Deferred, Later
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
from .wrpc import (
    DEFAULT_RESULT_TIMEOUT,
    PROTOCOL,
    InvocationContext,
    WrpcTransport,
    header_block_len,
)
from .wrpc_invoke import Call, Outcome

log = logging.getLogger(__name__)


class ConsumerHandler(Protocol):
    """What a provider implements to serve `wasmcloud:messaging/consumer@0.2.0`."""

    def publish(
        self, ctx: InvocationContext, msg: BrokerMessage
    ) -> Ok | Err | Later[Ok | Err] | Deferred[Ok | Err] | Awaitable[Ok | Err]:
        """Handle `consumer.publish`: the result, or an awaitable of it (an `async def`
        is fine; returning the result itself lets the call be answered at once, and a
        `Later` or `Deferred` lets it be answered from the callback that sets it, without
        a task)."""
        ...

    async def request(
        self, ctx: InvocationContext, subject: str, body: bytes, timeout_ms: int
    ) -> Ok | Err:
        """Handle `consumer.request`; `Ok(BrokerMessage)` is the reply."""
        ...


class ConsumerRoute(Protocol):
    """Where a consumer call belongs, for a provider run as several instances: None to serve
    it here, or the subject of the instance it is handed over to (`wrpc_handover`)."""

    def subject_holder(self, ctx: InvocationContext, subject: str) -> str | None:
        """For a `consumer.publish` or `consumer.request` to `subject`: both start their
        parameters with it, and it is read from there alone (nothing else is decoded on an
        instance that hands the call over)."""
        ...


async def serve_consumer(
    transport: WrpcTransport,
    prefix: str,
    handler: ConsumerHandler,
    route: ConsumerRoute | None = None,
) -> list[int]:
    """Serve both consumer functions under `prefix` (`{lattice}.{provider_id}`); with
    `route`, a call that belongs to another instance is handed over to it. Returns the
    subscription ids."""

    def on_publish(
        ctx: InvocationContext, msg: BrokerMessage
    ) -> bytes | Later[bytes] | Deferred[bytes] | Awaitable[bytes]:
        try:
            answer = handler.publish(ctx, msg)
        except Exception as exc:
            log.exception("consumer.publish from %s failed", ctx.source_id)
            answer = Err(f"publish failed: {exc}")
        if isinstance(answer, (Ok, Err)):
            return encode_unit_result(answer)
        if isinstance(answer, (Later, Deferred)):
            return answer.map(encode_unit_result)  # sent when set: no task
        return finish_publish(ctx, answer)

    async def finish_publish(ctx: InvocationContext, pending: Awaitable[Ok | Err]) -> bytes:
        try:
            result = await pending
        except Exception as exc:
            log.exception("consumer.publish from %s failed", ctx.source_id)
            result = Err(f"publish failed: {exc}")
        return encode_unit_result(result)

    def on_route(ctx: InvocationContext, data: bytes) -> str | None:
        assert route is not None
        subject = leading_string(data)
        return None if subject is None else route.subject_holder(ctx, subject)

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
            None if route is None else on_route,
        ),
        await transport.serve(
            prefix,
            CONSUMER_INSTANCE,
            "request",
            decode_request_params,
            on_request,
            None if route is None else on_route,
        ),
    ]


class HandlerClient:
    """Calls `wasmcloud:messaging/handler@0.2.0.handle-message` on linked components."""

    def __init__(self, transport: WrpcTransport, lattice: str, provider_id: str) -> None:
        self._transport = transport
        self._lattice = lattice
        self._provider_id = provider_id
        #: Per component: the handle-message subject, its headers (read-only: the wire
        #: encodes them once) and their encoded size.
        self._targets: dict[str, tuple[str, Mapping[str, str], int]] = {}

    @property
    def traced(self) -> bool:
        """Whether calls make trace spans (the host enabled traces)."""
        return self._transport.tracer is not None

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

    def start_handle_message(
        self,
        component_id: str,
        msg: BrokerMessage,
        timeout: float,
        on_outcome: Outcome,
    ) -> Call:
        """Start delivering `msg`; `on_outcome(result, error)` is called once with the
        component's `Ok`/`Err`, or with the error `handle_message` would raise (a timeout is
        `InvocationTimeout`). The whole call, handshake included, is bounded by `timeout`.
        No trace headers are added (a call made while serving another should use
        `handle_message`). Raises `LatticeUnavailable` when not connected (nothing sent)."""
        target = self._targets.get(component_id)
        if target is None:
            fixed = {"source-id": self._provider_id, "target-id": component_id}
            headers: Mapping[str, str] = MappingProxyType(fixed)
            subject = f"{self._lattice}.{component_id}.{PROTOCOL}.{HANDLER_INSTANCE}.handle-message"
            target = self._targets[component_id] = (subject, headers, header_block_len(headers))
        subject, fixed_headers, header_len = target
        return self._transport.call(
            subject,
            encode_broker_message(msg),
            decode_unit_result,
            on_outcome,
            headers=fixed_headers,
            handshake_timeout=timeout,
            result_timeout=timeout,
            total_timeout=timeout,
            header_len=header_len,
        )
