"""The echo component of the round-trip scenario, in its own process.

    python -m bench.echo_component <nats url>

A thin asyncio adapter around `bench.echo_core.EchoCore` (the wRPC it speaks is described
there) over `bench.natsproto` (a raw NATS client protocol): it costs a fraction of what the
SDK-based stand-in (`bench.sdk_echo_component`) costs per message, so the round trip's
figures measure the provider, not the stand-in. What it sends for one round of parsed
input goes out in one write. It prints `ready` on stderr once its subscriptions are live
(the server answered the PING after them), and on SIGTERM a last line
`counts published=… delivered=… handled=…` (its NATS messages, for the message count test).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from urllib.parse import urlparse

from . import natsproto
from .echo_core import EchoCore
from .services import COMPONENT_ID, LATTICE, PROVIDER_ID

#: How often calls past their deadline are ended (not a per-message timer).
EXPIRE_EVERY = 1.0


class EchoProtocol(asyncio.Protocol):
    """Bytes in, `EchoCore` events, bytes out; `pongs` counts the server's PONGs."""

    def __init__(self, core: EchoCore) -> None:
        self.core = core
        self.parser = natsproto.Parser()
        self.transport: asyncio.Transport | None = None
        self.info = asyncio.get_running_loop().create_future()
        self.pong = asyncio.Event()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        core = self.core
        now = time.monotonic()
        for event in self.parser.feed(data):
            if isinstance(event, natsproto.Msg):
                core.on_msg(event, now)
            elif isinstance(event, natsproto.Ping):
                core.out += natsproto.PONG_LINE
            elif isinstance(event, natsproto.Pong):
                self.pong.set()
            elif isinstance(event, natsproto.Info) and not self.info.done():
                self.info.set_result(event.fields)
        self.flush()

    def flush(self) -> None:
        """Write what the core produced, in one write."""
        if self.core.out and self.transport is not None:
            self.transport.write(bytes(self.core.out))
            self.core.out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    async def ping(self, timeout: float = 10.0) -> None:
        """PING and wait for the PONG: the server has processed everything sent before."""
        assert self.transport is not None
        self.pong.clear()
        self.transport.write(natsproto.PING_LINE)
        await asyncio.wait_for(self.pong.wait(), timeout)


async def main(url: str) -> None:
    parsed = urlparse(url)
    loop = asyncio.get_running_loop()
    core = EchoCore(LATTICE, COMPONENT_ID, PROVIDER_ID)
    _, proto = await loop.create_connection(
        lambda: EchoProtocol(core), parsed.hostname or "127.0.0.1", parsed.port or 4222
    )
    assert proto.transport is not None
    info = await asyncio.wait_for(proto.info, 10)
    core.max_payload = int(info.get("max_payload", core.max_payload))
    proto.transport.write(natsproto.connect("bench-echo-component"))
    await asyncio.wait_for(proto.pong.wait(), 10)
    proto.transport.write(core.subscriptions())
    await proto.ping()
    print("ready", file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def expire() -> None:
        if core.expire(time.monotonic()):
            proto.flush()
        if not stop.is_set():
            loop.call_later(EXPIRE_EVERY, expire)

    loop.call_later(EXPIRE_EVERY, expire)
    closed = asyncio.ensure_future(proto.closed)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    counts = core.counts
    print(
        f"counts published={counts.published} delivered={counts.delivered} "
        f"handled={counts.handled}",
        file=sys.stderr,
        flush=True,
    )
    proto.transport.close()
    closed.cancel()
    stopped.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
