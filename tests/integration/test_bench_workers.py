"""The bench's `workers` scenario waits for every worker to listen before it loads them.

A worker process exists a second or so before it has bound the shared port; load started
in between lands entirely on the workers already listening (with SO_REUSEPORT the kernel
spreads connections only over the sockets bound when each arrives), and `WORKERS=2` is then
measured with every session on worker 0."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from bench import services
from bench.procs import connections_on_port, listening_on_port, tree
from bench.workers import _wait_for_workers
from websockets.asyncio.client import connect

CLIENTS = 40


async def test_after_the_wait_every_worker_listens_and_sessions_spread() -> None:
    async with services.ours(component=None, provider_config={"WORKERS": "2"}) as stack:
        root = stack.pids["provider"]
        port = int(urlsplit(stack.url).port or 0)
        assert await _wait_for_workers(root, 2, port) == 2
        pids = tree(root)
        assert len(pids) == 2
        assert all(listening_on_port(p, port) for p in pids)
        # Clients opened right after the wait reach both workers (40 connections on one of
        # two sockets: all on one has a chance of 2 in 2**40).
        clients = [await connect(stack.url, open_timeout=10) for _ in range(CLIENTS)]
        try:
            held = {p: connections_on_port(p, port) for p in pids}
            assert sum(held.values()) == CLIENTS, held
            assert all(n > 0 for n in held.values()), held
        finally:
            await asyncio.gather(*(c.close() for c in clients))
