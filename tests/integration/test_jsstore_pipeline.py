"""Pipelined history appends against a real nats-server with JetStream: order kept, failed
writes reported as before, a stalled store holding a bounded window, and every write of
the store (appends, records, purges) in order on one connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from provider.frames import MessageTemplate
from provider.jsappend import AppendPipeline
from provider.jsstore import HistoryStore
from provider.natsserver import NatsServer
from provider.stored import Stored
from wasmcloud_provider_sdk.natswire import NatsWire

WAIT = 10.0


@dataclass
class Lattice:
    """A JetStream nats-server with both connections the provider has to it."""

    nc: NatsClient
    wire: NatsWire


@pytest.fixture
async def lattice() -> AsyncIterator[Lattice]:
    with NatsServer(jetstream=True) as server:
        nc = await nats.connect(server.url)
        wire = await NatsWire.connect(server.url)
        try:
            yield Lattice(nc, wire)
        finally:
            await wire.close()
            await nc.close()


async def all_over(outcomes: list[Stored]) -> None:
    await asyncio.wait_for(asyncio.gather(*(o.wait() for o in outcomes)), WAIT)


async def test_pipelined_appends_are_stored_in_seq_order(lattice: Lattice) -> None:
    store = await HistoryStore.open(lattice.nc, "lattice", "provider", lattice.wire)
    assert store is not None
    await store.ensure(window=60, per_session=1000)
    # Two sessions, interleaved, all appended before any acknowledgement is read.
    outcomes = []
    for seq in range(1, 301):
        for sid in ("a" * 22, "b" * 22):
            outcomes.append(store.append(sid, seq, MessageTemplate("s", b"%d" % seq, None)))
    assert not any(o.done for o in outcomes)  # nothing acknowledged inside this loop step
    await all_over(outcomes)
    assert all(o.ok for o in outcomes)
    for sid in ("a" * 22, "b" * 22):
        stored, last = await store.history(sid, 0)
        assert last == 300
        assert [seq for seq, _ in stored] == list(range(1, 301))
        assert [m.body for _, m in stored] == [b"%d" % n for n in range(1, 301)]


async def test_an_acknowledgement_runs_the_waiting_callbacks_in_order(lattice: Lattice) -> None:
    store = await HistoryStore.open(lattice.nc, "lattice", "provider", lattice.wire)
    assert store is not None
    await store.ensure(window=60, per_session=10)
    seen: list[str] = []
    done = asyncio.Event()
    stored = store.append("c" * 22, 1, MessageTemplate("s", b"x", None))
    stored.then(lambda ok: seen.append(f"frame {ok}"))
    stored.then(lambda ok: seen.append(f"answer {ok}"))
    stored.then(lambda _: done.set())
    assert seen == []
    await asyncio.wait_for(done.wait(), WAIT)
    assert seen == ["frame True", "answer True"] and stored.ok
    stored.then(lambda ok: seen.append("late"))  # over already: runs at once
    assert seen[-1] == "late"


async def test_a_failed_append_resolves_and_is_logged(
    lattice: Lattice, caplog: pytest.LogCaptureFixture
) -> None:
    # No stream captures this subject: NATS answers "no responders" at once.
    pipeline = AppendPipeline(lattice.wire, timeout=5, max_in_flight=8, max_waiting_bytes=1000)
    pipeline.start()
    with caplog.at_level(logging.WARNING, logger="provider.jsappend"):
        done = pipeline.append("nobody.stores.this", b"x")
        await asyncio.wait_for(done.wait(), WAIT)  # long before the 5 s timeout
    assert done.done
    assert "could not store a message for session resume" in caplog.text


async def test_a_stalled_store_holds_a_bounded_window(
    lattice: Lattice, caplog: pytest.LogCaptureFixture
) -> None:
    js_nc = lattice.nc
    # A "store" that receives appends and never acknowledges them.
    received: list[Msg] = []
    eight = asyncio.Event()

    async def swallow(msg: Msg) -> None:
        received.append(msg)
        if len(received) == 8:
            eight.set()

    await js_nc.subscribe("stalled.*", cb=swallow)
    await js_nc.flush()
    pipeline = AppendPipeline(lattice.wire, timeout=2, max_in_flight=8, max_waiting_bytes=100)
    pipeline.start()
    with caplog.at_level(logging.WARNING, logger="provider.jsappend"):
        outcomes = [pipeline.append("stalled.s", b"0123456789") for _ in range(100)]
        # 8 published at once (the window), then 100 bytes waiting: the other 82 are
        # refused at once (their frames go out without waiting), said once in the log.
        assert sum(o.done for o in outcomes) == 82
        assert "JetStream is behind" in caplog.text
        assert pipeline.window.in_flight == 8
        assert pipeline.window.waiting == 10
        await asyncio.wait_for(eight.wait(), WAIT)  # the 8 did go out
        # The timeout ends them all (the 8, then the 10 waiting ones, published after).
        await all_over(outcomes)
    assert "no answer from JetStream" in caplog.text
    await asyncio.wait_for(pipeline.drain(WAIT), WAIT)
    assert pipeline.window.in_flight == 0 and pipeline.window.waiting == 0


async def test_an_ended_session_is_purged_after_its_last_append(lattice: Lattice) -> None:
    # Appends, the record and the purge go out on one connection in the order made: a purge
    # right behind appends still in flight leaves nothing of the session in the store.
    store = await HistoryStore.open(lattice.nc, "lattice", "provider", lattice.wire)
    assert store is not None
    await store.ensure(window=60, per_session=1000)
    sid = "d" * 22
    outcomes = [store.append(sid, n, MessageTemplate("s", b"m", None)) for n in range(1, 201)]
    store.forget(sid)
    await all_over(outcomes)
    await lattice.wire.flush()
    for _ in range(100):  # the purge request is answered after the appends were stored
        stored, last = await store.history(sid, 0)
        if not stored:
            break
        await asyncio.sleep(0.02)
    assert (stored, last) == ([], 0)
    assert await store.last_seq(sid) == 0


async def test_a_busy_sessions_messages_are_stored_in_batches(lattice: Lattice) -> None:
    # One append per session in flight: what is made meanwhile is stored as one batch
    # behind it. 50 messages made in one loop step: the first alone, the 49 others together.
    store = await HistoryStore.open(lattice.nc, "lattice", "provider", lattice.wire)
    assert store is not None
    await store.ensure(window=60, per_session=1000)
    sid = "e" * 22
    outcomes = [store.append(sid, n, MessageTemplate("s", b"%d" % n, None)) for n in range(1, 51)]
    assert len({id(o) for o in outcomes[1:]}) == 1  # the batch shares one outcome
    await all_over(outcomes)
    info = await lattice.nc.jetstream().stream_info(store.stream)
    assert info.state.messages == 2
    stored, last = await store.history(sid, 10)
    assert last == 50
    assert [seq for seq, _ in stored] == list(range(11, 51))
    assert [m.body for _, m in stored] == [b"%d" % n for n in range(11, 51)]
    assert await store.last_seq(sid) == 50
    # The session's next message, with nothing in flight, is stored alone and at once.
    alone = store.append(sid, 51, MessageTemplate("s", b"51", None))
    assert alone is not outcomes[-1]
    await all_over([alone])
    assert (await lattice.nc.jetstream().stream_info(store.stream)).state.messages == 3
    assert await store.last_seq(sid) == 51


async def test_a_batch_is_not_held_behind_an_append_that_failed(lattice: Lattice) -> None:
    # No stream for these subjects: the first append fails ("no responders"); the batch
    # collected behind it is over at once, not stored, and not published again.
    store = HistoryStore(lattice.nc, "lattice", "nostream", lattice.wire)
    store._appends.start()
    first = store.append("f" * 22, 1, MessageTemplate("s", b"1", None))
    batch = [store.append("f" * 22, n, MessageTemplate("s", b"x", None)) for n in (2, 3)]
    await all_over([first, *batch])
    assert not first.ok and not batch[0].ok
    assert store._appends.window.in_flight == 0


async def test_a_batch_bigger_than_max_payload_is_stored_in_parts() -> None:
    # A busy session's batch can outgrow the server's max_payload: it goes out as several
    # appends, in order, instead of failing as a whole (a hole in the stored history).
    with NatsServer(jetstream=True, extra_config="max_payload: 65536") as server:
        nc = await nats.connect(server.url)
        wire = await NatsWire.connect(server.url)
        try:
            store = await HistoryStore.open(nc, "lattice", "provider", wire)
            assert store is not None
            await store.ensure(window=60, per_session=1000)
            sid = "g" * 22
            body = b"x" * 4000
            outcomes = [
                store.append(sid, n, MessageTemplate("s", body, None)) for n in range(1, 61)
            ]
            await all_over(outcomes)
            assert all(o.ok for o in outcomes)  # 59 records, ~240 KB, behind the first
            stored, last = await store.history(sid, 0)
            assert last == 60
            assert [seq for seq, _ in stored] == list(range(1, 61))
            info = await nc.jetstream().stream_info(store.stream)
            assert info.state.messages >= 5  # the first alone, then the batch in parts
        finally:
            await wire.close()
            await nc.close()
