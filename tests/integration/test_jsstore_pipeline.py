"""The history journal against a real nats-server with JetStream: the messages of one loop
step stored as one journal message, order kept, failed writes reported, a stalled store
holding a bounded window, and a journal read once and then read on from where it stopped."""

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
from provider.lifecycle import SessionRecord
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


async def open_store(lattice: Lattice, per_session: int = 1000) -> HistoryStore:
    store = await HistoryStore.open(lattice.nc, "lattice", "provider", lattice.wire)
    assert store is not None
    await store.ensure(window=60, per_session=per_session)
    return store


async def journal_messages(lattice: Lattice, store: HistoryStore) -> int:
    info = await lattice.nc.jetstream().stream_info(store.stream)
    return int(info.state.messages)


def msg(n: int, body: bytes | None = None) -> MessageTemplate:
    return MessageTemplate("s", b"%d" % n if body is None else body, None)


A, B, C = "a" * 22, "b" * 22, "c" * 22


async def test_one_loop_steps_messages_are_one_journal_message_in_seq_order(
    lattice: Lattice,
) -> None:
    store = await open_store(lattice)
    # Two sessions, interleaved, all appended in one loop step: one outcome, one write.
    outcomes = [store.append(sid, seq, msg(seq)) for seq in range(1, 301) for sid in (A, B)]
    assert len({id(o) for o in outcomes}) == 1
    assert not outcomes[0].done  # stored at the end of the step, acknowledged after
    await all_over(outcomes)
    assert outcomes[0].ok
    assert await journal_messages(lattice, store) == 1
    for sid in (A, B):
        stored, last = await store.history(sid, 0, store.journal)
        assert last == 300
        assert [seq for seq, _ in stored] == list(range(1, 301))
        assert [m.body for _, m in stored] == [b"%d" % n for n in range(1, 301)]
    # The next step's messages are the next journal message.
    later = store.append(A, 301, msg(301))
    assert later is not outcomes[0]
    await all_over([later])
    assert await journal_messages(lattice, store) == 2


async def test_an_acknowledgement_runs_the_waiting_callbacks_in_order(lattice: Lattice) -> None:
    store = await open_store(lattice, per_session=10)
    seen: list[str] = []
    done = asyncio.Event()
    stored = store.append(C, 1, msg(1))
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


async def test_an_ended_sessions_record_is_purged_after_its_last_write(lattice: Lattice) -> None:
    # The record and its purge go out on one connection in the order made: a purge right
    # behind the record's write leaves no record to resume from.
    store = await open_store(lattice)
    record = SessionRecord(A, "comp", "default", (), 3, b"h" * 32, None, 0.0, False)
    store.save_state(record)
    outcomes = [store.append(A, n, msg(n)) for n in range(1, 4)]
    store.forget(A)
    await all_over(outcomes)
    await lattice.wire.flush()
    assert await store.load_state(A) is None


async def test_a_record_names_the_journal_of_the_process_that_wrote_it(
    lattice: Lattice,
) -> None:
    store = await open_store(lattice)
    other = await open_store(lattice)
    assert store.journal != other.journal  # one journal per process
    record = SessionRecord(A, "comp", "default", ("t.*",), 7, b"h" * 32, "who", 1.5, True)
    store.save_state(record)
    await lattice.wire.flush()
    loaded = await other.load_state(A)
    assert loaded is not None
    assert loaded.journal == store.journal
    assert loaded.subscriptions == ("t.*",) and loaded.seq == 7


async def test_a_journal_is_read_once_and_then_read_on(lattice: Lattice) -> None:
    writer = await open_store(lattice, per_session=5)
    reader = await open_store(lattice, per_session=5)
    first = [writer.append(A, n, msg(n)) for n in range(1, 9)]
    first += [writer.append(B, n, msg(n)) for n in range(1, 3)]
    await all_over(first)
    # The newest RESUME_HISTORY_MESSAGES of a session, and its last seq.
    stored, last = await reader.history(A, 0, writer.journal)
    assert [seq for seq, _ in stored] == [4, 5, 6, 7, 8] and last == 8
    stored, last = await reader.history(B, 1, writer.journal)
    assert [seq for seq, _ in stored] == [2] and last == 2
    # More written since: read on from where the last read stopped (what was read is kept:
    # the journal's first message is gone from the stream, and still counts).
    await lattice.nc.jetstream().delete_msg(writer.stream, 1)
    more = [writer.append(B, n, msg(n)) for n in range(3, 5)]
    await all_over(more)
    stored, last = await reader.history(B, 0, writer.journal)
    assert [m.body for _, m in stored] == [b"1", b"2", b"3", b"4"] and last == 4
    # A moved-in session's history, written again by its new holder: no duplicates.
    reader.adopt(B, stored)
    await all_over([reader.append(B, 5, msg(5))])
    again, last = await writer.history(B, 0, reader.journal)
    assert [seq for seq, _ in again] == [1, 2, 3, 4, 5] and last == 5
    # Unknown sessions, journals of another provider, records without one: nothing.
    assert await reader.history(C, 0, writer.journal) == ([], 0)
    assert await reader.history(A, 0, "wsp.lattice.other.j.x") == ([], 0)
    assert await reader.history(A, 0, "") == ([], 0)


async def test_a_failed_write_ends_its_messages_and_nothing_waits(lattice: Lattice) -> None:
    # No stream for this provider's journal: the write fails ("no responders"); every
    # message of the step is over at once, not stored, and nothing stays in flight.
    store = HistoryStore(lattice.nc, "lattice", "nostream", lattice.wire)
    store._appends.start()
    outcomes = [store.append(A, n, msg(n)) for n in (1, 2, 3)]
    await all_over(outcomes)
    assert not outcomes[0].ok
    assert store._appends.window.in_flight == 0


async def test_a_step_bigger_than_max_payload_is_stored_in_parts() -> None:
    # A step's messages can outgrow the server's max_payload: they go out as several
    # journal messages, in order, instead of failing as a whole (a hole in the history).
    with NatsServer(jetstream=True, extra_config="max_payload: 65536") as server:
        nc = await nats.connect(server.url)
        wire = await NatsWire.connect(server.url)
        try:
            lattice = Lattice(nc, wire)
            store = await open_store(lattice)
            body = b"x" * 4000
            outcomes = [store.append(A, n, msg(n, body)) for n in range(1, 61)]
            await all_over(outcomes)
            assert all(o.ok for o in outcomes)  # 60 records, ~240 KB
            stored, last = await store.history(A, 0, store.journal)
            assert last == 60
            assert [seq for seq, _ in stored] == list(range(1, 61))
            assert await journal_messages(lattice, store) >= 4
        finally:
            await wire.close()
            await nc.close()


async def test_shutdown_stores_the_step_still_collecting(lattice: Lattice) -> None:
    store = await open_store(lattice)
    stored = store.append(A, 1, msg(1))
    await store.flush(WAIT)  # before the loop step ended: stored by the flush itself
    assert stored.ok
    assert (await store.history(A, 0, store.journal))[1] == 1
