"""`provider.wsadapter` against the installed websockets, over real loopback connections.

These tests pin down the library attributes outside its documented API that the adapter
relies on: when an upgrade of websockets renames one or changes what it means, a test here
fails (and nothing else in the provider needs to change but the adapter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from provider import wsadapter

WAIT = 5.0


@dataclass
class Pair:
    """A server-side and a client-side connection of one WebSocket."""

    server: ServerConnection
    client: ClientConnection


Configure = Callable[[ServerConnection], None]


def only_compression(compression: bool) -> Configure:
    """A `configure` for `open_pair` that sets compression and turns every limit off."""

    def configure(ws: ServerConnection) -> None:
        wsadapter.configure(
            ws,
            max_message_bytes=None,
            ping_interval=None,
            ping_timeout=None,
            compression=compression,
        )

    return configure


@contextlib.asynccontextmanager
async def open_pair(
    configure: Configure | None = None,
    path: str = "/",
    *,
    create_connection: type[ServerConnection] = ServerConnection,
    **client_kw: Any,
) -> AsyncIterator[Pair]:
    """A connected pair (the client asks for `path`); `configure` runs on the server
    connection in `process_request`; `create_connection` is the server's connection class."""
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await accepted.put(ws)
        await done.wait()

    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        if configure is not None:
            configure(ws)
        return None

    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=process_request,
        compression=None,
        close_timeout=0.3,
        create_connection=create_connection,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}{path}", close_timeout=0.3, **client_kw)
        try:
            ws = await asyncio.wait_for(accepted.get(), WAIT)
            yield Pair(ws, client)
        finally:
            done.set()
            await client.close()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with open_pair() as p:
        yield p


async def test_receive_text_binary_and_bad_utf8_without_losing_the_connection(
    pair: Pair,
) -> None:
    await pair.client.send("hello")
    await pair.client.send(b"\x00\x01")
    await pair.client.send(b"\xff\xfe", text=True)  # a text frame that is not UTF-8
    await pair.client.send("after")
    receive = wsadapter.receive
    assert await asyncio.wait_for(receive(pair.server), WAIT) == "hello"
    assert await asyncio.wait_for(receive(pair.server), WAIT) == b"\x00\x01"
    assert await asyncio.wait_for(receive(pair.server), WAIT) is None
    assert await asyncio.wait_for(receive(pair.server), WAIT) == "after"
    assert pair.server.state is State.OPEN


