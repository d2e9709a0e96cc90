"""Pipelined history appends against a real nats-server with JetStream: order kept, failed
writes reported as before, and a stalled store holding a bounded window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from provider.frames import MessageTemplate
from provider.jsstore import AppendPipeline, HistoryStore
from provider.natsserver import NatsServer

WAIT = 10.0


@pytest.fixture
async def js_nc() -> AsyncIterator[NatsClient]:
    with NatsServer(jetstream=True) as server:
        nc = await nats.connect(server.url)
        try:
            yield nc
        finally:
            await nc.close()


async def test_pipelined_appends_are_stored_in_seq_order(js_nc: NatsClient) -> None:
    store = await HistoryStore.open(js_nc, "lattice", "provider")
    assert store is not None
    await store.ensure(window=60, per_session=1000)
    # Two sessions, interleaved, all appended before any acknowledgement is read.
    futures = []
    for seq in range(1, 301):
        for sid in ("a" * 22, "b" * 22):
            futures.append(store.append(sid, seq, MessageTemplate("s", b"%d" % seq, None)))
    await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    for sid in ("a" * 22, "b" * 22):
        stored, last = await store.history(sid, 0)
        assert last == 300
        assert [seq for seq, _ in stored] == list(range(1, 301))
        assert [m.body for _, m in stored] == [b"%d" % n for n in range(1, 301)]


async def test_a_failed_append_resolves_and_is_logged(
    js_nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    # No stream captures this subject: NATS answers "no responders" at once.
    pipeline = AppendPipeline(js_nc, timeout=5, max_in_flight=8, max_waiting_bytes=1000)
    await pipeline.start()
    with caplog.at_level(logging.WARNING, logger="provider.jsstore"):
        done = pipeline.append("nobody.stores.this", b"x")
        await asyncio.wait_for(done, WAIT)  # long before the 5 s timeout
    assert done.result() is None
    assert "could not store a message for session resume" in caplog.text


async def test_a_stalled_store_holds_a_bounded_window(
    js_nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A "store" that receives appends and never acknowledges them.
    received: list[Msg] = []
    eight = asyncio.Event()

    async def swallow(msg: Msg) -> None:
        received.append(msg)
        if len(received) == 8:
            eight.set()

    await js_nc.subscribe("stalled.*", cb=swallow)
    pipeline = AppendPipeline(js_nc, timeout=0.5, max_in_flight=8, max_waiting_bytes=100)
    await pipeline.start()
    with caplog.at_level(logging.WARNING, logger="provider.jsstore"):
        futures = [pipeline.append("stalled.s", b"0123456789") for _ in range(100)]
        # 8 for the window, then 100 bytes (with those 8's) waiting: the other 90 are
        # refused at once (their frames go out without waiting), said once in the log.
        assert sum(f.done() for f in futures) == 90
        assert "JetStream is behind" in caplog.text
        await asyncio.wait_for(eight.wait(), WAIT)
        assert pipeline.window.in_flight == 8
        assert pipeline.window.waiting == 2
        # The timeout ends them all (the 8, then the 2 waiting ones, published after).
        await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    assert "no answer from JetStream" in caplog.text
    await asyncio.wait_for(pipeline.drain(WAIT), WAIT)
    assert pipeline.window.in_flight == 0 and pipeline.window.waiting == 0
