"""The bench's echo component as wRPC over NATS, sans-I/O (bench/echo_component.py runs it).

It plays what a wasmCloud host does for a component (docs/PROTOCOL.md section 4): it serves
`wasmcloud:messaging/handler@0.2.0.handle-message` for the component id and answers each
message by invoking the provider's `consumer@0.2.0.publish` with `subject = reply-to` (a
body starting `broadcast:` goes to `broadcast`; `ws.session.*` events are only answered).
The invocation carries `source-id` and `link-name` as a host sends them, plus `traceparent`
/ `tracestate` when the `handle-message` it serves had them (a host with tracing on sends
its span's context there).

Per message: 5 publishes (handshake, `Ok` result, end of results; the `publish` invocation,
end of its parameters) and 4 deliveries (the invocation; the handshake, the result and the
end of results of `publish`), as the SDK-based stand-in: a call whose parameters came whole
is answered with a handshake reply subject nobody subscribes, so the caller's empty end of
parameters goes nowhere. (A real host subscribes it, one delivery more per message.)

Everything is driven by the messages themselves: no task, no timer per message. A call not
finished within `CALL_TIMEOUT` is ended by `expire` (an `Err` or, for a served call still
reading parameters, only the empty end of results).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from . import natsproto
from .natsproto import Msg

HANDLER_SUBJECT = (
    "{lattice}.{component}.wrpc.0.0.1.wasmcloud:messaging/handler@0.2.0.handle-message"
)
PUBLISH_SUBJECT = "{lattice}.{provider}.wrpc.0.0.1.wasmcloud:messaging/consumer@0.2.0.publish"
BROADCAST_PREFIX = b"broadcast:"
SESSION_EVENT_PREFIX = b"ws.session."
OK = b"\x00"
#: Seconds a served call may wait for its parameters, or a call made for its handshake and
#: result (the SDK's handshake timeout; a busy provider answers within it).
CALL_TIMEOUT = 10.0
SID_HANDLER = 1
SID_INBOX = 2
TRACE_HEADERS = ("traceparent", "tracestate")


class NeedMore(Exception):
    """The value continues in the next chunk."""


class Undecodable(Exception):
    """The bytes are not a `broker-message`."""


def _uleb(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise NeedMore
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            raise Undecodable("length too long")


def _bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _uleb(buf, pos)
    end = pos + size
    if end > len(buf):
        raise NeedMore
    return buf[pos:end], end


def decode_broker_message(buf: bytes) -> tuple[bytes, bytes, bytes | None]:
    """`broker-message` -> (subject, body, reply-to) as raw bytes (UTF-8 not checked: the
    echo only compares prefixes and copies them back)."""
    subject, pos = _bytes(buf, 0)
    body, pos = _bytes(buf, pos)
    if pos >= len(buf):
        raise NeedMore
    tag = buf[pos]
    if tag == 0:
        reply_to = None
        pos += 1
    elif tag == 1:
        reply_to, pos = _bytes(buf, pos + 1)
    else:
        raise Undecodable(f"option tag {tag}")
    if pos != len(buf):
        raise Undecodable("trailing bytes")
    return subject, body, reply_to


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_publish(subject: bytes, body: bytes) -> bytes:
    """`publish({subject, body, reply-to: none})` parameters."""
    return _leb(len(subject)) + subject + _leb(len(body)) + body + b"\x00"


def encode_err(message: str) -> bytes:
    """`Err(message)` of a `result<_, string>`."""
    raw = message.encode()
    return b"\x01" + _leb(len(raw)) + raw


def result_complete(buf: bytes) -> bool:
    """Whether `buf` holds a whole `result<_, string>` (raises `Undecodable`)."""
    if not buf:
        return False
    if buf[0] == 0:
        return len(buf) == 1
    if buf[0] != 1:
        raise Undecodable(f"result tag {buf[0]}")
    try:
        _, end = _bytes(buf, 1)
    except NeedMore:
        return False
    return end == len(buf)


@dataclass(slots=True)
class Served:
    """A `handle-message` being served whose parameters came in several chunks."""

    client_inbox: str
    trace: dict[str, str]
    deadline: float
    params: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class Call:
    """A `consumer.publish` made for the served call answering to `client_inbox`."""

    client_inbox: str
    rest: bytes  # parameter bytes not sent with the invocation
    deadline: float
    result: bytearray = field(default_factory=bytearray)
    handshaken: bool = False


@dataclass(slots=True)
class Counts:
    """NATS messages this component published and was delivered, and messages handled."""

    published: int = 0
    delivered: int = 0
    handled: int = 0


class EchoCore:
    """The echo component's wRPC, driven by `on_msg`; what to send collects in `out`."""

    def __init__(self, lattice: str, component_id: str, provider_id: str) -> None:
        self.inbox = "_INBOX." + secrets.token_hex(11)
        self.handler_subject = HANDLER_SUBJECT.format(lattice=lattice, component=component_id)
        self.queue_group = f"{lattice}.{component_id}"
        self.publish_subject = PUBLISH_SUBJECT.format(lattice=lattice, provider=provider_id)
        self._quiet = "_INBOX." + secrets.token_hex(11)  # never subscribed (see module doc)
        self._headers = {"source-id": component_id, "link-name": "default"}
        self._plain_headers = natsproto.encode_headers(self._headers)
        self._prefix_len = len(self.inbox) + 1
        self._ids = 0
        self._served: dict[str, Served] = {}
        self._calls: dict[str, Call] = {}
        self._abandoned: set[str] = set()  # calls expired before their handshake
        self.max_payload = 1024 * 1024
        self.counts = Counts()
        self.out = bytearray()

    def subscriptions(self) -> bytes:
        """The SUBs to send once connected (then a PING: ready at its PONG)."""
        return natsproto.sub(self.handler_subject, SID_HANDLER, self.queue_group) + natsproto.sub(
            f"{self.inbox}.>", SID_INBOX
        )

    def _pub(self, subject: str, payload: bytes, reply: str = "") -> None:
        natsproto.pub(self.out, subject, payload, reply)
        self.counts.published += 1

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def on_msg(self, msg: Msg, now: float) -> None:
        """Handle one delivery."""
        self.counts.delivered += 1
        if msg.sid == SID_HANDLER:
            self._on_invocation(msg, now)
            return
        rest = msg.subject[self._prefix_len :]
        key, _, tail = rest.partition(".")
        if tail == "results":
            self._on_result(key, msg.payload)
        elif tail == "params":
            self._on_params(key, msg.payload, now)
        elif not tail:
            self._on_handshake(key, msg)

    # --- serving handle-message -------------------------------------------------------------

    def _on_invocation(self, msg: Msg, now: float) -> None:
        client_inbox = msg.reply
        if not client_inbox:
            return
        self.counts.handled += 1
        trace: dict[str, str] = {}
        if msg.headers and b"trace" in msg.headers:
            _, headers = natsproto.parse_headers(msg.headers)
            trace = {k: v for k, v in headers.items() if k.lower() in TRACE_HEADERS}
        try:
            value = decode_broker_message(msg.payload)
        except NeedMore:
            key = f"s{self._next_id()}"
            self._served[key] = Served(client_inbox, trace, now + CALL_TIMEOUT)
            self._served[key].params += msg.payload
            self._pub(client_inbox, b"", f"{self.inbox}.{key}")
            return
        except Undecodable:
            self._pub(client_inbox, b"", f"{self._quiet}.{self._next_id()}")
            self._end_results(client_inbox, None)
            return
        self._pub(client_inbox, b"", f"{self._quiet}.{self._next_id()}")
        self._handle(client_inbox, value, trace, now)

    def _on_params(self, key: str, chunk: bytes, now: float) -> None:
        served = self._served.get(key)
        if served is None:
            return  # the end of parameters of a call whose value was already complete
        if chunk:
            served.params += chunk
        try:
            value = decode_broker_message(bytes(served.params))
        except NeedMore:
            if chunk:
                return
            del self._served[key]  # ended inside a value
            self._end_results(served.client_inbox, None)
            return
        except Undecodable:
            del self._served[key]
            self._end_results(served.client_inbox, None)
            return
        del self._served[key]
        self._handle(served.client_inbox, value, served.trace, now)

    def _handle(
        self,
        client_inbox: str,
        value: tuple[bytes, bytes, bytes | None],
        trace: dict[str, str],
        now: float,
    ) -> None:
        subject, body, reply_to = value
        if subject.startswith(SESSION_EVENT_PREFIX):
            self._end_results(client_inbox, OK)
        elif body.startswith(BROADCAST_PREFIX):
            self._publish(
                client_inbox, b"broadcast", body[len(BROADCAST_PREFIX) :].lstrip(), trace, now
            )
        elif reply_to:
            self._publish(client_inbox, reply_to, body, trace, now)
        else:
            self._end_results(client_inbox, OK)

    def _end_results(self, client_inbox: str, result: bytes | None) -> None:
        """The result (None: a transport failure, only the end) and the end of results."""
        results = f"{client_inbox}.results"
        if result is not None:
            self._pub(results, result)
        self._pub(results, b"")

    # --- invoking consumer.publish ----------------------------------------------------------

    def _publish(
        self, client_inbox: str, subject: bytes, body: bytes, trace: dict[str, str], now: float
    ) -> None:
        params = encode_publish(subject, body)
        block = (
            natsproto.encode_headers({**self._headers, **trace}) if trace else self._plain_headers
        )
        key = str(self._next_id())
        reply = f"{self.inbox}.{key}"
        # NATS counts the header block against max_payload (PROTOCOL.md 4.3).
        first = max(self.max_payload - len(block) - len(reply), 0)
        self._calls[key] = Call(client_inbox, params[first:], now + CALL_TIMEOUT)
        natsproto.hpub(self.out, self.publish_subject, reply, block, params[:first])
        self.counts.published += 1

    def _on_handshake(self, key: str, msg: Msg) -> None:
        call = self._calls.get(key)
        if call is None or call.handshaken:
            if key in self._abandoned and msg.reply:
                # A late handshake: end the parameters so the provider's call finishes.
                self._abandoned.discard(key)
                self._pub(f"{msg.reply}.params", b"")
            return
        if msg.headers and natsproto.parse_headers(msg.headers)[0] == "503":
            del self._calls[key]
            self._end_results(call.client_inbox, encode_err("provider not served (no responders)"))
            return
        call.handshaken = True
        params = f"{msg.reply}.params"
        rest, limit = call.rest, self.max_payload
        for start in range(0, len(rest), limit):
            self._pub(params, rest[start : start + limit])
        call.rest = b""
        self._pub(params, b"")

    def _on_result(self, key: str, chunk: bytes) -> None:
        call = self._calls.get(key)
        if call is None:
            return  # the end of results of a call whose result was already complete
        if not chunk:
            del self._calls[key]
            self._end_results(call.client_inbox, encode_err("publish failed: no result"))
            return
        call.result += chunk
        try:
            complete = result_complete(bytes(call.result))
        except Undecodable:
            complete = False
            del self._calls[key]
            self._end_results(call.client_inbox, encode_err("publish failed: bad result"))
        if complete:
            del self._calls[key]
            # `publish` and `handle-message` both return result<_, string>: pass it on.
            self._end_results(call.client_inbox, bytes(call.result))

    def expire(self, now: float) -> int:
        """End the calls past their deadline; returns how many."""
        served = [k for k, s in self._served.items() if s.deadline <= now]
        for key in served:
            self._end_results(self._served.pop(key).client_inbox, None)
        calls = [k for k, c in self._calls.items() if c.deadline <= now]
        for key in calls:
            call = self._calls.pop(key)
            if not call.handshaken:
                self._abandoned.add(key)
            self._end_results(call.client_inbox, encode_err("publish timed out"))
        return len(served) + len(calls)
