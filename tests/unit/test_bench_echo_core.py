"""The bench's stand-in component, sans-I/O: its NATS protocol (bench/natsproto.py) and its
wRPC echo (bench/echo_core.py), message by message as docs/PROTOCOL.md section 4 has them."""

from __future__ import annotations

import pytest
from bench import natsproto
from bench.echo_core import CALL_TIMEOUT, EchoCore, encode_err, encode_publish

from wasmcloud_provider_sdk import BrokerMessage
from wasmcloud_provider_sdk.messaging import encode_broker_message


def test_parser_takes_messages_split_anywhere() -> None:
    block = natsproto.encode_headers({"source-id": "p"})
    stream = (
        b'INFO {"max_payload": 1024}\r\nPING\r\n'
        + b"MSG a.b 2 _INBOX.r 3\r\nabc\r\n"
        + f"HMSG c.d 1 {len(block)} {len(block) + 2}\r\n".encode()
        + block
        + b"hi\r\n+OK\r\nPONG\r\n"
    )
    parser = natsproto.Parser()
    events: list[natsproto.Event] = []
    for i in range(len(stream)):  # one byte at a time: every boundary is a split
        events += parser.feed(stream[i : i + 1])
    assert isinstance(events[0], natsproto.Info) and events[0].fields == {"max_payload": 1024}
    assert events[1] is natsproto.PING
    assert events[2] == natsproto.Msg("a.b", 2, "_INBOX.r", b"", b"abc")
    assert events[3] == natsproto.Msg("c.d", 1, "", block, b"hi")
    assert events[4] is natsproto.PONG
    assert natsproto.parse_headers(block) == ("", {"source-id": "p"})
    assert natsproto.parse_headers(b"NATS/1.0 503\r\n\r\n") == ("503", {})


def test_parser_raises_on_err() -> None:
    with pytest.raises(natsproto.ProtocolError, match="Authorization"):
        natsproto.Parser().feed(b"-ERR 'Authorization Violation'\r\n")


def _sent(core: EchoCore) -> list[natsproto.Msg]:
    """What the core wrote, parsed back (PUB/HPUB read as MSG/HMSG with sid 0)."""
    raw = bytes(core.out).replace(b"HPUB ", b"HMSG ").replace(b"PUB ", b"MSG ")
    core.out.clear()
    out = []
    for line_msg in natsproto.Parser().feed(_with_sids(raw)):
        assert isinstance(line_msg, natsproto.Msg)
        out.append(line_msg)
    return out


def _with_sids(raw: bytes) -> bytes:
    # MSG <subject> [reply] <size> -> MSG <subject> 0 [reply] <size>
    out = bytearray()
    pos = 0
    while pos < len(raw):
        eol = raw.index(b"\r\n", pos)
        op, subject, rest = raw[pos:eol].split(b" ", 2)
        out += op + b" " + subject + b" 0 " + rest + b"\r\n"
        sizes = rest.split()
        total = int(sizes[-1])
        out += raw[eol + 2 : eol + 4 + total]
        pos = eol + 4 + total
    return bytes(out)


def _invocation(
    core: EchoCore, params: bytes, headers: dict[str, str] | None = None
) -> natsproto.Msg:
    block = natsproto.encode_headers(headers or {"source-id": "bench-provider"})
    return natsproto.Msg(core.handler_subject, 1, "_INBOX.prov.7", block, params)


def _core() -> EchoCore:
    return EchoCore("default", "bench-echo", "bench-provider")


def test_an_echo_is_five_publishes_and_four_deliveries() -> None:
    core = _core()
    msg = BrokerMessage("bench", b"hello", "_INBOX.session.1")
    core.on_msg(_invocation(core, encode_broker_message(msg)), 0.0)
    handshake, invocation = _sent(core)
    assert handshake.subject == "_INBOX.prov.7" and handshake.payload == b""
    assert not handshake.reply.startswith(core.inbox)  # params complete: nobody listens
    assert invocation.subject == (
        "default.bench-provider.wrpc.0.0.1.wasmcloud:messaging/consumer@0.2.0.publish"
    )
    assert natsproto.parse_headers(invocation.headers)[1] == {
        "source-id": "bench-echo",
        "link-name": "default",
    }
    assert invocation.payload == encode_publish(b"_INBOX.session.1", b"hello")
    assert invocation.reply.startswith(core.inbox + ".")

    core.on_msg(natsproto.Msg(invocation.reply, 2, "_INBOX.prov.srv9", b"", b""), 0.0)
    (end_params,) = _sent(core)
    assert (end_params.subject, end_params.payload) == ("_INBOX.prov.srv9.params", b"")

    results = f"{invocation.reply}.results"
    core.on_msg(natsproto.Msg(results, 2, "", b"", b"\x00"), 0.0)
    core.on_msg(natsproto.Msg(results, 2, "", b"", b""), 0.0)  # its end: nothing more to do
    result, end = _sent(core)
    assert (result.subject, result.payload) == ("_INBOX.prov.7.results", b"\x00")
    assert (end.subject, end.payload) == ("_INBOX.prov.7.results", b"")
    assert (core.counts.published, core.counts.delivered, core.counts.handled) == (5, 4, 1)