async def test_receive_raises_connection_closed_with_the_peers_code(pair: Pair) -> None:
    await pair.client.close(4001, "bye")
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(wsadapter.receive(pair.server), WAIT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4001
    assert wsadapter.close_info(pair.server) == (4001, "bye")


async def test_receive_closes_1009_on_too_many_fragments(pair: Pair) -> None:
    from websockets.asyncio import messages

    await pair.client.send(iter(["x"] * (messages.MAX_FRAGMENTS + 1)))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(wsadapter.receive(pair.server), WAIT)
    assert wsadapter.close_info(pair.server) == (1009, "too many fragments")


async def test_close_info_reports_our_close_when_the_peer_sends_none(pair: Pair) -> None:
    pair.client.transport.pause_reading()  # it never answers our close frame
    await pair.server.close(1008, "slow consumer")  # gives up after close_timeout
    assert wsadapter.close_info(pair.server) == (1008, "slow consumer")
    assert pair.server.close_code == 1006  # what the documented API says instead


async def test_close_info_is_1006_when_the_tcp_connection_drops(pair: Pair) -> None:
    wsadapter.abort(pair.client)
    await asyncio.wait_for(pair.server.wait_closed(), WAIT)
    assert wsadapter.close_info(pair.server) == (1006, "")
    assert wsadapter.close_info(pair.client) == (1006, "")


async def test_write_now_writes_while_the_socket_takes_data(pair: Pair) -> None:
    assert wsadapter.write_now(pair.server, "one")
    assert wsadapter.write_now(pair.server, b"two")
    assert await asyncio.wait_for(pair.client.recv(), WAIT) == "one"
    assert await asyncio.wait_for(pair.client.recv(), WAIT) == b"two"


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("binary", [False, True])
def test_frame_bytes_are_the_librarys_framing(size: int, binary: bool) -> None:
    # write_now frames a message itself (no extension negotiated): the bytes must be the
    # ones websockets would write for the same message, for every length encoding.
    data = b"x" * size
    frame = Frame(Opcode.BINARY if binary else Opcode.TEXT, data)
    expected = frame.serialize(mask=False, extensions=[])
    assert wsadapter.frame_bytes(data if binary else data.decode()) == expected


@pytest.mark.parametrize("size", [10, 200, 70000])
async def test_write_now_frames_of_every_length_reach_the_peer(pair: Pair, size: int) -> None:
    text = "é" * size  # multi-byte UTF-8: the length is in bytes, not characters
    assert wsadapter.write_now(pair.server, text)
    assert wsadapter.write_now(pair.server, text.encode())
    assert await asyncio.wait_for(pair.client.recv(), WAIT) == text
    assert await asyncio.wait_for(pair.client.recv(), WAIT) == text.encode()


@pytest.mark.parametrize("compression", [True, False])
async def test_write_now_sees_the_negotiated_extensions(compression: bool) -> None:
    # `protocol.extensions` says whether a frame may be written without the library: with
    # permessage-deflate it compresses (and frames) the message itself.
    async with open_pair(only_compression(compression), compression="deflate") as p:
        assert bool(p.server.protocol.extensions) is compression
        transport = p.server.transport
        written: list[int] = []
        write = transport.write

        def counting_write(data: Any) -> None:
            written.append(len(data))
            write(data)

        transport.write = counting_write  # type: ignore[method-assign]
        assert wsadapter.write_now(p.server, "z" * 5000)
        assert await asyncio.wait_for(p.client.recv(), WAIT) == "z" * 5000
        # Compressed when negotiated (5000 times the same byte deflates to a few dozen).
        assert (sum(written) < 500) is compression


@pytest.mark.parametrize("compression", [True, False])
async def test_plain_transport_only_for_an_open_connection_without_extensions(
    compression: bool,
) -> None:
    # A fan-out writes one set of framed bytes to many sessions: only where the library
    # would not compress, and while the connection is open.
    async with open_pair(only_compression(compression), compression="deflate") as p:
        transport = wsadapter.plain_transport(p.server)
        assert (transport is None) is compression
        if transport is not None:
            transport.write(wsadapter.frame_bytes("shared"))
            assert await asyncio.wait_for(p.client.recv(), WAIT) == "shared"
        await p.server.close()
        assert wsadapter.plain_transport(p.server) is None


async def test_plain_transport_is_none_behind_a_full_write_buffer(pair: Pair) -> None:
    pair.client.transport.pause_reading()
    big = b"x" * 1_000_000
    for _ in range(100):
        if not wsadapter.write_now(pair.server, big):
            break
    assert wsadapter.plain_transport(pair.server) is None
    pair.client.transport.resume_reading()


async def test_write_now_refuses_behind_a_full_write_buffer(pair: Pair) -> None:
    pair.client.transport.pause_reading()
    big = b"x" * 1_000_000
    written = 0
    # The kernel buffers take some; then the transport buffers the rest: no more at once.
    while wsadapter.write_now(pair.server, big):
        written += 1
        assert written < 100, "the write buffer never filled"
    assert pair.server.transport.get_write_buffer_size() > 0
    pair.client.transport.resume_reading()


async def test_write_now_refuses_a_closed_connection(pair: Pair) -> None:
    await pair.server.close()
    assert not wsadapter.write_now(pair.server, "late")


async def test_abort_and_is_closing(pair: Pair) -> None:
    assert not wsadapter.is_closing(pair.server)
    wsadapter.abort(pair.server)
    assert wsadapter.is_closing(pair.server)
    await asyncio.wait_for(pair.client.wait_closed(), WAIT)


async def test_configure_sets_the_message_limit() -> None:
    def configure(ws: ServerConnection) -> None:
        wsadapter.configure(
            ws, max_message_bytes=10, ping_interval=None, ping_timeout=None, compression=False
        )

    async with open_pair(configure) as p:
        await p.client.send("x" * 10)
        assert await asyncio.wait_for(wsadapter.receive(p.server), WAIT) == "x" * 10
        await p.client.send("x" * 11)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(wsadapter.receive(p.server), WAIT)
        assert wsadapter.close_info(p.server)[0] == 1009


async def test_configure_sets_the_keepalive() -> None:
    def configure(ws: ServerConnection) -> None:
        wsadapter.configure(
            ws, max_message_bytes=None, ping_interval=0.05, ping_timeout=0.1, compression=False
        )

    async with open_pair(configure) as p:
        p.client.transport.pause_reading()  # it stops answering pings
        await asyncio.wait_for(p.server.wait_closed(), WAIT)
        assert wsadapter.close_info(p.server) == (1011, "keepalive ping timeout")


@pytest.mark.parametrize("compression", [True, False])
async def test_configure_offers_permessage_deflate_per_connection(compression: bool) -> None:
    async with open_pair(only_compression(compression), compression="deflate") as p:
        assert p.client.response is not None
        negotiated = p.client.response.headers.get("Sec-WebSocket-Extensions")
        if compression:
            assert negotiated is not None and "permessage-deflate" in negotiated
            assert "server_max_window_bits=12" in negotiated
        else:
            assert negotiated is None
        await p.client.send("z" * 1000)
        assert await asyncio.wait_for(wsadapter.receive(p.server), WAIT) == "z" * 1000


async def test_forget_headers_keeps_the_path_and_the_connection_working() -> None:
    async with open_pair(path="/ws?resume=abc") as pair:
        server = pair.server
        assert server.request is not None and server.request.headers  # as received
        assert server.response is not None and server.response.headers
        wsadapter.forget_headers(server)
        assert server.request is not None and server.response is not None
        assert server.request.path == "/ws?resume=abc"
        assert not server.request.headers
        assert server.response.status_code == 101
        assert not server.response.headers
        # The connection still tells frames from its handshake: both ways work, and close.
        await pair.client.send("after")
        assert await asyncio.wait_for(wsadapter.receive(server), WAIT) == "after"
        await server.send(b"back")
        assert await asyncio.wait_for(pair.client.recv(), WAIT) == b"back"
        await pair.client.close(1000, "bye")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(wsadapter.receive(server), WAIT)
        assert wsadapter.close_info(server) == (1000, "bye")


async def test_has_extensions_and_message_limit_read_what_configure_set() -> None:
    def configure(ws: ServerConnection) -> None:
        wsadapter.configure(
            ws, max_message_bytes=4096, ping_interval=None, ping_timeout=None, compression=True
        )

    async with open_pair(configure, compression="deflate") as pair:
        assert wsadapter.has_extensions(pair.server)
        assert wsadapter.message_limit(pair.server) == 4096
    async with open_pair(only_compression(False)) as pair:
        assert not wsadapter.has_extensions(pair.server)
        assert wsadapter.message_limit(pair.server) is None
