"""The callback-driven wRPC layer's edge cases, over a recording `Wire` (no sockets).

The wire here only records what is published and hands messages to the subscriptions: the
thing under test is the invoking and serving logic above it (`wrpc_invoke`, `wrpc_serve`,
`wrpc_inbox`); the NATS side is covered against a real nats-server elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from wasmcloud_provider_sdk.errors import LatticeUnavailable, NeedMoreBytes
from wasmcloud_provider_sdk.later import Deferred, Later
from wasmcloud_provider_sdk.wire import MsgCallback, WireMsg
from wasmcloud_provider_sdk.wrpc import WrpcTransport
from wasmcloud_provider_sdk.wrpc_handover import REPLY_HEADER, is_handover
from wasmcloud_provider_sdk.wrpc_wire import InvocationContext


class RecordingWire:
    """Records publishes; `deliver` hands a message to every matching subscription."""

    max_payload = 1 << 20
    is_connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []
        self.subs: dict[int, tuple[str, MsgCallback]] = {}
        self._n = 0

    def new_inbox(self) -> str:
        self._n += 1
        return f"_INBOX.t{self._n}"

    def publish(
        self, subject: str, data: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self.published.append((subject, data, reply))

    def subscribe(self, subject: str, callback: MsgCallback, queue: str = "") -> int:
        self._n += 1
        self.subs[self._n] = (subject, callback)
        return self._n

    def unsubscribe(self, sid: int) -> None:
        self.subs.pop(sid, None)

    async def flush(self, timeout: float = 2.0) -> None:
        return None

    async def close(self, timeout: float = 2.0) -> None:
        return None

    def deliver(
        self,
        subject: str,
        data: bytes = b"",
        reply: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        for pattern, callback in list(self.subs.values()):
            if pattern == subject or (pattern.endswith(".>") and subject.startswith(pattern[:-1])):
                callback(WireMsg(subject, reply, headers, data))


def decode_bytes(buf: bytes) -> bytes:
    return bytes(buf)


async def started() -> tuple[WrpcTransport, RecordingWire]:
    wire = RecordingWire()
    transport = WrpcTransport(wire)
    await transport.start()
    return transport, wire


async def test_a_failing_outcome_does_not_leave_other_calls_waiting() -> None:
    """The connection drops with two calls waiting and the first one's outcome handler
    raises: the second still learns that the lattice is gone."""
    transport, _wire = await started()
    outcomes: list[BaseException | None] = []

    def failing(_value: Any, _error: BaseException | None) -> None:
        raise RuntimeError("a broken outcome handler")

    def recording(_value: Any, error: BaseException | None) -> None:
        outcomes.append(error)

    transport.call("x.wrpc.0.0.1.f", b"p", decode_bytes, failing)
    transport.call("x.wrpc.0.0.1.f", b"p", decode_bytes, recording)
    transport.connection_lost()
    assert len(outcomes) == 1 and isinstance(outcomes[0], LatticeUnavailable)


async def test_a_second_handshake_is_ended_and_the_results_still_count() -> None:
    """Two servers answer one invocation (e.g. two holders of a moving session for a
    moment): the second gets the end of its parameters, the first one's results decide."""
    transport, wire = await started()
    outcomes: list[tuple[Any, BaseException | None]] = []
    transport.call("x.wrpc.0.0.1.f", b"p", decode_bytes, lambda v, e: outcomes.append((v, e)))
    subject, _data, reply = wire.published[-1]
    assert subject == "x.wrpc.0.0.1.f"
    wire.deliver(reply, b"", reply="srv-a")
    assert wire.published[-1] == ("srv-a.params", b"", "")
    wire.deliver(reply, b"", reply="srv-b")
    assert wire.published[-1] == ("srv-b.params", b"", "")
    assert outcomes == []
    wire.deliver(f"{reply}.results", b"ok")
    assert outcomes == [(b"ok", None)]


async def test_the_parameter_wait_is_per_chunk() -> None:
    """A long parameter stream that keeps coming is not cut off: each chunk gives the next
    one `params_timeout` more."""
    transport, wire = await started()
    transport.params_timeout = 5.0
    served: list[bytes] = []

    def decode(buf: bytes) -> bytes:
        if len(buf) < 6:
            raise NeedMoreBytes("more")
        return bytes(buf)

    def handler(_ctx: InvocationContext, params: bytes) -> bytes:
        served.append(params)
        return b"r"

    await transport.serve("x", "", "f", decode, handler)
    wire.deliver("x.wrpc.0.0.1.f", b"ab", reply="client")
    _subject, _data, server_inbox = wire.published[-1]  # the handshake
    stream = next(iter(transport._waiting.values()))
    loop = asyncio.get_running_loop()
    stream.deadline = loop.time() + 0.001  # nearly out of time...
    wire.deliver(f"{server_inbox}.params", b"cd")  # ...when the next chunk comes
    assert stream.deadline > loop.time() + 4.0
    wire.deliver(f"{server_inbox}.params", b"ef")
    assert served == [b"abcdef"]
    assert ("client.results", b"r", "") in wire.published


