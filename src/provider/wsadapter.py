"""Every use of `websockets` beyond its documented API, in one place.

The documented API of an asyncio connection (websockets 13+) is: `recv`, `recv_streaming`,
`send`, `close`, `wait_closed`, `ping`, `pong`, `respond`, `id`, `logger`, `local_address`,
`remote_address`, `latency`, `state`, `request`, `response`, `subprotocol`, `close_code`,
`close_reason`, and the module function `broadcast`. The provider needs five things that API
does not give and one it does not say it allows, each kept here with the reason;
`tests/unit/test_wsadapter.py` fails when the library changes one of these names or what it
means.

* `receive`: a text frame that is not UTF-8 costs the client an error frame, not its session
  (`recv()` fails the whole connection with 1007): reads the connection's message assembler.
* `configure`: MAX_MESSAGE_BYTES, the keepalive and permessage-deflate per endpoint, while
  several endpoints share one listening socket (`serve` takes them once per socket).
* `close_info`: why a connection ended, including the close frame *we* sent when the peer
  sent none (1011 keepalive timeout, 1008 slow consumer, 1009 too big); the documented
  `close_code` reports 1006 then.
* `write_now`: write one frame synchronously when the socket takes it without buffering
  (the hot path of a reply or a broadcast: no coroutine per frame); needs the transport's
  write buffer size. When the connection negotiated no extension (no permessage-deflate),
  it frames the message itself (an unmasked server frame is a 2-10 byte
  header and the payload) and hands the bytes to the transport, skipping the protocol
  object's `Frame`/`BytesIO` round per frame (a broadcast to 10k sessions pays it 10k
  times: ~4 µs of the ~17 µs a session cost); needs the negotiated extensions.
* `plain_transport`: the same write for a frame already framed (`frame_bytes`) and shared
  by many sessions: a fan-out frames a message once per seq and format, not once per
  session.
* `abort`: drop a TCP connection that does not answer our close frame in time (shutdown
  budget), through the transport.
* `has_extensions`, `message_limit`: for the read fast path (`wsfastread`, which also
  overrides the connection's `data_received`, an asyncio protocol method, through `serve`'s
  documented `create_connection` hook): whether permessage-deflate was negotiated, and the
  connection's MAX_MESSAGE_BYTES as `configure` set it; `unmask`, the library's C
  unmasking when it was built with it.
* `forget_headers`: a connection keeps its opening handshake (`request`, `response`) for
  life, ~2.5 KB of headers per idle session that nothing reads after the upgrade (admission
  and authentication ran on them before it). The objects themselves cannot go (the
  connection tells its handshake from later frames by `request` being set, and its parser
  holds the request too), so their headers are emptied in place.
"""

from __future__ import annotations

import asyncio
import struct

from websockets.asyncio.connection import Connection, broadcast
from websockets.exceptions import ConnectionClosedError, TooManyFragments
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.protocol import State

from .closecodes import CloseCode
from .framesplit import Unmask, unmask_py

unmask: Unmask
try:  # websockets' C extension, which its own parser uses
    from websockets.speedups import apply_mask as _apply_mask

    unmask = _apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    unmask = unmask_py


async def receive(ws: Connection) -> str | bytes | None:
    """The next message: str (text frame), bytes (binary frame), None (text not UTF-8).

    Raises `ConnectionClosed` (with the peer's close code) when the connection is closed.
    `Connection.recv()` would fail the whole connection (1007) on invalid UTF-8; the frame
    contract says a bad frame costs an error frame, not the session. The assembler has
    consumed the message before decoding it, so reading on afterwards is safe.
    """
    try:
        return await ws.recv_messages.get(None)
    except UnicodeDecodeError:
        return None
    except TooManyFragments:
        # The rest of that message is still queued (`recv()` would read a continuation frame
        # as a message): close, and report the closed connection as `recv()` does.
        await ws.close(CloseCode.TOO_BIG, "too many fragments")
        protocol = ws.protocol
        raise ConnectionClosedError(
            protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
        ) from None
    except EOFError:
        return await ws.recv()  # raises ConnectionClosed with the peer's close code


