"""Stand-in components for tests: serve `handle-message` and call the provider's consumer.

Each plays one component id over real wRPC (as a host would for a wasm component): it
records every `handle-message` call, answers with what the test asked for, and can call the
provider's `consumer.publish` / `consumer.request` with its own `source-id`.
"""

from __future__ import annotations

import asyncio

from tests.harness import FakeHost
from wasmcloud_provider_sdk import BrokerMessage, Err, InvocationContext, Ok
from wasmcloud_provider_sdk.messaging import (
    CONSUMER_INSTANCE,
    HANDLER_INSTANCE,
    RequestParams,
    decode_broker_message,
    decode_message_result,
    decode_unit_result,
    encode_broker_message,
    encode_request_params,
    encode_unit_result,
)


class TestComponent:
    """A component id served by the test host's transport."""

    __test__ = False  # not a test class

    def __init__(self, host: FakeHost, component_id: str) -> None:
        self.host = host
        self.id = component_id
        self.calls: asyncio.Queue[tuple[InvocationContext, BrokerMessage]] = asyncio.Queue()
        self.answer: Ok | Err = Ok()
        self.gate: asyncio.Event | None = None  # when set, calls wait for it (a slow component)

    async def serve(self) -> TestComponent:
        assert self.host.transport is not None
        await self.host.transport.serve(
            f"{self.host.lattice}.{self.id}",
            HANDLER_INSTANCE,
            "handle-message",
            decode_broker_message,
            self._handle,
        )
        assert self.host.nc is not None
        await self.host.nc.flush()
        return self

    async def _handle(self, ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        await self.calls.put((ctx, msg))
        if self.gate is not None and not msg.subject.startswith("ws.session."):
            await self.gate.wait()
        return encode_unit_result(self.answer)

    async def next(self, timeout: float = 10.0, *, skip_events: bool = True) -> BrokerMessage:
        """The next message delivered to this component (session events skipped by default)."""
        while True:
            _, msg = await asyncio.wait_for(self.calls.get(), timeout)
            if skip_events and msg.subject.startswith("ws.session."):
                continue
            return msg

    async def next_event(self, subject: str, timeout: float = 10.0) -> BrokerMessage:
        """The next delivery with this subject (others are skipped)."""
        while True:
            _, msg = await asyncio.wait_for(self.calls.get(), timeout)
            if msg.subject == subject:
                return msg

    async def publish(
        self, subject: str, body: bytes = b"", reply_to: str | None = None, link: str = "default"
    ) -> Ok | Err:
        assert self.host.transport is not None
        result: Ok | Err = await self.host.transport.invoke(
            f"{self.host.lattice}.{self.host.provider_id}",
            CONSUMER_INSTANCE,
            "publish",
            encode_broker_message(BrokerMessage(subject, body, reply_to)),
            decode_unit_result,
            headers={"source-id": self.id, "link-name": link},
            result_timeout=10,
        )
        return result

    async def request(
        self, subject: str, body: bytes = b"", timeout_ms: int = 2000, link: str = "default"
    ) -> Ok | Err:
        assert self.host.transport is not None
        result: Ok | Err = await self.host.transport.invoke(
            f"{self.host.lattice}.{self.host.provider_id}",
            CONSUMER_INSTANCE,
            "request",
            encode_request_params(RequestParams(subject, body, timeout_ms)),
            decode_message_result,
            headers={"source-id": self.id, "link-name": link},
            result_timeout=30,
        )
        return result
