"""A minimal NATS client protocol, sans-I/O, for the bench's stand-in component.

Only what a wRPC peer needs: parse what the server sends (INFO, MSG, HMSG, PING, PONG, +OK,
-ERR) and encode what a client sends (CONNECT, PING, PONG, SUB, PUB, HPUB). No reconnection,
no flow control: the stand-in lives as long as one bench stack and dies with its server.
It shares nothing with `src/` on purpose, so the bench's stand-in costs what a fast
component host would cost, whatever the SDK's NATS client does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CRLF = b"\r\n"
HEADER_LINE = b"NATS/1.0"


class ProtocolError(Exception):
    """The server sent something this parser does not understand (or `-ERR`)."""


@dataclass(slots=True)
class Msg:
    """A delivery (MSG or HMSG). `headers` is the raw header block (b"" for MSG)."""

    subject: str
    sid: int
    reply: str
    headers: bytes
    payload: bytes


@dataclass(slots=True)
class Info:
    """The server's INFO (as JSON)."""

    fields: dict[str, Any]


class Ping:
    """The server's PING: answer PONG."""


class Pong:
    """The server's PONG (the answer to our PING: everything before it was processed)."""


PING = Ping()
PONG = Pong()
Event = Msg | Info | Ping | Pong


class Parser:
    """Feed bytes from the server, get events; keeps a partial message between feeds."""

    def __init__(self) -> None:
        self._buf = bytearray()
        # The MSG/HMSG whose payload is awaited: (subject, sid, reply, header bytes, total).
        self._pending: tuple[str, int, str, int, int] | None = None

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data` (any slice of the stream); returns the complete events in order.

        Raises `ProtocolError` on `-ERR` or an unknown operation.
        """
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos = 0
        size = len(buf)
        while True:
            pending = self._pending
            if pending is not None:
                subject, sid, reply, hlen, total = pending
                end = pos + total
                if end + 2 > size:
                    break
                events.append(
                    Msg(
                        subject,
                        sid,
                        reply,
                        bytes(buf[pos : pos + hlen]),
                        bytes(buf[pos + hlen : end]),
                    )
                )
                pos = end + 2
                self._pending = None
                continue
            eol = buf.find(CRLF, pos)
            if eol < 0:
                break
            line = bytes(buf[pos:eol])
            pos = eol + 2
            op = line[:4].upper()
            if op == b"MSG ":
                parts = line.split()
                reply = parts[3].decode() if len(parts) == 5 else ""
                total = int(parts[-1])
                self._pending = (parts[1].decode(), int(parts[2]), reply, 0, total)
            elif op == b"HMSG":
                parts = line.split()
                reply = parts[3].decode() if len(parts) == 6 else ""
                self._pending = (
                    parts[1].decode(),
                    int(parts[2]),
                    reply,
                    int(parts[-2]),
                    int(parts[-1]),
                )
            elif op == b"PING":
                events.append(PING)
            elif op == b"PONG":
                events.append(PONG)
            elif op == b"+OK":
                pass
            elif op == b"INFO":
                events.append(Info(json.loads(line[5:])))
            elif op == b"-ERR":
                raise ProtocolError(line.decode(errors="replace"))
            else:
                raise ProtocolError(f"unexpected line from the server: {line[:80]!r}")
        del buf[:pos]
        return events


def parse_headers(block: bytes) -> tuple[str, dict[str, str]]:
    """A header block -> (status, headers): status "" for `NATS/1.0`, "503" for
    `NATS/1.0 503` (no responders). Names keep the case they were sent in."""
    lines = block.split(CRLF)
    first = lines[0]
    if not first.startswith(HEADER_LINE):
        raise ProtocolError(f"bad header block: {first[:40]!r}")
    status = first[len(HEADER_LINE) :].strip().split(b" ", 1)[0].decode()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers[name.decode().strip()] = value.decode().strip()
    return status, headers


def encode_headers(headers: dict[str, str]) -> bytes:
    """A header block for HPUB (the caller sends none at all when `headers` is empty)."""
    lines = [HEADER_LINE]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    return CRLF.join(lines) + CRLF + CRLF


def connect(name: str) -> bytes:
    """CONNECT (headers and no-responders on, as wRPC needs) followed by a PING."""
    options = {
        "verbose": False,
        "pedantic": False,
        "headers": True,
        "no_responders": True,
        "protocol": 1,
        "lang": "python-bench",
        "version": "0",
        "name": name,
    }
    return b"CONNECT " + json.dumps(options).encode() + CRLF + b"PING" + CRLF


def sub(subject: str, sid: int, queue: str = "") -> bytes:
    """SUB `subject` [queue group] as `sid`."""
    group = f" {queue}" if queue else ""
    return f"SUB {subject}{group} {sid}\r\n".encode()


def pub(out: bytearray, subject: str, payload: bytes, reply: str = "") -> None:
    """Append a PUB to `out`."""
    head = (
        f"PUB {subject} {reply} {len(payload)}\r\n"
        if reply
        else f"PUB {subject} {len(payload)}\r\n"
    )
    out += head.encode()
    out += payload
    out += CRLF


def hpub(out: bytearray, subject: str, reply: str, header_block: bytes, payload: bytes) -> None:
    """Append an HPUB to `out` (`header_block` from `encode_headers`)."""
    hlen = len(header_block)
    out += f"HPUB {subject} {reply} {hlen} {hlen + len(payload)}\r\n".encode()
    out += header_block
    out += payload
    out += CRLF


PING_LINE = b"PING" + CRLF
PONG_LINE = b"PONG" + CRLF
