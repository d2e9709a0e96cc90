"""Baseline servers for the round-trip scenario, each run as its own process.

    python -m bench.baselines ws-echo <port>             # a: bare websockets echo
    python -m bench.baselines forwarder <port> <nats>    # b: one nats-py request per frame
    python -m bench.baselines nats-echo <nats>           # echo responder on subject `echo`

They print "ready" on stderr once serving. Settings match the provider's bench config: no
compression, no keepalive pings.
"""

from __future__ import annotations

import asyncio
import sys

import nats
from nats.aio.msg import Msg
from websockets.asyncio.server import ServerConnection, serve


async def ws_echo(port: int) -> None:
    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
        print("ready", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


async def forwarder(port: int, url: str) -> None:
    nc = await nats.connect(url, name="bench-forwarder")

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            data = message.encode() if isinstance(message, str) else message
            reply = await nc.request("echo", data, timeout=10)
            await ws.send(reply.data.decode())

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
        print("ready", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


async def nats_echo(url: str) -> None:
    nc = await nats.connect(url, name="bench-echo-responder")

    async def respond(msg: Msg) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe("echo", cb=respond, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    print("ready", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "ws-echo":
        asyncio.run(ws_echo(int(args[0])))
    elif kind == "forwarder":
        asyncio.run(forwarder(int(args[0]), args[1]))
    elif kind == "nats-echo":
        asyncio.run(nats_echo(args[0]))
    else:
        raise SystemExit(f"unknown baseline {kind!r}")


if __name__ == "__main__":
    main()
