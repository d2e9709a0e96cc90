"""Server mode as a Python library, no wasmCloud host: an echo server with a topic feed.

    .venv/bin/python examples/server_mode.py [--port 8765] [--self-test]

Every client message is answered on the sender's session; `--self-test` connects a client,
checks the echo and exits (the test suite runs it that way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from websockets.asyncio.client import connect

from provider import WebSocketMessagingProvider
from wasmcloud_provider_sdk import BrokerMessage, Err, Ok


async def main(port: int, self_test: bool) -> int:
    provider = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{port}/ws", "SESSION_EVENTS": "false"}
    )

    @provider.on_message
    async def handle(msg: BrokerMessage) -> Ok | Err:
        if msg.subject == "forbidden":
            return Err("not allowed here")  # the client gets an error frame
        assert msg.reply_to is not None  # the provider always sets it: "<sid>" or "<sid>.R"
        session_id = msg.reply_to.split(".", 1)[0]
        return await provider.send_to_session(session_id, BrokerMessage("echo", msg.body))

    bound = await provider.start_server_if_needed()
    print(f"listening on ws://127.0.0.1:{bound}/ws", flush=True)
    try:
        if self_test:
            async with connect(f"ws://127.0.0.1:{bound}/ws") as ws:
                welcome = json.loads(await ws.recv())
                await ws.send(json.dumps({"subject": "hi", "body": "hello"}))
                echo = json.loads(await ws.recv())
                clients = await provider.list_ws_clients()
                print(json.dumps({"welcome": welcome, "echo": echo, "clients": len(clients)}))
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await provider.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.port, args.self_test)))
