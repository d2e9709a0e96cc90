"""Sans-I/O: the NATS client protocol, as much of it as the wRPC hot path needs.

`NatsParser` turns the bytes a server sends into calls: a subscription's callback for each
`MSG`/`HMSG` (looked up by sid in a dict its owner keeps), and a `ControlHandler` method for
`INFO`, `PING`, `PONG` and `-ERR`. The `encode_*` functions build what a client sends.
Nothing here reads a socket, starts a task or looks at a clock; `natswire` moves the bytes.

The protocol is nats-server's (docs.nats.io, "Client Protocol"): one CRLF-terminated control
line per operation, a payload of a stated size after `MSG`/`HMSG`, and a header block that
starts with `NATS/1.0` (plus a status code and description for status messages, e.g.
`NATS/1.0 503` when nobody serves the subject of a request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .errors import TransportError
from .wire import STATUS, MsgCallback, WireMsg

#: The header nats-server sets next to `Status` when the status line has a text.
DESCRIPTION = "Description"
#: The port of a `nats://host` URL without one.
DEFAULT_PORT = 4222

PING = b"PING\r\n"
PONG = b"PONG\r\n"
_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0"


class NatsProtocolError(TransportError):
    """The server sent bytes that are not the NATS protocol (the connection is dropped)."""


class ControlHandler(Protocol):
    """What a parser reports besides messages (a connection's adapter implements it)."""

    def on_info(self, info: dict[str, Any]) -> None:
        """An `INFO` (the first one, and updates from the server)."""

    def on_ping(self) -> None:
        """A `PING`: answer `PONG`."""

    def on_pong(self) -> None:
        """A `PONG`: the answer to our oldest unanswered `PING`."""

    def on_err(self, text: str) -> None:
        """An `-ERR` with its text (quotes removed)."""

    def on_callback_error(self, subject: str, exc: Exception) -> None:
        """A subscription's callback raised (the parser went on with the next message)."""


#: Distinct header blocks a parser keeps parsed.
HEADER_CACHE = 64


class NatsParser:
    """Parses a server's byte stream; `feed` may end anywhere, even inside a control line.

    `callbacks` maps a subscription id to its callback; the owner adds and removes entries,
    the parser only reads them. A message for an unknown sid (one that was just
    unsubscribed) is dropped. Each message is delivered before the next one is parsed.
    """

    __slots__ = ("_buf", "_callbacks", "_handler", "_headers", "_want")

    def __init__(self, callbacks: Mapping[int, MsgCallback], handler: ControlHandler) -> None:
        self._callbacks = callbacks
        self._handler = handler
        # Header blocks seen before, parsed (read-only): a host sends the same few blocks
        # (`source-id`, `link-name`) on every call. Blocks with a trace context differ per
        # call and are not kept; at most HEADER_CACHE blocks are (then the cache starts
        # again, so that blocks seen once, such as a hand-over's, cannot fill it for good).
        self._headers: dict[bytes, Mapping[str, str]] = {}
        self._buf: bytes | bytearray = b""
        # bytes needed before the message at the buffer's start is complete (0: unknown)
        self._want = 0

    def feed(self, data: bytes) -> None:
        """Parse `data` after what was left of earlier feeds; raises `NatsProtocolError`."""
        if self._buf:
            if isinstance(self._buf, bytes):
                self._buf = bytearray(self._buf)
            self._buf += data
            if len(self._buf) < self._want:
                return  # still inside a large payload
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        size = len(buf)
        pos = 0
        want = 0
        find = buf.find
        callbacks = self._callbacks
        while pos < size:
            eol = find(_CRLF, pos)
            if eol < 0:
                if size - pos > 4096:
                    raise NatsProtocolError("a control line longer than 4096 bytes")
                break
            op = buf[pos]
            if op == 77 or op == 72:  # MSG, HMSG
                header = op == 72
                args = bytes(buf[pos + (5 if header else 4) : eol]).split(b" ")
                try:
                    total = int(args[-1])
                    head_len = int(args[-2]) if header else 0
                    sid = int(args[1])
                except (ValueError, IndexError):
                    raise NatsProtocolError(f"bad message line {bytes(buf[pos:eol])!r}") from None
                start = eol + 2
                end = start + total
                if end + 2 > size:
                    want = end + 2 - pos
                    break
                pos = end + 2
                callback = callbacks.get(sid)
                if callback is None:
                    continue
                subject = args[0].decode()
                reply = args[2].decode() if len(args) == (5 if header else 4) else ""
                if header:
                    block = bytes(buf[start : start + head_len])
                    headers = self._headers.get(block)
                    if headers is None:
                        headers = parse_headers(block)
                        if b"traceparent" not in block:
                            if len(self._headers) >= HEADER_CACHE:
                                self._headers.clear()  # one-off blocks (e.g. hand-overs)
                            headers = self._headers[block] = MappingProxyType(headers)
                    msg = WireMsg(subject, reply, headers, bytes(buf[start + head_len : end]))
                else:
                    msg = WireMsg(subject, reply, None, bytes(buf[start:end]))
                try:
                    callback(msg)
                except Exception as exc:  # one bad callback must not stop the stream
                    self._handler.on_callback_error(subject, exc)
                continue
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if line == b"PING":
                self._handler.on_ping()
            elif line == b"PONG":
                self._handler.on_pong()
            elif line.startswith(b"INFO "):
                try:
                    info = json.loads(line[5:])
                except ValueError:
                    raise NatsProtocolError(f"bad INFO {line[:200]!r}") from None
                self._handler.on_info(info)
            elif line.startswith(b"-ERR"):
                self._handler.on_err(line[4:].strip().strip(b"'").decode(errors="replace"))
            elif line != b"+OK":
                raise NatsProtocolError(f"unknown operation {line[:80]!r}")
        self._want = want
        if pos >= size:
            self._buf = b""
        elif pos:
            self._buf = buf[pos:]
        else:
            self._buf = buf


def parse_headers(block: bytes | bytearray) -> dict[str, str]:
    """A header block (`NATS/1.0[ code[ text]]\\r\\nKey: value\\r\\n...\\r\\n`) as a dict;
    a status line's code is `Status` and its text `Description`, as nats-py has them."""
    lines = bytes(block).decode(errors="replace").split("\r\n")
    first = lines[0]
    if not first.startswith("NATS/1.0"):
        raise NatsProtocolError(f"bad header block {first[:80]!r}")
    headers: dict[str, str] = {}
    status = first[8:].strip()
    if status:
        code, _, text = status.partition(" ")
        if code.isdigit():
            headers[STATUS] = code
        if text.strip():
            headers[DESCRIPTION] = text.strip()
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep and key and " " not in key:
            headers[key] = value.strip()
    return headers


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The header block of `headers` (keys and values must not contain CR or LF)."""
    parts = [f"{k}: {v}\r\n" for k, v in headers.items()]
    return ("NATS/1.0\r\n" + "".join(parts) + "\r\n").encode()


def encode_pub(
    out: bytearray,
    subject: str,
    reply: str,
    data: bytes,
    headers: Mapping[str, str] | bytes | None,
) -> int:
    """Append a `PUB` (or `HPUB` when `headers`: a mapping, or its block already encoded by
    `encode_headers`) to `out`; returns the payload size the server counts against
    max_payload (header block included)."""
    if headers:
        block = headers if type(headers) is bytes else encode_headers(headers)  # type: ignore[arg-type]
        total = len(block) + len(data)
        if reply:
            out += f"HPUB {subject} {reply} {len(block)} {total}\r\n".encode()
        else:
            out += f"HPUB {subject} {len(block)} {total}\r\n".encode()
        out += block
    else:
        total = len(data)
        if reply:
            out += f"PUB {subject} {reply} {total}\r\n".encode()
        else:
            out += f"PUB {subject} {total}\r\n".encode()
    out += data
    out += _CRLF
    return total


def encode_sub(subject: str, queue: str, sid: int) -> bytes:
    """`SUB subject [queue] sid`."""
    if queue:
        return f"SUB {subject} {queue} {sid}\r\n".encode()
    return f"SUB {subject} {sid}\r\n".encode()


def encode_unsub(sid: int) -> bytes:
    """`UNSUB sid`."""
    return f"UNSUB {sid}\r\n".encode()


def encode_connect(options: Mapping[str, Any]) -> bytes:
    """`CONNECT {json}`."""
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + _CRLF


@dataclass(frozen=True)
class ServerAddress:
    """One server of a `nats://`/`tls://` URL list, with the credentials its URL carries."""

    host: str
    port: int
    tls: bool = False
    user: str = ""
    password: str = ""
    token: str = ""

    def __str__(self) -> str:  # never the credentials: this goes into logs and errors
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"


def parse_server_url(url: str) -> ServerAddress:
    """`nats://[user:password@|token@]host[:port]` (or `tls://`) as a `ServerAddress`;
    raises `ValueError` for another scheme or no host."""
    if "://" not in url:
        url = "nats://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls"):
        raise ValueError(f"not a NATS URL scheme: {parts.scheme!r} (nats:// or tls://)")
    if not parts.hostname:
        raise ValueError("no host in the NATS URL")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    token = ""
    if user and parts.password is None:
        user, token = "", user
    return ServerAddress(
        host=parts.hostname,
        port=parts.port or DEFAULT_PORT,
        tls=parts.scheme == "tls",
        user=user,
        password=password,
        token=token,
    )
