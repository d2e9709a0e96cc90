"""Interop with an independent implementation: the Go wRPC library (wrpc.io/go v0.2.0).

(a) Go invokes our provider's `consumer.publish` / `consumer.request`;
(b) Go serves `handle-message` for a fake component that our SDK invokes.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from tests.harness import FakeHost

pytestmark = pytest.mark.interop

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


async def go_invoke(
    go_peer: str, host: FakeHost, *args: str, source: str = "comp1"
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        go_peer,
        "invoke",
        "--nats",
        host.nats_url,
        "--prefix",
        f"{host.lattice}.{host.provider_id}",
        "--source-id",
        source,
        "--check-eof",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


class GoComponent:
    """`wrpc-interop serve`: a Go-served handle-message for one component id."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def next_call(self, timeout: float = 10) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        call: dict[str, Any] = json.loads(line)
        return call


async def serve_go_component(go_peer: str, host: FakeHost, component: str) -> GoComponent:
    proc = await asyncio.create_subprocess_exec(
        go_peer,
        "serve",
        "--nats",
        host.nats_url,
        "--prefix",
        f"{host.lattice}.{component}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert ready.strip() == b"READY"
    return GoComponent(proc)


async def start_provider(host: FakeHost, handler_target: str = "comp1") -> None:
    await host.start_provider(
        link_definitions=[host.consumer_link("comp1"), host.handler_link(handler_target)]
    )
    await host.wait_healthy()


async def test_go_invokes_publish(go_peer: str, host: FakeHost) -> None:
    await start_provider(host)
    async with host.events() as events:
        result = await go_invoke(
            go_peer,
            host,
            "publish",
            "--subject",
            "a.b",
            "--body-b64",
            base64.b64encode(b"hi").decode(),
            "--reply-to",
            "_INBOX.r1",
        )
        assert result == {"ok": None}
        event = await events.expect("publish")
        assert (event["source_id"], event["link_name"], event["subject"]) == (
            "comp1",
            "default",
            "a.b",
        )
        assert event["reply_to"] == "_INBOX.r1"
    assert await go_invoke(go_peer, host, "publish", "--subject", "fail", "--body-size", "0") == {
        "err": "told to fail"
    }


async def test_go_invokes_request(go_peer: str, host: FakeHost) -> None:
    await start_provider(host)
    result = await go_invoke(
        go_peer,
        host,
        "request",
        "--subject",
        "ping",
        "--body-b64",
        base64.b64encode(b"payload").decode(),
        "--timeout-ms",
        "500",
    )
    assert result == {
        "ok": {
            "subject": "reply.ping",
            "body_b64": base64.b64encode(b"payload").decode(),
            "reply_to": None,
        }
    }


async def test_go_large_params_and_results(go_peer: str, small_host: FakeHost) -> None:
    host = small_host
    await start_provider(host)
    async with host.events() as events:
        result = await go_invoke(
            go_peer, host, "publish", "--subject", "big", "--body-size", "5000"
        )
        assert result == {"ok": None}
        event = await events.expect("publish")
        assert event["body_len"] == 5000 and event["body_sum"] == sum(pattern(5000)) % 65536
    result = await go_invoke(
        go_peer, host, "request", "--subject", "big", "--body-size", "3000", "--timeout-ms", "500"
    )
    assert base64.b64decode(result["ok"]["body_b64"]) == pattern(3000)


async def test_go_truncated_params_do_not_hurt_the_provider(
    go_peer: str, small_host: FakeHost
) -> None:
    # A generated Go client sends only the first chunk then EOF (wrpc.io/go v0.2.0 Close()).
    host = small_host
    await start_provider(host)
    result = await go_invoke(
        go_peer, host, "--close-only", "publish", "--subject", "big", "--body-size", "5000"
    )
    assert "transport_error" in result
    assert await go_invoke(go_peer, host, "publish", "--subject", "ok", "--body-size", "10") == {
        "ok": None
    }


async def test_sdk_invokes_go_served_handler(go_peer: str, small_host: FakeHost) -> None:
    host = small_host
    await start_provider(host)
    component = await serve_go_component(go_peer, host, "comp1")
    try:
        # Ask the provider (through its consumer export) to call the Go-served handler.
        from tests.components import ConsumerCaller as Caller
        from wasmcloud_provider_sdk import BrokerMessage, Ok

        caller = Caller(host)
        assert (
            await caller.publish(
                BrokerMessage("call-handler", b"hello", "r.1"), extra={"traceparent": TRACEPARENT}
            )
            == Ok()
        )
        call = await component.next_call()
        assert call["subject"] == "from-provider" and call["reply_to"] == "r.1"
        assert base64.b64decode(call["body_b64"]) == b"hello"
        assert call["headers"]["source-id"] == host.provider_id
        assert call["headers"]["target-id"] == "comp1"
        assert call["headers"]["traceparent"] == TRACEPARENT

        big = pattern(5000)
        assert await caller.publish(BrokerMessage("call-handler", big)) == Ok()
        call = await component.next_call()
        assert call["body_len"] == 5000 and base64.b64decode(call["body_b64"]) == big
    finally:
        component.proc.terminate()
        await component.proc.wait()


async def test_sdk_gets_go_handler_error(go_peer: str, host: FakeHost) -> None:
    await start_provider(host)
    component = await serve_go_component(go_peer, host, "comp1")
    try:
        assert host.transport is not None
        from wasmcloud_provider_sdk import BrokerMessage, Err, HandlerClient

        client = HandlerClient(host.transport, host.lattice, "prov1")
        assert await client.handle_message("comp1", BrokerMessage("fail", b"x")) == Err("boom")
        call = await component.next_call()
        assert call["subject"] == "fail"
    finally:
        component.proc.terminate()
        await component.proc.wait()
