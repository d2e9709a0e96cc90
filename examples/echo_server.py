"""A plain WebSocket echo server (what public echo services do), for trying client mode.

    .venv/bin/python examples/echo_server.py [PORT]

Every frame it receives is sent back unchanged; it prints the upgrade headers it sees.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    assert ws.request is not None
    auth = "yes" if "Authorization" in ws.request.headers else "no"
    print(f"connection from {ws.remote_address} (Authorization header: {auth})", flush=True)
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port) as server:
        print(f"echo server on ws://127.0.0.1:{port}/", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9001))
