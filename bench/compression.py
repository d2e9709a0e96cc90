"""permessage-deflate: what it costs and what it saves, to choose COMPRESSION's default.

    python -m bench.compression [--sessions 500] [--messages 2000]

A provider runs in a child process (library API, server mode), so its memory is measured
alone (VmRSS from /proc). For each setting it measures: RSS per idle session, and the time
and wire bytes for `--messages` echo round trips of a small JSON message (~100 B) and of a
larger one (~8 KiB of repetitive JSON, the kind compression is good at).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from provider.natsserver import free_port

SERVER = """
import asyncio, sys
from provider import WebSocketMessagingProvider
from wasmcloud_provider_sdk import BrokerMessage

async def main():
    p = WebSocketMessagingProvider.from_config({"MODE": "server", "URI": sys.argv[1],
        "COMPRESSION": sys.argv[2], "SESSION_EVENTS": "false", "WELCOME": "false",
        "MAX_SESSIONS": "100000", "PING_INTERVAL_SEC": "0"})
    @p.on_message
    async def echo(msg):
        await p.send_to_session(msg.reply_to.split(".")[0], BrokerMessage("e", msg.body))
    await p.start_server_if_needed()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ByteCounter:
    """Counts the bytes a client connection receives from the server (the wire size)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.total = 0
        original = ws.data_received

        def counting(data: bytes) -> None:
            self.total += len(data)
            original(data)

        ws.data_received = counting  # type: ignore[method-assign]


async def measure(setting: str, sessions: int, messages: int) -> dict[str, float]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        f"127.0.0.1:{port}/ws",
        setting,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        base = rss_kib(proc.pid)
        idle = [await connect(url, compression="deflate") for _ in range(sessions)]
        per_session = (rss_kib(proc.pid) - base) * 1024 / sessions
        out: dict[str, float] = {"rss_per_session_B": round(per_session)}
        small = json.dumps({"subject": "chat", "body": {"user": "alice", "text": "hello!"}})
        large = json.dumps(
            {
                "subject": "data",
                "body": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(150)],
            }
        )
        async with connect(url, compression="deflate") as ws:
            counter = ByteCounter(ws)
            for label, frame in (("small", small), ("large", large)):
                before = counter.total
                started = time.perf_counter()
                for _ in range(messages):
                    await ws.send(frame)
                    await ws.recv()
                elapsed = time.perf_counter() - started
                out[f"{label}_rtt_us"] = round(elapsed / messages * 1e6, 1)
                out[f"{label}_wire_B_per_msg"] = round((counter.total - before) / messages)
                out[f"{label}_json_B"] = len(frame)
        for ws in idle:
            await ws.close()
        return out
    finally:
        proc.terminate()
        await proc.wait()


async def run(sessions: int, messages: int) -> dict[str, dict[str, float]]:
    return {s: await measure(s, sessions, messages) for s in ("off", "on")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    results = asyncio.run(run(args.sessions, args.messages))
    keys = list(next(iter(results.values())))
    print(f"{'COMPRESSION':12}" + "".join(f"{k:>24}" for k in keys))
    for setting, row in results.items():
        print(f"{setting:12}" + "".join(f"{row[k]:>24}" for k in keys))


if __name__ == "__main__":
    main()
