"""The sans-I/O NATS protocol (`natsproto`): parsing without sockets, and encoding."""

from __future__ import annotations

from typing import Any

import pytest

from wasmcloud_provider_sdk.natsproto import (
    HEADER_CACHE,
    NatsParser,
    NatsProtocolError,
    encode_connect,
    encode_headers,
    encode_pub,
    encode_sub,
    encode_unsub,
    parse_headers,
    parse_server_url,
)
from wasmcloud_provider_sdk.wire import STATUS, WireMsg


class Recorder:
    """A ControlHandler and two subscriptions' callbacks, recording everything in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.callbacks = {1: self.deliver, 2: self.deliver}

    def deliver(self, msg: WireMsg) -> None:
        self.events.append(("msg", msg.subject, msg.reply, msg.headers, msg.data))

    def on_info(self, info: dict[str, Any]) -> None:
        self.events.append(("info", info))

    def on_ping(self) -> None:
        self.events.append("ping")

    def on_pong(self) -> None:
        self.events.append("pong")

    def on_err(self, text: str) -> None:
        self.events.append(("err", text))

    def on_callback_error(self, subject: str, exc: Exception) -> None:
        self.events.append(("callback failed", subject, str(exc)))


STREAM = (
    b'INFO {"server_id":"x","max_payload":1048576}\r\n'
    b"MSG a.b 1 5\r\nhello\r\n"
    b"MSG a.c 2 _INBOX.r 0\r\n\r\n"
    b"PING\r\n"
    b"+OK\r\n"
    b"HMSG svc 1 _INBOX.x.1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    b"HMSG h 2 20 23\r\nNATS/1.0\r\nK: v 1\r\n\r\nabc\r\n"
    b"PONG\r\n"
    b"MSG gone 9 1\r\nx\r\n"
    b"MSG bin 1 4\r\n\r\n\r\n\r\n"
    b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n"
)

EXPECTED = [
    ("info", {"server_id": "x", "max_payload": 1048576}),
    ("msg", "a.b", "", None, b"hello"),
    ("msg", "a.c", "_INBOX.r", None, b""),
    "ping",
    ("msg", "svc", "_INBOX.x.1", {STATUS: "503"}, b""),
    ("msg", "h", "", {"K": "v 1"}, b"abc"),
    "pong",
    ("msg", "bin", "", None, b"\r\n\r\n"),
    ("err", 'Permissions Violation for Publish to "x"'),
]


def parse(*chunks: bytes) -> list[Any]:
    rec = Recorder()
    parser = NatsParser(rec.callbacks, rec)
    for chunk in chunks:
        parser.feed(chunk)
    return rec.events


def test_many_operations_in_one_read() -> None:
    assert parse(STREAM) == EXPECTED


def test_split_at_every_byte_boundary() -> None:
    for cut in range(1, len(STREAM)):
        assert parse(STREAM[:cut], STREAM[cut:]) == EXPECTED, cut


def test_one_byte_at_a_time() -> None:
    assert parse(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


def test_a_large_payload_in_many_reads() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = b"MSG big 1 %d\r\n" % len(payload) + payload + b"\r\nPING\r\n"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert parse(*chunks) == [("msg", "big", "", None, payload), "ping"]


def test_a_status_with_description_and_headers() -> None:
    block = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Stream: 7\r\n\r\n"
    assert parse_headers(block) == {
        STATUS: "100",
        "Description": "Idle Heartbeat",
        "Nats-Last-Stream": "7",
    }


def test_a_failing_callback_does_not_stop_the_stream() -> None:
    rec = Recorder()

    def boom(msg: WireMsg) -> None:
        raise RuntimeError("boom")

    parser = NatsParser({1: boom, 2: rec.deliver}, rec)
    parser.feed(b"MSG a 1 1\r\nx\r\nMSG b 2 1\r\ny\r\n")
    assert rec.events == [("callback failed", "a", "boom"), ("msg", "b", "", None, b"y")]


@pytest.mark.parametrize(
    "garbage", [b"HELLO\r\n", b"MSG a x 1\r\nx\r\n", b"INFO {nope\r\n", b"HMSG a 1 3 3\r\nabc\r\n"]
)
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(NatsProtocolError):
        parse(garbage)


def test_an_endless_control_line_is_a_protocol_error() -> None:
    with pytest.raises(NatsProtocolError):
        parse(b"MSG " + b"a" * 5000)


def test_encoders() -> None:
    out = bytearray()
    assert encode_pub(out, "s", "", b"hi", None) == 2
    assert encode_pub(out, "s", "r", b"", None) == 0
    size = encode_pub(out, "s", "r", b"xyz", {"A": "1"})
    block = b"NATS/1.0\r\nA: 1\r\n\r\n"
    assert size == len(block) + 3
    assert bytes(out) == (
        b"PUB s 2\r\nhi\r\nPUB s r 0\r\n\r\n"
        + b"HPUB s r %d %d\r\n" % (len(block), size)
        + block
        + b"xyz\r\n"
    )
    assert encode_headers({}) == b"NATS/1.0\r\n\r\n"
    assert encode_sub("a.>", "", 3) == b"SUB a.> 3\r\n"
    assert encode_sub("a", "q", 4) == b"SUB a q 4\r\n"
    assert encode_unsub(4) == b"UNSUB 4\r\n"
    assert encode_connect({"verbose": False}) == b'CONNECT {"verbose":false}\r\n'


def test_what_a_parser_reads_is_what_the_encoder_wrote() -> None:
    out = bytearray()
    encode_pub(out, "s", "r", b"payload", {"Trace": "t-1", "B": "x y"})
    # the server turns `HPUB subject reply hdr total` into `HMSG subject sid reply hdr total`
    delivered = bytes(out).replace(b"HPUB s r", b"HMSG s 1 r", 1)
    assert parse(delivered) == [("msg", "s", "r", {"Trace": "t-1", "B": "x y"}, b"payload")]


def test_server_urls() -> None:
    plain = parse_server_url("nats://127.0.0.1:4333")
    assert (plain.host, plain.port, plain.tls) == ("127.0.0.1", 4333, False)
    assert parse_server_url("localhost").port == 4222
    tls = parse_server_url("tls://u:p%40ss@nats.example")
    assert (tls.tls, tls.user, tls.password) == (True, "u", "p@ss")
    assert str(tls) == "tls://nats.example:4222"  # no credentials in logs
    assert parse_server_url("nats://s3cret@h:1").token == "s3cret"
    with pytest.raises(ValueError, match="scheme"):
        parse_server_url("http://h:1")


def hmsg(block: bytes, data: bytes = b"x") -> bytes:
    return b"HMSG s 1 %d %d\r\n%s%s\r\n" % (len(block), len(block) + len(data), block, data)


def test_a_repeated_header_block_is_parsed_once_and_handed_out_read_only() -> None:
    rec = Recorder()
    parser = NatsParser(rec.callbacks, rec)
    block = b"NATS/1.0\r\nsource-id: comp\r\nlink-name: default\r\n\r\n"
    parser.feed(hmsg(block) + hmsg(block))
    first, second = (event[3] for event in rec.events)
    assert first == {"source-id": "comp", "link-name": "default"}
    assert second is first  # parsed once
    with pytest.raises(TypeError):
        first["source-id"] = "someone else"  # type: ignore[index]


def test_blocks_with_a_trace_context_are_not_kept_and_the_cache_is_bounded() -> None:
    rec = Recorder()
    parser = NatsParser(rec.callbacks, rec)
    traced = b"NATS/1.0\r\ntraceparent: 00-%032x-%016x-01\r\n\r\n"
    for n in range(2):
        parser.feed(hmsg(traced % (n, n)))
    assert rec.events[0][3] is not rec.events[1][3]
    assert rec.events[1][3]["traceparent"].endswith("0000000000000001-01")
    for n in range(HEADER_CACHE + 10):  # more distinct blocks than are kept
        parser.feed(hmsg(b"NATS/1.0\r\nk: %d\r\n\r\n" % n))
    assert [event[3]["k"] for event in rec.events[2:]] == [str(n) for n in range(HEADER_CACHE + 10)]
    # Blocks seen once cannot fill the cache for good: a repeated block is still kept.
    again = b"NATS/1.0\r\nsource-id: late\r\n\r\n"
    parser.feed(hmsg(again) + hmsg(again))
    assert rec.events[-1][3] is rec.events[-2][3]