def test_trace_context_is_passed_on_and_err_results_too() -> None:
    core = _core()
    trace = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": ""}
    params = encode_broker_message(BrokerMessage("bench", b"x", "_INBOX.s"))
    core.on_msg(_invocation(core, params, {"source-id": "p", **trace}), 0.0)
    _, invocation = _sent(core)
    assert natsproto.parse_headers(invocation.headers)[1] == {
        "source-id": "bench-echo",
        "link-name": "default",
        **trace,
    }
    err = encode_err("no such session")
    core.on_msg(natsproto.Msg(f"{invocation.reply}.results", 2, "", b"", err[:3]), 0.0)
    assert _sent(core) == []  # the result continues in the next chunk
    core.on_msg(natsproto.Msg(f"{invocation.reply}.results", 2, "", b"", err[3:]), 0.0)
    assert [m.payload for m in _sent(core)] == [err, b""]


def test_parameters_in_chunks_are_read_from_the_params_subject() -> None:
    core = _core()
    params = encode_broker_message(BrokerMessage("bench", b"y" * 100, "_INBOX.s"))
    core.on_msg(_invocation(core, params[:10]), 0.0)
    (handshake,) = _sent(core)
    assert handshake.reply.startswith(core.inbox + ".")
    core.on_msg(natsproto.Msg(f"{handshake.reply}.params", 2, "", b"", params[10:]), 0.0)
    (invocation,) = _sent(core)
    assert invocation.payload == encode_publish(b"_INBOX.s", b"y" * 100)


def test_session_events_are_answered_without_a_publish() -> None:
    core = _core()
    params = encode_broker_message(BrokerMessage("ws.session.connected", b"{}", None))
    core.on_msg(_invocation(core, params), 0.0)
    assert [(m.subject, m.payload) for m in _sent(core)][1:] == [
        ("_INBOX.prov.7.results", b"\x00"),
        ("_INBOX.prov.7.results", b""),
    ]


def test_no_responders_and_timeouts_end_the_served_call_with_err() -> None:
    core = _core()
    params = encode_broker_message(BrokerMessage("bench", b"z", "_INBOX.s"))
    core.on_msg(_invocation(core, params), 0.0)
    _, invocation = _sent(core)
    core.on_msg(natsproto.Msg(invocation.reply, 2, "", b"NATS/1.0 503\r\n\r\n", b""), 0.0)
    result, end = _sent(core)
    assert result.payload.startswith(b"\x01") and end.payload == b""

    core.on_msg(_invocation(core, params), 0.0)
    _, invocation = _sent(core)
    assert core.expire(CALL_TIMEOUT - 1) == 0
    assert core.expire(CALL_TIMEOUT) == 1
    result, end = _sent(core)
    assert b"timed out" in result.payload
    # A handshake arriving after that still gets the end of parameters.
    core.on_msg(natsproto.Msg(invocation.reply, 2, "_INBOX.late", b"", b""), 0.0)
    assert [(m.subject, m.payload) for m in _sent(core)] == [("_INBOX.late.params", b"")]


def test_large_publish_parameters_are_chunked_within_max_payload() -> None:
    core = _core()
    core.max_payload = 200
    params = encode_broker_message(BrokerMessage("bench", b"q" * 500, "_INBOX.s"))
    core.on_msg(_invocation(core, params), 0.0)
    _, invocation = _sent(core)
    assert len(invocation.headers) + len(invocation.payload) + len(invocation.reply) <= 200
    core.on_msg(natsproto.Msg(invocation.reply, 2, "_INBOX.srv", b"", b""), 0.0)
    chunks = _sent(core)
    assert all(len(c.payload) <= 200 for c in chunks) and chunks[-1].payload == b""
    assert invocation.payload + b"".join(c.payload for c in chunks) == encode_publish(
        b"_INBOX.s", b"q" * 500
    )
