"""Stand-in components for tests: serve `handle-message` and call the provider's consumer.

Each plays one component id over real wRPC (as a host would for a wasm component): it
records every `handle-message` call, answers with what the test asked for, and can call the
provider's `consumer.publish` / `consumer.request` with its own `source-id`.
"""

from __future__ import annotations

import asyncio
from typing import Any

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


class ConsumerCaller:
    """Invokes the provider's consumer exports the way a host does for a component."""

    def __init__(self, host: FakeHost, source: str | None = "comp1") -> None:
        self.host = host
        self.source = source

    async def _invoke(
        self, function: str, params: bytes, decode: Any, headers: dict[str, str], timeout: float
    ) -> Ok | Err:
        assert self.host.transport is not None
        result: Ok | Err = await self.host.transport.invoke(
            f"{self.host.lattice}.{self.host.provider_id}",
            CONSUMER_INSTANCE,
            function,
            params,
            decode,
            headers=headers or None,
            result_timeout=timeout,
        )
        return result

    def _headers(
        self, source: str | None, link: str | None, extra: dict[str, str] | None
    ) -> dict[str, str]:
        src = self.source if source == "" else source
        headers = {}
        if src is not None:
            headers["source-id"] = src
        if link is not None:
            headers["link-name"] = link
        headers.update(extra or {})
        return headers

    async def publish(
        self,
        msg: BrokerMessage,
        *,
        source: str | None = "",
        link: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Ok | Err:
        """`consumer.publish`; `source=None` sends no source-id header."""
        headers = self._headers(source, link, extra)
        return await self._invoke(
            "publish", encode_broker_message(msg), decode_unit_result, headers, 10
        )

    async def request(
        self,
        subject: str,
        body: bytes,
        timeout_ms: int = 1000,
        *,
        source: str | None = "",
        link: str | None = "default",
        extra: dict[str, str] | None = None,
    ) -> Ok | Err:
        """`consumer.request`."""
        params = encode_request_params(RequestParams(subject, body, timeout_ms))
        headers = self._headers(source, link, extra)
        return await self._invoke("request", params, decode_message_result, headers, 30)


class TestComponent:
    """A component id served by the test host's transport."""

    __test__ = False  # not a test class

    def __init__(self, host: FakeHost, component_id: str) -> None:
        self.host = host
        self.id = component_id
        self.calls: asyncio.Queue[tuple[InvocationContext, BrokerMessage]] = asyncio.Queue()
        self.answer: Ok | Err = Ok()
        self.gate: asyncio.Event | None = None  # when set, calls wait for it (a slow component)
        self.event_gate: asyncio.Event | None = None  # the same for session events
        #: Trap on messages (not session events): the call fails below the WIT level, as a
        #: host answers when a wasm component traps (handshake, then only the empty end of
        #: the result stream; docs/PROTOCOL.md 4.3, step 4).
        self.trap = False
        self._sub: int | None = None

    async def serve(self) -> TestComponent:
        assert self.host.transport is not None
        self._sub = await self.host.transport.serve(
            f"{self.host.lattice}.{self.id}",
            HANDLER_INSTANCE,
            "handle-message",
            decode_broker_message,
            self._handle,
        )
        assert self.host.nc is not None
        await self.host.nc.flush()
        return self

    async def stop(self) -> None:
        """Stop serving `handle-message` (the component is no longer running): calls get
        NATS "no responders" once the server has processed the unsubscribe."""
        nc = self.host.nc
        transport = self.host.transport
        assert self._sub is not None and nc is not None and transport is not None
        transport.wire.unsubscribe(self._sub)
        await transport.wire.flush()
        self._sub = None
        # A round trip through a subscription made after the UNSUB proves the server has
        # processed it (nats-py's flush() alone may not, PROTOCOL-NOTES / runtime.py).
        probe = nc.new_inbox()
        sub = await nc.subscribe(probe)
        await nc.publish(probe, b"")
        await sub.next_msg(timeout=5)
        await sub.unsubscribe()

    async def _handle(self, ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        await self.calls.put((ctx, msg))
        event = msg.subject.startswith("ws.session.")
        if self.gate is not None and not event:
            await self.gate.wait()
        if self.event_gate is not None and event:
            await self.event_gate.wait()
        if self.trap and not event:
            # The SDK transport answers a handler that raises with only the end of stream.
            raise RuntimeError("wasm trap: unreachable executed (simulated)")
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
        """`consumer.publish` as this component."""
        caller = ConsumerCaller(self.host, self.id)
        return await caller.publish(BrokerMessage(subject, body, reply_to), link=link)

    async def request(
        self, subject: str, body: bytes = b"", timeout_ms: int = 2000, link: str = "default"
    ) -> Ok | Err:
        """`consumer.request` as this component."""
        return await ConsumerCaller(self.host, self.id).request(
            subject, body, timeout_ms, link=link
        )