def configure(
    ws: Connection,
    *,
    max_message_bytes: int | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    compression: bool,
) -> None:
    """Set one connection's limits, from its endpoint; call it from `process_request`
    (before the handshake completes: extensions are negotiated and the keepalive starts
    after it)."""
    ws.protocol.max_message_size = max_message_bytes
    ws.ping_interval = ping_interval
    ws.ping_timeout = ping_timeout
    # Only a server negotiates extensions from a list of factories.
    ws.protocol.available_extensions = (  # type: ignore[attr-defined]
        [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12, compress_settings={"memLevel": 5}
            )
        ]
        if compression
        else []
    )


def close_info(ws: Connection) -> tuple[int, str]:
    """Why a connection ended: the peer's close frame, else ours (e.g. 1011 on a keepalive
    timeout, 1008 slow consumer), else 1006 (the TCP connection just went away)."""
    close = ws.protocol.close_rcvd or ws.protocol.close_sent
    if close is None:
        return CloseCode.ABNORMAL, ""
    return int(close.code), close.reason


#: The first header byte of an unfragmented text / binary frame (FIN + opcode).
_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


def frame_bytes(frame: str | bytes) -> bytes:
    """`frame` as one unmasked, unfragmented WebSocket frame with no extension (what a
    server writes): header and payload, byte-identical to websockets' own framing."""
    if isinstance(frame, str):
        data = frame.encode()
        first = _FIN_TEXT
    else:
        data = frame
        first = _FIN_BINARY
    n = len(data)
    if n < 126:
        return bytes((first, n)) + data
    if n < 65536:
        return _HEAD_16.pack(first, 126, n) + data
    return _HEAD_64.pack(first, 127, n) + data


def write_now(ws: Connection, frame: str | bytes) -> bool:
    """Write `frame` now if the connection is open and nothing waits in its write buffer
    (so the frame goes out behind nothing and adds no back-pressure); False otherwise.

    Without extensions the frame is built here (`frame_bytes`) and written to the
    transport in one call: websockets keeps no per-frame state on the sending side but the
    continuation flag, and the provider never sends fragmented messages (nor does it
    write while its own `send` is in progress: the session's writer is idle). With
    permessage-deflate the library compresses and frames it (`broadcast`).
    """
    transport = ws.transport
    if ws.state is not State.OPEN or transport is None or transport.get_write_buffer_size():
        return False
    if ws.protocol.extensions:
        broadcast((ws,), frame)  # websockets' synchronous write of one frame
    else:
        transport.write(frame_bytes(frame))
    return True


def plain_transport(ws: Connection) -> asyncio.Transport | None:
    """The transport to write a `frame_bytes` frame to now: the connection is open, negotiated
    no extension, and nothing waits in its write buffer (the frame goes out behind nothing);
    None otherwise."""
    transport = ws.transport
    if (
        ws.state is not State.OPEN
        or transport is None
        or transport.get_write_buffer_size()
        or ws.protocol.extensions
    ):
        return None
    return transport


def has_extensions(ws: Connection) -> bool:
    """Did the opening handshake negotiate an extension (permessage-deflate)?"""
    return bool(ws.protocol.extensions)


def message_limit(ws: Connection) -> int | None:
    """The largest message this connection accepts (None: no limit), as `configure` set it."""
    return ws.protocol.max_message_size


def abort(ws: Connection) -> None:
    """Drop the TCP connection now (no closing handshake)."""
    transport = ws.transport
    if transport is not None:
        transport.abort()


def is_closing(ws: Connection) -> bool:
    """Is the TCP connection closing or closed (nothing more can be written)?"""
    transport = ws.transport
    return transport is None or transport.is_closing()


def forget_headers(ws: Connection) -> None:
    """Empty the opening handshake's headers (call it once the connection is open):
    `request` keeps its path, `response` its status."""
    for message in (ws.request, ws.response):
        if message is not None:
            message.headers.clear()
