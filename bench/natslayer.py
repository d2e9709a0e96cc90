"""CPU per NATS message: nats-py against `NatsWire`, both ends in this process.

    python -m bench.natslayer              # 20,000 messages per run, both clients
    python -m bench.natslayer --n 5000 --no-profile

Two shapes, each message counted once (its publish on one connection and its delivery on
the other, both in this process; the nats-server is another process and not counted):

* ping-pong: request/reply-shaped traffic, as wRPC is: connection A publishes a request with
  a reply subject, B's callback publishes the answer to it, A's callback sends the next
  request; `--window` requests in flight;
* one-way: A publishes a stream, B's callback counts it.

Reported: CPU µs per message (`time.process_time`, so idle waiting does not count, the event
loop's own work does) and Python function calls per message (a second run under cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from collections.abc import Awaitable, Callable

import nats
from nats.aio.msg import Msg

from provider.natsserver import NatsServer
from wasmcloud_provider_sdk.natswire import NatsWire
from wasmcloud_provider_sdk.wire import WireMsg

PAYLOAD = b"x" * 64
#: One-way: messages published between two yields to the event loop.
BATCH = 100

Run = Callable[[str, int, int], Awaitable[int]]


async def natspy_pingpong(url: str, n: int, window: int) -> int:
    a, b = await nats.connect(url), await nats.connect(url)
    done = asyncio.Event()
    sent = received = 0

    async def serve(msg: Msg) -> None:
        await b.publish(msg.reply, msg.data)

    async def answered(msg: Msg) -> None:
        nonlocal sent, received
        received += 1
        if sent < n:
            sent += 1
            await a.publish("svc", PAYLOAD, reply="_INBOX.bench.1")
        elif received == n:
            done.set()

    await b.subscribe("svc", cb=serve)
    await a.subscribe("_INBOX.bench.*", cb=answered)
    await b.flush()
    await a.flush()
    for _ in range(window):
        sent += 1
        await a.publish("svc", PAYLOAD, reply="_INBOX.bench.1")
    await done.wait()
    await a.close()
    await b.close()
    return 2 * n


async def wire_pingpong(url: str, n: int, window: int) -> int:
    a, b = await NatsWire.connect(url), await NatsWire.connect(url)
    done = asyncio.Event()
    sent = received = 0

    def serve(msg: WireMsg) -> None:
        b.publish(msg.reply, msg.data)

    def answered(msg: WireMsg) -> None:
        nonlocal sent, received
        received += 1
        if sent < n:
            sent += 1
            a.publish("svc", PAYLOAD, reply="_INBOX.bench.1")
        elif received == n:
            done.set()

    b.subscribe("svc", serve)
    a.subscribe("_INBOX.bench.*", answered)
    await b.flush()
    await a.flush()
    for _ in range(window):
        sent += 1
        a.publish("svc", PAYLOAD, reply="_INBOX.bench.1")
    await done.wait()
    await a.close()
    await b.close()
    return 2 * n


async def natspy_oneway(url: str, n: int, window: int) -> int:
    a, b = await nats.connect(url), await nats.connect(url)
    done = asyncio.Event()
    received = 0

    async def count(msg: Msg) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    await b.subscribe("stream", cb=count, pending_msgs_limit=n + 1)
    await b.flush()
    await b.flush()
    for i in range(n):
        await a.publish("stream", PAYLOAD)
        if i % BATCH == BATCH - 1:
            await asyncio.sleep(0)  # let the other side read, as a real producer would
    await done.wait()
    await a.close()
    await b.close()
    return n


async def wire_oneway(url: str, n: int, window: int) -> int:
    a, b = await NatsWire.connect(url), await NatsWire.connect(url)
    done = asyncio.Event()
    received = 0

    def count(msg: WireMsg) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    b.subscribe("stream", count)
    await b.flush()
    for i in range(n):
        a.publish("stream", PAYLOAD)
        if i % BATCH == BATCH - 1:
            await asyncio.sleep(0)  # let the other side read, as a real producer would
    await done.wait()
    await a.close()
    await b.close()
    return n


RUNS: dict[str, Run] = {
    "ping-pong nats-py": natspy_pingpong,
    "ping-pong NatsWire": wire_pingpong,
    "one-way nats-py": natspy_oneway,
    "one-way NatsWire": wire_oneway,
}


def measure(run: Run, url: str, n: int, window: int, profile: bool) -> tuple[float, float]:
    """(CPU µs per message, function calls per message; 0 without `profile`)."""
    started = time.process_time()
    messages = asyncio.run(run(url, n, window))
    cpu_us = (time.process_time() - started) * 1e6 / messages
    calls = 0.0
    if profile:
        profiler = cProfile.Profile()
        messages = profiler.runcall(asyncio.run, run(url, n, window))
        stats = pstats.Stats(profiler)
        calls = stats.total_calls / messages  # type: ignore[attr-defined]
    return cpu_us, calls


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.natslayer", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="requests / messages per run")
    parser.add_argument("--window", type=int, default=4, help="ping-pong: requests in flight")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client (best kept)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    args = parser.parse_args()
    with NatsServer() as server:
        print(f"{args.n} per run, window {args.window}, {len(PAYLOAD)}-byte payloads")
        print(f"{'':22} {'CPU µs/msg (each run)':>32} {'calls/msg':>10}")
        for name, run in RUNS.items():
            figures = [
                measure(run, server.url, args.n, args.window, False)[0] for _ in range(args.repeat)
            ]
            calls = 0.0
            if not args.no_profile:
                calls = measure(run, server.url, args.n // 4, args.window, True)[1]
            each = " ".join(f"{f:6.1f}" for f in figures)
            print(f"{name:22} {each:>32} {calls:10.1f}")


if __name__ == "__main__":
    main()
