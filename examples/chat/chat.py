"""A chat room: the demo page in a browser, and a handler that broadcasts every message.

    .venv/bin/python examples/chat/chat.py [--port 8090]

Open http://127.0.0.1:8090/ in two browser tabs and type. The handler here plays the part of
a wasm component: in a lattice the same logic would be a component's `handle-message` calling
`consumer.publish("broadcast", …)`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from provider import WebSocketMessagingProvider
from wasmcloud_provider_sdk import BrokerMessage


async def main(port: int) -> int:
    provider = WebSocketMessagingProvider.from_config(
        {"MODE": "server", "URI": f"127.0.0.1:{port}/chat", "DEMO_PAGE": "true"}
    )

    @provider.on_message
    async def handle(msg: BrokerMessage) -> None:
        assert msg.reply_to is not None
        who = msg.reply_to.split(".", 1)[0][-6:]  # a short, stable name per session
        if msg.subject == "ws.session.connected":
            text = f"{who} joined"
        elif msg.subject == "ws.session.disconnected":
            text = f"{who} left"
        elif msg.subject == "ws.session.detached":
            text = f"{who} lost the connection (may come back)"
        elif msg.subject == "ws.session.resumed":
            text = f"{who} is back"
        elif msg.subject.startswith("ws.session."):
            return  # another session event (new ones may come): not a chat line
        else:
            body = msg.body.decode("utf-8", errors="replace")
            text = f"{who}: {body.removeprefix('broadcast: ')}"
        await provider.broadcast_to_clients(BrokerMessage("broadcast", text.encode()))

    bound = await provider.start_server_if_needed()
    print(f"chat on http://127.0.0.1:{bound}/ (WebSocket ws://127.0.0.1:{bound}/chat)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await provider.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    raise SystemExit(asyncio.run(main(parser.parse_args().port)))
