"""The cluster bus after the provider's `init`-style assembly: no part both holds another and
is called back by it (a stub lattice connection that only records; no sockets)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from provider.app import WebSocketMessagingProvider
from provider.cluster import ClusterLink, bus_base
from provider.cluster_inbox import ClusterInbox

Callback = Callable[[Any], Awaitable[None]]


class StubSubscription:
    """What `nc.subscribe` returns: only unsubscribed."""

    async def unsubscribe(self) -> None:
        """Nothing to undo."""


@dataclass
class RecordingNats:
    """The lattice connection as the cluster bus uses it when assembled: records every
    subscription (subject, callback) and publish; sends nothing anywhere."""

    subscribed: list[tuple[str, Callback | None]] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    is_connected: bool = True
    max_payload: int = 1024 * 1024

    async def subscribe(
        self, subject: str, queue: str = "", cb: Callback | None = None, **_: Any
    ) -> StubSubscription:
        self.subscribed.append((subject, cb))
        return StubSubscription()

    async def publish(self, subject: str, payload: bytes = b"", **_: Any) -> None:
        self.published.append(subject)

    def new_inbox(self) -> str:
        return "_INBOX.stub"


def _children(obj: object) -> Iterator[object]:
    """What `obj` refers to directly: attributes, container items, a bound method's object,
    a function's closure."""
    if isinstance(obj, dict):
        yield from obj.keys()
        yield from obj.values()
    elif isinstance(obj, list | tuple | set | frozenset):
        yield from obj
    elif isinstance(obj, types.MethodType):
        yield obj.__self__
    elif isinstance(obj, types.FunctionType):
        yield from (c.cell_contents for c in obj.__closure__ or () if _filled(c))
    else:
        yield from getattr(obj, "__dict__", {}).values()
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    yield getattr(obj, name)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True


def _ours(obj: object) -> bool:
    """Walk into the project's own objects and plain containers and callables only."""
    if isinstance(obj, dict | list | tuple | set | frozenset):
        return True
    if isinstance(obj, types.MethodType | types.FunctionType):
        return True
    module = type(obj).__module__
    return module.startswith(("provider.", "wasmcloud_provider_sdk"))


def held_parts(start: object, parts: dict[int, str]) -> set[str]:
    """The parts `start` holds: reachable through its references without passing through
    another part (what that part holds is its own)."""
    found: set[str] = set()
    seen = {id(start)}
    todo = list(_children(start))
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if id(obj) in parts:
            found.add(parts[id(obj)])
            continue
        if _ours(obj):
            todo.extend(_children(obj))
    return found


async def _assembled() -> tuple[WebSocketMessagingProvider, RecordingNats]:
    provider = WebSocketMessagingProvider()
    nc = RecordingNats()
    await provider._join_cluster(nc, bus_base("default", "prov1"), "me")  # type: ignore[arg-type]
    return provider, nc


def _parts(provider: WebSocketMessagingProvider) -> dict[int, str]:
    named = {
        "hub": provider.hub,
        "link": provider.cluster,
        "inbox": provider.cluster_inbox,
        "exports": provider.exports,
        "pairs": provider.pairs,
        "provider": provider,
    }
    return {id(obj): name for name, obj in named.items()}


def test_the_assembly_has_both_halves() -> None:
    provider, _nc = asyncio.run(_assembled())
    assert isinstance(provider.cluster, ClusterLink)
    assert isinstance(provider.cluster_inbox, ClusterInbox)
    assert provider.hub.tables.peers is provider.cluster  # the hub asks through the link


def test_the_outgoing_half_holds_neither_the_hub_nor_the_exports() -> None:
    provider, _nc = asyncio.run(_assembled())
    parts = _parts(provider)
    assert held_parts(provider.cluster, parts) == {"inbox"}


def test_the_hub_does_not_hold_the_incoming_half() -> None:
    provider, _nc = asyncio.run(_assembled())
    parts = _parts(provider)
    assert "inbox" not in held_parts(provider.hub, parts)
    assert "inbox" not in held_parts(provider.exports, parts)
    assert held_parts(provider.cluster_inbox, parts) <= {"hub", "exports", "provider"}


def test_no_two_parts_hold_each_other() -> None:
    provider, _nc = asyncio.run(_assembled())
    parts = _parts(provider)
    holds = {name: held_parts(obj_for(provider, name), parts) for name in parts.values()}
    both_ways = {(a, b) for a, held in holds.items() for b in held if a in holds[b] and a < b}
    assert both_ways == set()


def obj_for(provider: WebSocketMessagingProvider, name: str) -> object:
    return {
        "hub": provider.hub,
        "link": provider.cluster,
        "inbox": provider.cluster_inbox,
        "exports": provider.exports,
        "pairs": provider.pairs,
        "provider": provider,
    }[name]


def test_nats_calls_back_the_incoming_half_only() -> None:
    """Every subscription of the bus, a session's subject included, has its callback on
    the incoming half (or its move responder), never on the link or the hub."""

    async def run() -> tuple[WebSocketMessagingProvider, RecordingNats]:
        provider, nc = await _assembled()
        assert provider.cluster is not None
        await provider.cluster.session_id_opened("abc")
        return provider, nc

    provider, nc = asyncio.run(run())
    inbox = provider.cluster_inbox
    assert inbox is not None
    subjects = [subject for subject, _cb in nc.subscribed]
    base = "wsp.default.prov1"
    assert subjects == [f"{base}.fanout", f"{base}.list", f"{base}.answers", f"{base}.s.abc"]
    owners = {id(getattr(cb, "__self__", None)) for _subject, cb in nc.subscribed}
    assert owners <= {id(inbox), id(inbox.moves)}
