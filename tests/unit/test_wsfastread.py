"""`provider.wsfastread` over real loopback connections: which messages the fast path takes,
which it leaves to websockets, and that their order holds."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from provider import wsadapter
from provider.wsfastread import FastReadConnection
from tests.unit.test_wsadapter import open_pair as adapter_pair

WAIT = 5.0


@dataclass
class Pair:
    server: FastReadConnection
    client: ClientConnection
    taken: list[tuple[bytes, bool]] = field(default_factory=list)

    def take(self, owner: object, data: bytes, binary: bool) -> None:
        assert owner is self  # what `take_messages` was given
        if data == b"boom":
            raise RuntimeError("a sink that fails")
        self.taken.append((data, binary))

    async def settled(self) -> None:
        """Every frame the client sent before now has been through `data_received`: a pong
        answers a ping only after the frames before it."""
        pong = await self.client.ping()
        await asyncio.wait_for(pong, WAIT)


@contextlib.asynccontextmanager
async def open_pair(compression: bool = False) -> AsyncIterator[Pair]:
    """A fast-read connection and its client, the sink taking messages into `Pair.taken`."""

    def configure(ws: ServerConnection) -> None:
        wsadapter.configure(
            ws,
            max_message_bytes=1 << 16,
            ping_interval=None,
            ping_timeout=None,
            compression=compression,
        )

    async with adapter_pair(
        configure,
        create_connection=FastReadConnection,
        compression="deflate" if compression else None,
    ) as opened:
        ws = opened.server
        assert isinstance(ws, FastReadConnection)
        pair = Pair(ws, opened.client)
        ws.take_messages(pair.take, pair)
        yield pair


def burst(*frames: Frame) -> bytes:
    """Frames as a client writes them (masked), to be written in one piece."""
    return b"".join(frame.serialize(mask=True, extensions=None) for frame in frames)


async def test_whole_messages_go_to_the_sink_and_not_to_the_library() -> None:
    async with open_pair() as pair:
        await pair.client.send("hello")
        await pair.client.send(b"\x00\x01")
        await pair.settled()
        assert pair.taken == [(b"hello", False), (b"\x00\x01", True)]
        assert pair.server.last_message_at > 0
        with pytest.raises(TimeoutError):  # nothing waits in the library
            await asyncio.wait_for(wsadapter.receive(pair.server), 0.2)


async def test_a_fragmented_message_keeps_its_place_among_whole_ones() -> None:
    async with open_pair() as pair:
        pair.client.transport.write(
            burst(
                Frame(Opcode.TEXT, b"one"),
                Frame(Opcode.TEXT, b"tw", fin=False),
                Frame(Opcode.PING, b""),
                Frame(Opcode.CONT, b"o"),
                Frame(Opcode.TEXT, b"three"),
            )
        )
        await pair.settled()
        # "two" went to the library; "three" may not overtake it, so it went there too.
        assert pair.taken == [(b"one", False)]
        assert await asyncio.wait_for(wsadapter.receive(pair.server), WAIT) == "two"
        pair.server.message_done()
        await pair.client.send("four")
        await pair.settled()
        assert pair.taken == [(b"one", False)]  # "three" is still unread
        assert await asyncio.wait_for(wsadapter.receive(pair.server), WAIT) == "three"
        pair.server.message_done()
        assert await asyncio.wait_for(wsadapter.receive(pair.server), WAIT) == "four"
        pair.server.message_done()
        await pair.client.send("five")
        await pair.settled()
        assert pair.taken == [(b"one", False), (b"five", False)]


async def test_without_a_sink_everything_goes_to_the_library() -> None:
    async with open_pair() as pair:
        pair.server.take_messages(None)
        await pair.client.send("a")
        assert await asyncio.wait_for(wsadapter.receive(pair.server), WAIT) == "a"
        pair.server.message_done()
        pair.server.take_messages(pair.take, pair)
        await pair.client.send("b")
        await pair.settled()
        assert pair.taken == [(b"b", False)]


async def test_compression_leaves_every_message_to_the_library() -> None:
    async with open_pair(compression=True) as pair:
        assert pair.server.protocol.extensions
        await pair.client.send("squeezed")
        assert await asyncio.wait_for(wsadapter.receive(pair.server), WAIT) == "squeezed"
        assert pair.taken == []


async def test_a_failing_sink_costs_one_message_not_the_connection() -> None:
    async with open_pair() as pair:
        await pair.client.send("boom")
        await pair.client.send("after")
        await pair.settled()
        assert pair.taken == [(b"after", False)]
        assert pair.server.state is State.OPEN


async def test_an_oversized_message_is_refused_by_the_library_with_1009() -> None:
    async with open_pair() as pair:
        await pair.client.send(b"x" * (1 << 17))
        await asyncio.wait_for(pair.client.wait_closed(), WAIT)
        assert wsadapter.close_info(pair.server)[0] == 1009


async def test_an_open_connection_is_no_bigger_than_the_librarys_own() -> None:
    """An idle session costs its connection object: the fast path keeps its state in one
    attribute, so the interpreter still shares the attribute dict's keys between
    connections (five attributes of its own made each ~1.3 KB bigger)."""
    async with open_pair() as pair:
        plain = ServerConnection(pair.server.protocol, pair.server.server)
        assert sys.getsizeof(vars(pair.server)) <= sys.getsizeof(vars(plain)) + 64
