"""The SDK-based echo component (the bench's stand-in before bench/echo_component.py),
kept to compare against: `python -m bench round-trip --component sdk`.

    python -m bench.sdk_echo_component <nats url>

It serves `handle-message` for the bench component id over real wRPC and answers each
message with `consumer.publish` to its reply-to (the sender's session): two wRPC calls per
message, as a wasm component behind a host would make (provider.echo.EchoComponent).
"""

from __future__ import annotations

import asyncio
import sys

import nats

from provider.echo import EchoComponent

from .services import COMPONENT_ID, LATTICE, PROVIDER_ID


async def main(url: str) -> None:
    nc = await nats.connect(url, name="bench-echo-component")
    component = EchoComponent(nc, LATTICE, COMPONENT_ID, PROVIDER_ID)
    await component.start()
    await nc.flush()
    print("ready", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
