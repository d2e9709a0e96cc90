"""wRPC calls both ways between a test host and a provider process, over real NATS."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.components import ConsumerCaller as Caller
from tests.harness import FakeHost
from wasmcloud_provider_sdk import (
    BrokerMessage,
    Err,
    InvocationContext,
    NotServedError,
    Ok,
    TransportError,
)
from wasmcloud_provider_sdk.messaging import (
    CONSUMER_INSTANCE,
    HANDLER_INSTANCE,
    decode_broker_message,
    decode_unit_result,
    encode_broker_message,
    encode_unit_result,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


class FakeComponent:
    """Serves `handle-message` for a component id, recording calls."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[tuple[InvocationContext, BrokerMessage]] = asyncio.Queue()

    async def handle(self, ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        await self.calls.put((ctx, msg))
        if msg.body == b"trap":
            raise RuntimeError("component trapped")  # transport failure: only the empty EOF
        if msg.body == b"fail":
            return encode_unit_result(Err("boom"))
        return encode_unit_result(Ok())


async def start_with_links(host: FakeHost, handler_target: str = "comp1") -> None:
    await host.start_provider(
        link_definitions=[host.consumer_link("comp1"), host.handler_link(handler_target)]
    )
    await host.wait_healthy()


async def test_publish_and_request_from_linked_component(host: FakeHost) -> None:
    await start_with_links(host)
    caller = Caller(host)
    async with host.events() as events:
        assert (
            await caller.publish(BrokerMessage("a.b", b"hi", "_INBOX.r1"), link="default") == Ok()
        )
        event = await events.expect("publish")
        assert event == {
            "event": "publish",
            "source_id": "comp1",
            "link_name": "default",
            "subject": "a.b",
            "body_len": 2,
            "body_sum": 0x68 + 0x69,
            "reply_to": "_INBOX.r1",
        }
    assert await caller.request("ping", b"payload") == Ok(
        BrokerMessage("reply.ping", b"payload", None)
    )


async def test_context_from_headers(host: FakeHost) -> None:
    await start_with_links(host)
    caller = Caller(host)
    result = await caller.request(
        "whoami", b"", 1234, extra={"traceparent": TRACEPARENT, "tracestate": ""}
    )
    assert isinstance(result, Ok) and isinstance(result.value, BrokerMessage)
    info = json.loads(result.value.body)
    assert info["source_id"] == "comp1" and info["link_name"] == "default"
    assert info["timeout_ms"] == 1234
    assert info["headers"]["traceparent"] == TRACEPARENT
    async with host.events() as events:
        await caller.publish(BrokerMessage("x", b""), source=None)
        event = await events.expect("publish")
        assert event["source_id"] == "<unknown>" and event["link_name"] == "default"


async def test_domain_failures_are_wit_level_errors(host: FakeHost) -> None:
    await start_with_links(host)
    caller = Caller(host)
    assert await caller.publish(BrokerMessage("fail", b"")) == Err("told to fail")
    assert await caller.publish(BrokerMessage("raise", b"")) == Err(
        "publish failed: handler raised on purpose"
    )


async def test_undecodable_params_fail_at_transport_level(host: FakeHost) -> None:
    await start_with_links(host)
    assert host.transport is not None
    with pytest.raises(TransportError, match="ended without a result"):
        await host.transport.invoke(
            f"{host.lattice}.{host.provider_id}",
            CONSUMER_INSTANCE,
            "publish",
            b"\x03a.b\x02hi\x07",  # option tag 7
            decode_unit_result,
            headers={"source-id": "comp1"},
        )
    # The provider is unaffected.
    assert await Caller(host).publish(BrokerMessage("ok", b"")) == Ok()


async def test_params_and_results_larger_than_max_payload(small_host: FakeHost) -> None:
    host = small_host
    await start_with_links(host)
    caller = Caller(host)
    body = pattern(5000)
    async with host.events() as events:
        assert (
            await caller.publish(BrokerMessage("big", body), extra={"traceparent": TRACEPARENT})
            == Ok()
        )
        event = await events.expect("publish")
        assert event["body_len"] == 5000 and event["body_sum"] == sum(body) % 65536
    reply = await caller.request("big", pattern(3000))
    assert reply == Ok(BrokerMessage("reply.big", pattern(3000), None))


async def test_provider_calls_component_handler(host: FakeHost) -> None:
    await start_with_links(host)
    assert host.transport is not None
    component = FakeComponent()
    await host.transport.serve(
        f"{host.lattice}.comp1",
        HANDLER_INSTANCE,
        "handle-message",
        decode_broker_message,
        component.handle,
    )
    caller = Caller(host)
    result = await caller.publish(
        BrokerMessage("call-handler", b"hello", "r.1"), extra={"traceparent": TRACEPARENT}
    )
    assert result == Ok()
    ctx, msg = await asyncio.wait_for(component.calls.get(), 5)
    assert msg == BrokerMessage("from-provider", b"hello", "r.1")
    assert ctx.headers["source-id"] == host.provider_id
    assert ctx.headers["target-id"] == "comp1"
    assert ctx.headers["traceparent"] == TRACEPARENT  # passed through
    assert await caller.publish(BrokerMessage("call-handler", b"fail")) == Err("boom")
    trapped = await caller.publish(BrokerMessage("call-handler", b"trap"))
    assert isinstance(trapped, Err) and "TransportError" in trapped.message


async def test_call_to_unserved_component_is_503(host: FakeHost) -> None:
    await start_with_links(host, handler_target="ghost")
    result = await Caller(host).publish(BrokerMessage("call-handler", b"x"))
    assert isinstance(result, Err) and "NotServedError" in result.message


async def test_unserved_export_raises_not_served(host: FakeHost) -> None:
    assert host.transport is not None
    with pytest.raises(NotServedError):
        await host.transport.invoke(
            f"{host.lattice}.nobody",
            HANDLER_INSTANCE,
            "handle-message",
            encode_broker_message(BrokerMessage("s", b"")),
            decode_unit_result,
        )


async def test_slow_call_does_not_block_others(host: FakeHost) -> None:
    await start_with_links(host)
    caller = Caller(host)
    slow = asyncio.create_task(caller.request("slow", b"", 3000))
    # While one invocation sleeps in the provider, others complete.
    for i in range(5):
        assert await caller.request(f"fast{i}", b"x") == Ok(BrokerMessage(f"reply.fast{i}", b"x"))
    assert not slow.done()
    assert (await slow) == Ok(BrokerMessage("reply.slow", b""))
