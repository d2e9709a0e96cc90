"""A session's inbox: order, back-pressure, the gate of a move and the final drain.

No sockets: the deliver callback records what it gets and waits on events it is given.
"""

from __future__ import annotations

import asyncio

import pytest

from provider.inbox import Done, Inbox
from wasmcloud_provider_sdk import BrokerMessage

OWNER = "session-1"
FIELDS = {"session_id": OWNER}
WAIT = 5.0


def message(n: int) -> BrokerMessage:
    return BrokerMessage(f"s.{n}", str(n).encode(), None)


class Recorder:
    """A deliver callback: records (owner, subject, frame id), optionally held by `hold`."""

    def __init__(self, hold: asyncio.Event | None = None, fail_on: str | None = None) -> None:
        self.got: list[tuple[str, str, str | int | None]] = []
        self.hold = hold
        self.fail_on = fail_on
        self.changed = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(
        self, owner: str, msg: BrokerMessage, frame_id: str | int | None, done: Done
    ) -> None:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        self.got.append((owner, msg.subject, frame_id))
        self.changed.set()
        if msg.subject == self.fail_on:
            raise RuntimeError("component failed")

    async def until(self, count: int) -> None:
        while len(self.got) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), WAIT)


async def test_messages_are_delivered_in_order_with_owner_and_frame_id() -> None:
    inbox: Inbox[str] = Inbox(8)
    deliver = Recorder()
    inbox.start(OWNER, deliver, None, FIELDS)
    for n in range(3):
        assert inbox.offer(message(n), n)
    await deliver.until(3)
    assert deliver.got == [(OWNER, "s.0", 0), (OWNER, "s.1", 1), (OWNER, "s.2", 2)]
    await inbox.finish(None, WAIT)


async def test_offer_refuses_when_full_and_put_waits() -> None:
    hold = asyncio.Event()
    inbox: Inbox[str] = Inbox(1)
    deliver = Recorder(hold)
    inbox.start(OWNER, deliver, None, FIELDS)
    assert inbox.offer(message(0), None)
    await asyncio.wait_for(deliver.entered.wait(), WAIT)  # message 0 is out of the queue
    assert inbox.offer(message(1), None)
    assert not inbox.offer(message(2), None)  # full: refused (`overloaded`)
    put = asyncio.ensure_future(inbox.put(message(3), None))
    await asyncio.sleep(0)  # a turn of the loop (not a wait for time)
    assert not put.done()  # back-pressure: the reader waits
    hold.set()
    await asyncio.wait_for(put, WAIT)
    await deliver.until(3)
    assert [subject for _, subject, _ in deliver.got] == ["s.0", "s.1", "s.3"]
    await inbox.finish(None, WAIT)


async def test_the_gate_holds_back_the_first_delivery() -> None:
    gate = asyncio.Event()
    inbox: Inbox[str] = Inbox(4)
    deliver = Recorder()
    inbox.start(OWNER, deliver, gate, FIELDS)
    inbox.offer(message(0), None)
    for _ in range(3):
        await asyncio.sleep(0)  # turns of the loop: time for the worker to (wrongly) deliver
    assert not deliver.entered.is_set()
    gate.set()
    await deliver.until(1)
    await inbox.finish(None, WAIT)


async def test_a_failed_delivery_is_logged_and_the_next_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox: Inbox[str] = Inbox(4)
    deliver = Recorder(fail_on="s.0")
    inbox.start(OWNER, deliver, None, FIELDS)
    inbox.offer(message(0), None)
    inbox.offer(message(1), None)
    await deliver.until(2)
    await inbox.finish(None, WAIT)
    assert any(
        r.getMessage() == f"delivery for session {OWNER} failed"
        and getattr(r, "session_id", None) == OWNER
        for r in caplog.records
    )


async def test_finish_delivers_what_is_queued_then_the_final_message() -> None:
    hold = asyncio.Event()
    inbox: Inbox[str] = Inbox(4)
    deliver = Recorder(hold)
    inbox.start(OWNER, deliver, None, FIELDS)
    inbox.offer(message(0), 0)
    inbox.offer(message(1), 1)
    hold.set()
    await inbox.finish(message(9), WAIT)
    assert deliver.got == [(OWNER, "s.0", 0), (OWNER, "s.1", 1), (OWNER, "s.9", None)]


async def test_finish_cancels_the_worker_after_its_timeout() -> None:
    inbox: Inbox[str] = Inbox(4)
    deliver = Recorder(asyncio.Event())  # never set: the component never answers
    inbox.start(OWNER, deliver, None, FIELDS)
    inbox.offer(message(0), None)
    await inbox.finish(message(9), 0.05)
    assert deliver.got == []


async def test_finish_without_start_does_nothing() -> None:
    inbox: Inbox[str] = Inbox(1)
    await inbox.finish(message(0), WAIT)
    inbox.cancel()


async def test_a_worker_runs_only_while_messages_wait() -> None:
    inbox: Inbox[str] = Inbox(4)
    deliver = Recorder()
    before = len(asyncio.all_tasks())
    inbox.start(OWNER, deliver, None, FIELDS)
    assert len(asyncio.all_tasks()) == before  # nothing to deliver: no task
    inbox.offer(message(0), None)
    assert len(asyncio.all_tasks()) == before + 1
    await deliver.until(1)
    for _ in range(10):  # turns of the loop for the worker to end
        if len(asyncio.all_tasks()) == before:
            break
        await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before
    inbox.offer(message(1), None)  # a new worker, in order after the first
    await deliver.until(2)
    assert [subject for _, subject, _ in deliver.got] == ["s.0", "s.1"]
    await inbox.finish(None, WAIT)


async def test_a_delivery_cancelled_elsewhere_does_not_stall_the_next() -> None:
    """A delivery's awaitable cancelled by someone else (not the inbox) still lets the
    next message go to the component."""
    inbox: Inbox[str] = Inbox(4)
    pending: list[asyncio.Future[None]] = []
    got: list[str] = []
    arrived = asyncio.Event()

    def deliver(_owner: str, msg: BrokerMessage, _frame_id: object, _done: Done) -> object:
        got.append(msg.subject)
        arrived.set()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.append(future)
        return future

    inbox.start(OWNER, deliver, None, FIELDS)  # type: ignore[arg-type]
    inbox.offer(message(0), None)
    inbox.offer(message(1), None)
    await asyncio.wait_for(arrived.wait(), WAIT)
    arrived.clear()
    pending[0].cancel()
    await asyncio.wait_for(arrived.wait(), WAIT)
    assert got == ["s.0", "s.1"]
    pending[1].set_result(None)
    await inbox.finish(None, WAIT)
