"""Hostile and careless clients: does anyone else notice?

    python -m bench hostile              # decode-cost flood, then a mass disconnect

A live session measures WebSocket ping round trips (answered by the provider's event loop,
so a stalled loop shows directly) while:

* decode: one client sends worst-case frames of the maximum size (1 MiB) at 5/s, half of
  them deeply nested JSON arrays, half MessagePack with ~1M tiny containers. Reported: ping
  p50/p99 before and during, and the ratio of the p50s (target: < 3x).
* mass-drop: 2,000 sessions drop at once (TCP abort, so they are detached for a resume that
  never comes; RESUME_WINDOW_SEC=4 so their expiry falls in the window too). Reported: ping
  p50/p99/max over the 10 s after the drop (target p99 < 500 ms), and how many of the
  component's session-event calls failed (the provider logs them as "delivery ... failed").

The stack is the harness's own: nats-server, `python -m provider`, the echo component.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect

from . import services

PING_EVERY = 0.02


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def _pings(ws: ClientConnection, seconds: float) -> list[float]:
    """Open-loop ping round trips for `seconds`: one ping every PING_EVERY whether or not
    the previous was answered, so a stall delays every ping sent during it (a closed loop
    would send one ping per stall and hide it). websockets resolves each pong waiter with
    its latency."""
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[float]] = []
    end = loop.time() + seconds
    while loop.time() < end:
        waiters.append(await ws.ping())
        await asyncio.sleep(PING_EVERY)  # a probe's pace, not a synchronisation
    return [await asyncio.wait_for(waiter, 60) for waiter in waiters]


def worst_json(size: int) -> bytes:
    """A text frame of about `size` bytes: siblings of empty arrays nested 500 deep."""
    unit = b"[" * 500 + b"]" * 500
    return b'{"subject":"x","body":[' + b",".join([unit] * (size // (len(unit) + 1))) + b"]}"


def worst_msgpack(size: int) -> bytes:
    """A binary frame of about `size` bytes: ~one tiny container per byte, each within the
    per-container length limit (256 x 256 x 16 nested arrays)."""
    leaf = [[]] * 15
    rows = max(1, size // (256 * 17))
    return msgpack.packb({"subject": "x", "body": [[leaf] * 256] * rows})  # type: ignore[no-any-return]


async def decode_cost(stack: services.Stack, seconds: float = 4.0) -> dict[str, Any]:
    """Ping latency of a live session before and while another floods worst-case frames."""
    live = await connect(stack.url, max_size=None)
    before = await _pings(live, seconds)
    frames = [worst_json(1_000_000), worst_msgpack(1_000_000)]
    attacker = await connect(stack.url, max_size=None)
    stop = asyncio.Event()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while not stop.is_set():
            await attacker.send(frames[sent % 2])
            sent += 1
            await asyncio.sleep(0.2)  # 5 frames per second

    async def drain() -> None:
        async for _ in attacker:  # its error frames
            pass

    tasks = [asyncio.ensure_future(flood()), asyncio.ensure_future(drain())]
    during = await _pings(live, seconds)
    stop.set()
    for task in tasks:
        task.cancel()
    await attacker.close()
    await live.close()
    b, d = _summary(before), _summary(during)
    return {
        "frames_sent": sent,
        "frame_bytes": [len(f) for f in frames],
        "before": b,
        "during": d,
        "p50_ratio": round(d["p50_ms"] / b["p50_ms"], 2) if b.get("p50_ms") else None,
    }


async def mass_drop(stack: services.Stack, sessions: int = 2000) -> dict[str, Any]:
    """Ping latency of a live session while `sessions` others drop at once (and expire)."""
    live = await connect(stack.url)
    before = await _pings(live, 2.0)
    doomed: list[ClientConnection] = [await connect(stack.url) for _ in range(sessions)]
    for ws in doomed:
        ws.transport.abort()
    during = await _pings(live, 10.0)
    await live.close()
    return {"sessions": sessions, "before": _summary(before), "after_drop": _summary(during)}


async def delivery_failures(url: str) -> int:
    """`wsp_delivery_failures_total` (all codes) from the endpoint's /metrics."""
    host = url.removeprefix("ws://").partition("/")[0]
    reader, writer = await asyncio.open_connection(*host.split(":"))
    request = f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    text = (await reader.read()).decode()
    writer.close()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("wsp_delivery_failures_total{")
    )


async def run() -> dict[str, Any]:
    """Both scenarios, each on a fresh stack."""
    config = {"RESUME_WINDOW_SEC": "4", "METRICS": "true"}
    results: dict[str, Any] = {}
    async with services.ours(config=config) as stack:
        results["decode"] = await decode_cost(stack)
    async with services.ours(config={**config, "SESSION_EVENTS": "true"}) as stack:
        drop = await mass_drop(stack)
        drop["failed_event_deliveries"] = await delivery_failures(stack.url)
        results["mass_drop"] = drop
    return results


def markdown(results: dict[str, Any], command: str) -> str:
    """A BENCHMARKS.md section."""
    dec, drop = results["decode"], results["mass_drop"]
    after = drop["after_drop"]
    return "\n".join(
        [
            "## Hostile clients",
            "",
            f"`{command}`; ping round trips of one live session, sent every 20 ms whether or "
            "not the last was answered (ms).",
            "",
            "| scenario | before p50 / p99 | during p50 / p99 / max | result |",
            "|---|---|---|---|",
            f"| worst-case ~1 MiB frames at 5/s ({dec['frames_sent']} sent) "
            f"| {dec['before']['p50_ms']} / {dec['before']['p99_ms']} "
            f"| {dec['during']['p50_ms']} / {dec['during']['p99_ms']} / {dec['during']['max_ms']} "
            f"| p50 x{dec['p50_ratio']} (target < 3x) |",
            f"| {drop['sessions']} sessions drop at once, expire 4 s later "
            f"| {drop['before']['p50_ms']} / {drop['before']['p99_ms']} "
            f"| {after['p50_ms']} / {after['p99_ms']} / {after['max_ms']} "
            f"| p99 target < 500 ms; failed event deliveries: {drop['failed_event_deliveries']} |",
        ]
    )


def dumps(results: dict[str, Any]) -> str:
    """The results as indented JSON."""
    return json.dumps(results, indent=1)
