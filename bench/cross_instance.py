"""Cost of a targeted send to a session held by another instance, against a local one.

    python -m bench.cross_instance [--messages 2000] [--size 64]

Two provider instances (same provider id, different instance ids) run in this process, each
with its own NATS connection to one nats-server, as two hosts' instances would. A WebSocket
client holds a session on instance A. "local" sends go through A's routing; "remote" sends
are made on instance B and cross to A through NATS (the scale-out path: README, "Running
several instances").
Latency is measured from the send call until the client received the frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
import uuid

from websockets.asyncio.client import connect

from provider import WebSocketMessagingProvider
from provider.natsserver import NatsServer, free_port
from wasmcloud_provider_sdk import BrokerMessage, HostData, InterfaceLinkDefinition
from wasmcloud_provider_sdk.nkeys import XKey
from wasmcloud_provider_sdk.runtime import ProviderRuntime


def host_data(nats_url: str, port: int) -> HostData:
    link = {"wit_namespace": "wasmcloud", "wit_package": "messaging"}
    return HostData(
        host_id="N" + "B" * 55,
        lattice_rpc_url=nats_url,
        provider_key="bench",
        instance_id=str(uuid.uuid4()),
        log_level="warn",
        host_xkey_public_key=XKey.generate().public_key,
        provider_xkey_private_key=XKey.generate().seed,
        link_definitions=[
            InterfaceLinkDefinition(
                source_id="comp", target="bench", interfaces=["consumer"], **link
            ),
            InterfaceLinkDefinition(
                source_id="bench",
                target="comp",
                interfaces=["handler"],
                source_config={
                    "MODE": "server",
                    "URI": f"127.0.0.1:{port}/ws",
                    "SESSION_EVENTS": "false",
                },
                **link,
            ),
        ],
    )


def summary(samples: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1] * 1e6, 1),
        "msgs_per_s": round(len(samples) / wall),
    }


async def run(messages: int, size: int) -> dict[str, object]:
    with NatsServer() as nats_server:
        port_a, port_b = free_port(), free_port()
        a, b = WebSocketMessagingProvider(), WebSocketMessagingProvider()
        runtime_a = ProviderRuntime(a, host_data(nats_server.url, port_a))
        runtime_b = ProviderRuntime(b, host_data(nats_server.url, port_b))
        await runtime_a.start()
        await runtime_b.start()
        try:
            async with connect(f"ws://127.0.0.1:{port_a}/ws") as ws:
                sid = json.loads(await ws.recv())["session_id"]
                body = b"x" * size
                results: dict[str, object] = {}
                for label in ("local", "remote", "local", "remote"):  # warm up, then measure
                    assert b.cluster is not None
                    samples: list[float] = []
                    started = time.perf_counter()
                    for _ in range(messages):
                        t0 = time.perf_counter()
                        if label == "local":
                            await a.hub.publish("comp", BrokerMessage(sid, body))
                        else:
                            await b.cluster.publish_remote("comp", BrokerMessage(sid, body))
                        await ws.recv()
                        samples.append(time.perf_counter() - t0)
                    results[label] = summary(samples, time.perf_counter() - started)
                return results
        finally:
            await runtime_a.stop()
            await runtime_b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    results = asyncio.run(run(args.messages, args.size))
    print(
        f"cross-instance delivery, {args.messages} sequential sends of {args.size} B, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print(f"{'path':8} {'p50 µs':>9} {'p99 µs':>9} {'msgs/s':>9}")
    for label, row in results.items():
        assert isinstance(row, dict)
        print(f"{label:8} {row['p50_us']:>9} {row['p99_us']:>9} {row['msgs_per_s']:>9}")


if __name__ == "__main__":
    main()
