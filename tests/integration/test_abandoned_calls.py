"""No wRPC path leaves a peer waiting on us (real nats-server, real provider process).

A wasmCloud host answers the handshake of a `handle-message` call only when the component can
take it, and holds the component's invocation permit until the parameter stream ends. An
invoker that gave up before the handshake must still end its parameters when the handshake
comes late; a server must end its result stream whatever happened to the call.
"""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from provider.natsserver import free_port
from tests.harness import WS_PROVIDER, FakeHost
from tests.wsclient import Client
from wasmcloud_provider_sdk import (
    BrokerMessage,
    InvocationContext,
    InvocationTimeout,
    TransportError,
    WrpcTransport,
)
from wasmcloud_provider_sdk.messaging import (
    HANDLER_INSTANCE,
    decode_broker_message,
    decode_unit_result,
    encode_broker_message,
)
from wasmcloud_provider_sdk.wrpc import invocation_subject


class LateHandshaker:
    """A raw wRPC server that holds each invocation until told to answer, then handshakes
    and records what arrives on its parameter inbox (as a busy host does)."""

    def __init__(self, host: FakeHost, prefix: str, instance: str, function: str) -> None:
        self.host = host
        self.subject = invocation_subject(prefix, instance, function)
        self.invocations: asyncio.Queue[Msg] = asyncio.Queue()
        self.params: asyncio.Queue[bytes] = asyncio.Queue()

    async def start(self) -> LateHandshaker:
        nc = self.host.nc
        assert nc is not None

        async def on_invocation(msg: Msg) -> None:
            await self.invocations.put(msg)

        await nc.subscribe(self.subject, cb=on_invocation)
        await nc.flush()
        return self

    async def handshake(self, client_inbox: str) -> None:
        """Answer the invocation whose reply subject is `client_inbox` now, with a
        subscribed server inbox."""
        nc = self.host.nc
        assert nc is not None
        server_inbox = nc.new_inbox()

        async def on_params(msg: Msg) -> None:
            await self.params.put(msg.data)

        await nc.subscribe(f"{server_inbox}.params", cb=on_params)
        await nc.publish(client_inbox, b"", reply=server_inbox)

    async def end_of_params(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.params.get(), timeout)


def call_handle_message(
    transport: WrpcTransport, component: str, **timeouts: float
) -> asyncio.Future[object]:
    """Invoke `handle-message` on `component` in the background."""
    return asyncio.ensure_future(
        transport.invoke(
            f"default.{component}",
            HANDLER_INSTANCE,
            "handle-message",
            encode_broker_message(BrokerMessage("a", b"hi", None)),
            decode_unit_result,
            **timeouts,  # type: ignore[arg-type]
        )
    )


async def late_peer(host: FakeHost) -> LateHandshaker:
    return await LateHandshaker(host, "default.comp9", HANDLER_INSTANCE, "handle-message").start()


async def test_late_handshake_after_timeout_gets_end_of_params(host: FakeHost) -> None:
    transport = host.transport
    assert transport is not None
    peer = await late_peer(host)
    call = call_handle_message(transport, "comp9", handshake_timeout=0.2)
    invocation = await asyncio.wait_for(peer.invocations.get(), 5)
    with pytest.raises(InvocationTimeout):
        await call
    assert transport.abandoned == 1
    assert invocation.reply
    await peer.handshake(invocation.reply)
    assert await peer.end_of_params() == b""  # the peer's call can finish
    assert transport.abandoned == 0


async def test_late_handshake_after_cancel_gets_end_of_params(host: FakeHost) -> None:
    transport = host.transport
    assert transport is not None
    peer = await late_peer(host)
    call = call_handle_message(transport, "comp9")
    invocation = await asyncio.wait_for(peer.invocations.get(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await peer.handshake(invocation.reply)
    assert await peer.end_of_params() == b""


async def test_unknown_handshake_is_not_answered(host: FakeHost) -> None:
    """Only invocations we made and gave up on are answered (no trust in our inbox)."""
    transport = host.transport
    assert transport is not None
    peer = await late_peer(host)
    call = call_handle_message(transport, "comp9", handshake_timeout=0.2)
    invocation = await asyncio.wait_for(peer.invocations.get(), 5)
    with pytest.raises(InvocationTimeout):
        await call
    assert invocation.reply
    never_used = invocation.reply.rsplit(".", 1)[0] + ".999999"
    await peer.handshake(never_used)
    with pytest.raises(TimeoutError):
        await peer.end_of_params(timeout=0.5)
    assert transport.abandoned == 1  # the real one is still remembered
    await peer.handshake(invocation.reply)
    assert await peer.end_of_params() == b""


async def test_served_call_cancelled_ends_result_stream(host: FakeHost) -> None:
    """A served handler that is cancelled (or ended at shutdown) still ends the stream."""
    server = WrpcTransport(host.nc)  # type: ignore[arg-type]
    await server.start()
    started = asyncio.Event()

    async def hang(ctx: InvocationContext, msg: BrokerMessage) -> bytes:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await server.serve(
        "default.compx", HANDLER_INSTANCE, "handle-message", decode_broker_message, hang
    )
    transport = host.transport
    assert transport is not None
    call = call_handle_message(transport, "compx", result_timeout=30)
    await asyncio.wait_for(started.wait(), 5)
    assert await server.end_served_calls() == 1
    with pytest.raises(TransportError, match="ended without a result"):
        await asyncio.wait_for(call, 5)


async def test_provider_answers_a_late_handshake_of_handle_message(host: FakeHost) -> None:
    """The provider gave up on `handle-message` (HANDLER_TIMEOUT_SEC); the host's handshake
    comes later: the provider ends the parameters, so the host's permit is released."""
    peer = await LateHandshaker(host, "default.slow", HANDLER_INSTANCE, "handle-message").start()
    port = free_port()
    config = {"MODE": "server", "URI": f"127.0.0.1:{port}/ws", "HANDLER_TIMEOUT_SEC": "0.3"}
    config["SESSION_EVENTS"] = "false"
    proc = await host.start_provider(
        WS_PROVIDER,
        link_definitions=[
            host.consumer_link("slow"),
            host.handler_link("slow", source_config=config),
        ],
    )
    await host.wait_healthy()
    client = await Client.open(f"ws://127.0.0.1:{port}/ws")
    await client.message("chat", "hello", id="m1")
    invocation = await asyncio.wait_for(peer.invocations.get(), 5)
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "handler_timeout", error
    assert error["id"] == "m1"
    assert invocation.reply
    await peer.handshake(invocation.reply)
    assert await peer.end_of_params() == b""
    await proc.wait_for_line("late wRPC handshake")
    # The session is still fine and the next call goes through the same way.
    await client.message("chat", "again")
    await asyncio.wait_for(peer.invocations.get(), 5)
    await client.close()