async def test_a_route_that_raises_serves_the_call_here() -> None:
    """A failing route (where to hand a call over) never leaves the caller without a
    handshake and its results: the call is served here."""
    transport, wire = await started()

    def route(_ctx: InvocationContext, _params: Any) -> str | None:
        raise RuntimeError("no idea")

    await transport.serve("x", "", "f", decode_bytes, lambda _c, p: p.upper(), route)
    wire.deliver("x.wrpc.0.0.1.f", b"hi", reply="client")
    subjects = [(subject, data) for subject, data, _reply in wire.published]
    assert subjects[-3][0] == "client"  # the handshake
    assert subjects[-2:] == [("client.results", b"HI"), ("client.results", b"")]


async def test_a_call_handed_over_is_routed_from_its_raw_bytes_and_never_decoded() -> None:
    """The route sees the first parameter message as it came; a call it names elsewhere is
    handed over whole (data unchanged, the markers added) without being decoded here, and
    a call it keeps is decoded and served as usual."""
    transport, wire = await started()
    decoded: list[bytes] = []
    seen: list[bytes] = []
    sent: list[tuple[str, dict[str, str] | None]] = []

    def record_headers(
        subject: str, data: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        sent.append((subject, headers))
        wire.published.append((subject, data, reply))

    wire.publish = record_headers  # type: ignore[method-assign]

    def decode(buf: bytes) -> bytes:
        decoded.append(bytes(buf))
        return bytes(buf)

    def route(_ctx: InvocationContext, data: bytes) -> str | None:
        seen.append(data)
        return "elsewhere.s.1" if data.startswith(b"away") else None

    await transport.serve("x", "", "f", decode, lambda _c, p: p.upper(), route)
    wire.deliver("x.wrpc.0.0.1.f", b"away-call", reply="client")
    assert seen == [b"away-call"] and decoded == []
    assert wire.published[-1][:2] == ("elsewhere.s.1", b"away-call")
    handover = sent[-1][1]
    assert handover is not None and is_handover(handover)
    assert handover[REPLY_HEADER] == "client"
    wire.deliver("x.wrpc.0.0.1.f", b"home", reply="client2")
    assert decoded == [b"home"]
    assert wire.published[-2:] == [("client2.results", b"HOME", ""), ("client2.results", b"", "")]


@pytest.mark.parametrize("decoder_error", [ValueError("bad"), KeyError("k")])
async def test_a_decoder_that_fails_ends_the_call(decoder_error: Exception) -> None:
    """Whatever a parameter decoder raises, the caller gets a handshake and the end of
    the results (a failed call), not a wait for its timeout."""
    transport, wire = await started()

    def decode(_buf: bytes) -> bytes:
        raise decoder_error

    await transport.serve("x", "", "f", decode, lambda _c, p: p)
    wire.deliver("x.wrpc.0.0.1.f", b"hi", reply="client")
    assert [subject for subject, _data, _reply in wire.published[-2:]] == [
        "client",
        "client.results",
    ]
    assert wire.published[-1][1] == b""


async def test_a_later_result_is_sent_from_the_callback_that_sets_it() -> None:
    """A handler that returns a `Later` is answered when it is set, inside that call (no
    task, nothing scheduled): the results go out before `set` returns."""
    transport, wire = await started()
    pending: list[Later[bytes]] = []

    def handler(_ctx: InvocationContext, _params: bytes) -> Later[bytes]:
        pending.append(Later())
        return pending[-1]

    await transport.serve("x", "", "f", decode_bytes, handler)
    wire.deliver("x.wrpc.0.0.1.f", b"hi", reply="client")
    assert wire.published[-1][0] == "client"  # only the handshake so far
    assert transport.in_flight == 1
    pending[0].set(b"done")
    assert [(s, d) for s, d, _r in wire.published[-2:]] == [
        ("client.results", b"done"),
        ("client.results", b""),
    ]
    assert transport.in_flight == 0
    await asyncio.wait_for(transport.drain(1.0), 1.0)  # nothing left to wait for


async def test_calls_with_the_same_kept_headers_share_one_context() -> None:
    """The NATS parser hands out one read-only mapping per header block it keeps; calls
    carrying it share one `InvocationContext`. A plain dict (not kept) gets its own."""
    transport, wire = await started()
    seen: list[InvocationContext] = []

    def handler(ctx: InvocationContext, params: bytes) -> bytes:
        seen.append(ctx)
        return params

    await transport.serve("x", "", "f", decode_bytes, handler)
    kept = MappingProxyType({"source-id": "comp", "link-name": "l1"})
    for headers in (kept, kept, {"source-id": "comp", "link-name": "l1"}):
        wire.deliver("x.wrpc.0.0.1.f", b"p", reply="c", headers=headers)
    assert seen[0] is seen[1] and seen[2] is not seen[0]
    assert [(c.source_id, c.link_name) for c in seen] == [("comp", "l1")] * 3


async def test_a_deferred_result_is_sent_when_its_gate_is_set() -> None:
    """A handler that returns a `Deferred` (a result known now, held back by a gate, e.g. a
    store's acknowledgement shared by many calls) is answered from the gate's `set`, every
    waiting call in the order served; the gate's own value is not the result."""
    transport, wire = await started()
    gate: Later[bool] = Later()

    def handler(_ctx: InvocationContext, params: bytes) -> Deferred[bytes]:
        return Deferred(gate, b"ok:" + params)

    await transport.serve("x", "", "f", decode_bytes, handler)
    wire.deliver("x.wrpc.0.0.1.f", b"a", reply="c1")
    wire.deliver("x.wrpc.0.0.1.f", b"b", reply="c2")
    assert [s for s, _d, _r in wire.published][-2:] == ["c1", "c2"]  # handshakes only
    assert transport.in_flight == 2
    gate.set(False)
    assert [(s, d) for s, d, _r in wire.published[-4:]] == [
        ("c1.results", b"ok:a"),
        ("c1.results", b""),
        ("c2.results", b"ok:b"),
        ("c2.results", b""),
    ]
    assert transport.in_flight == 0


async def test_shutdown_ends_a_call_whose_later_is_never_set() -> None:
    """Shutdown does not wait forever for a `Later` nobody sets: the drain gives up at its
    timeout, the caller gets the end of the results, and a late `set` sends nothing."""
    transport, wire = await started()
    later: Later[bytes] = Later()
    await transport.serve("x", "", "f", decode_bytes, lambda _c, _p: later)
    wire.deliver("x.wrpc.0.0.1.f", b"hi", reply="client")
    await transport.drain(0.05)
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert left == []  # the drain's own wait is not left pending
    assert await transport.end_served_calls() == 1
    assert wire.published[-1] == ("client.results", b"", "")
    count = len(wire.published)
    later.set(b"too late")
    assert len(wire.published) == count


class Bus:
    """Wires that deliver to one another, in publish order, when `run` is called; one
    member of a queue group gets each message (the first that subscribed)."""

    def __init__(self) -> None:
        self.subs: list[tuple[str, str, MsgCallback]] = []
        self.queue: list[WireMsg] = []
        self._n = 0

    def wire(self) -> BusWire:
        return BusWire(self)

    def run(self) -> None:
        while self.queue:
            msg = self.queue.pop(0)
            groups: set[str] = set()
            for pattern, group, callback in list(self.subs):
                if pattern == msg.subject or (
                    pattern.endswith(".>") and msg.subject.startswith(pattern[:-1])
                ):
                    if group and group in groups:
                        continue
                    groups.add(group)
                    callback(msg)


class BusWire(RecordingWire):
    def __init__(self, bus: Bus) -> None:
        super().__init__()
        self.bus = bus

    def new_inbox(self) -> str:
        self.bus._n += 1
        return f"_INBOX.b{self.bus._n}"

    def publish(
        self, subject: str, data: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self.published.append((subject, data, reply))
        self.bus.queue.append(WireMsg(subject, reply, headers, data))

    def subscribe(self, subject: str, callback: MsgCallback, queue: str = "") -> int:
        self.bus.subs.append((subject, queue, callback))
        return len(self.bus.subs)


async def test_a_call_whose_parameters_come_in_chunks_is_handed_over_and_completed_there() -> None:
    """The route needs only the first bytes, so a call whose parameters span several
    messages is handed over too: the holder answers the handshake, collects the rest on
    its own inbox and sends the results; the receiving instance serves nothing."""
    bus = Bus()
    receiver, holder = WrpcTransport(bus.wire()), WrpcTransport(bus.wire())
    for transport in (receiver, holder):
        await transport.start()

    def decode(buf: bytes) -> bytes:
        if len(buf) < 6:
            raise NeedMoreBytes("more")
        return bytes(buf)

    def upper(_ctx: InvocationContext, params: bytes) -> bytes:
        return params.upper()

    await receiver.serve("x", "", "f", decode, upper, lambda _c, _d: "holder.s.1")
    await holder.serve("x", "", "f", decode, upper, lambda _c, _d: None)
    taken: list[str] = []

    def on_holder_subject(msg: WireMsg) -> None:
        assert msg.headers is not None
        taken.append(msg.subject)
        holder.take_handover(msg.data, msg.headers, msg.reply)

    holder._wire.subscribe("holder.s.1", on_holder_subject)
    seen: list[WireMsg] = []
    bus.subs.append(("client", "", seen.append))
    bus.subs.append(("client.results", "", seen.append))
    bus.queue.append(WireMsg("x.wrpc.0.0.1.f", "client", None, b"abc"))
    bus.run()
    assert taken == ["holder.s.1"]
    handshake = seen[-1]
    assert handshake.subject == "client" and handshake.reply.startswith(holder._inbox_prefix)
    bus.queue.append(WireMsg(f"{handshake.reply}.params", "", None, b"def"))
    bus.run()
    assert [(m.subject, m.data) for m in seen[1:]] == [
        ("client.results", b"ABCDEF"),
        ("client.results", b""),
    ]
    assert all(not subject.startswith("client") for subject, _d, _r in receiver._wire.published)
