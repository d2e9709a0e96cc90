"""Invoking wRPC functions: the parameter stream, the handshake, the result stream.

docs/PROTOCOL.md, section 4. A call is a small state machine (`Call`) fed by the inbox's
NATS callback: the handshake makes it send the rest of the parameters and their end, the
results complete it. `Invoker.call` reports the outcome to a plain callback (the hot path:
no task, future or timer per call); `Invoker.invoke` is the same call awaited.

An invocation we stop waiting for before its handshake came (timeout, cancellation, lost
connection) is remembered for `ABANDONED_MEMORY` seconds: if the handshake arrives late,
the end of the parameter stream is still sent, so the peer's call can finish (its result is
discarded). A wasmCloud host holds one of the component's invocation permits until the
parameters end: without that answer a late handshake would keep the permit for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from .errors import (
    InvocationTimeout,
    LatticeUnavailable,
    NeedMoreBytes,
    TransportError,
)
from .wire import STATUS, Wire, WireMsg
from .wrpc_inbox import InboxRouter, Waiting, clock
from .wrpc_trace import client_span, current_trace_headers
from .wrpc_wire import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_RESULT_TIMEOUT,
    handshake_reply,
    header_block_len,
    invocation_subject,
    split_chunks,
)

#: Told the outcome of a call: (result, None) or (None, the exception).
Outcome = Callable[[Any, BaseException | None], None]


class Call(Waiting):
    """One invocation in flight: waiting for its handshake, then for its results."""

    __slots__ = (
        "buf",
        "chunks",
        "decode",
        "invoker",
        "on_outcome",
        "overall",
        "result_timeout",
        "shaken",
        "subject",
    )

    def __init__(
        self,
        invoker: Invoker,
        key: str,
        deadline: float,
        subject: str,
        chunks: list[bytes],
        decode: Callable[[bytes], Any],
        result_timeout: float,
        on_outcome: Outcome,
        overall: float,
    ) -> None:
        super().__init__(key, deadline)
        self.overall = overall
        self.invoker = invoker
        self.subject = subject
        self.chunks = chunks
        self.decode = decode
        self.result_timeout = result_timeout
        self.on_outcome = on_outcome
        self.shaken = False
        self.buf = b""

    def received(self, msg: WireMsg) -> None:
        if self.shaken:
            if msg.subject.endswith(".results"):
                self._result_bytes(msg.data)
            elif msg.reply and not msg.data:
                # A second server answered the same invocation (e.g. two holders for a
                # moment): end its parameters so it does not wait on us, and ignore it.
                self.invoker.publish_quietly(f"{msg.reply}.params", b"")
            return
        headers = msg.headers
        try:
            server_inbox = handshake_reply(
                self.subject, msg.subject, headers.get(STATUS) if headers else None, msg.reply
            )
        except TransportError as exc:  # NotServedError among them
            self._finish(None, exc)
            return
        self.shaken = True
        invoker = self.invoker
        params_subject = f"{server_inbox}.params"
        try:
            publish = invoker.wire.publish
            for chunk in self.chunks[1:]:
                publish(params_subject, chunk)
            publish(params_subject, b"")
        except Exception as exc:
            invoker.publish_quietly(params_subject, b"")  # let the peer's call finish
            self._finish(None, exc)
            return
        self.chunks = []
        self.deadline = min(clock() + self.result_timeout, self.overall)

    def _result_bytes(self, data: bytes) -> None:
        if not data:
            if not self.buf:
                self._finish(
                    None, TransportError(f"{self.subject} failed: the peer ended without a result")
                )
                return
            try:
                value = self.decode(self.buf)
            except NeedMoreBytes:
                self._finish(
                    None, TransportError(f"{self.subject} ended its results inside a value")
                )
                return
            self._finish(value, None)
            return
        buf = self.buf + data if self.buf else data
        if len(buf) > self.invoker.max_stream_bytes:
            limit = self.invoker.max_stream_bytes
            self._finish(None, TransportError(f"{self.subject} results exceed {limit} bytes"))
            return
        try:
            value = self.decode(buf)
        except NeedMoreBytes:
            self.buf = buf
            return
        except Exception as exc:
            self._finish(None, exc)
            return
        self._finish(value, None)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        self.invoker.done(self)
        self.on_outcome(value, error)

    def expired(self) -> None:
        if self.shaken:
            error = InvocationTimeout(f"no result from {self.subject} within the time allowed")
        else:
            self.invoker.abandon(self.key)
            error = InvocationTimeout(f"no handshake from {self.subject} within the time allowed")
        self.on_outcome(None, error)

    def lost(self, error: TransportError) -> None:
        if not self.shaken:
            self.invoker.abandon(self.key)
        self.on_outcome(None, error)

    def give_up(self) -> None:
        """The caller stops waiting (cancelled): a late handshake still ends the parameters."""
        self.invoker.done(self)
        if not self.shaken:
            self.invoker.abandon(self.key)


class Invoker(InboxRouter):
    """Invokes wRPC functions over one NATS connection (the invoking half of
    `WrpcTransport`)."""

    def __init__(
        self,
        wire: Wire,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        **rest: Any,
    ) -> None:
        super().__init__(wire, **rest)
        self.handshake_timeout = handshake_timeout

    def call(
        self,
        subject: str,
        params: bytes,
        decode_result: Callable[[bytes], Any],
        on_outcome: Outcome,
        *,
        headers: Mapping[str, str] | None = None,
        handshake_timeout: float | None = None,
        result_timeout: float = DEFAULT_RESULT_TIMEOUT,
        total_timeout: float | None = None,
        header_len: int | None = None,
    ) -> Call:
        """Start invoking `subject` (see `invocation_subject`); `on_outcome(result, error)`
        is called once, from the NATS callback or the deadline sweep, never from here.

        `total_timeout` bounds the whole call (handshake and results), besides the two waits;
        `header_len` is `header_block_len(headers)` when the caller knows it already.
        `headers` are sent as they are (no trace headers added: `invoke` does that). Raises
        `LatticeUnavailable` when the connection is down now (nothing is sent).
        """
        wire = self._wire
        if not wire.is_connected:
            # A publish would wait for the reconnect, and the handshake cannot come before
            # it: fail now, clearly.
            raise LatticeUnavailable(f"not connected to the lattice NATS: {subject} not called")
        key = str(next(self._ids))
        reply = f"{self._inbox_prefix}.{key}"
        limit = wire.max_payload
        if header_len is None:
            header_len = header_block_len(headers)
        first = limit - header_len - len(reply)
        chunks = [params] if 0 < len(params) <= first else split_chunks(params, first, limit)
        now = clock()
        overall = now + total_timeout if total_timeout is not None else float("inf")
        entry = Call(
            self,
            key,
            min(now + (handshake_timeout or self.handshake_timeout), overall),
            subject,
            chunks,
            decode_result,
            result_timeout,
            on_outcome,
            overall,
        )
        wire.publish(subject, chunks[0], reply, headers)
        self.wait(entry)
        return entry

    async def invoke(
        self,
        prefix: str,
        instance: str,
        function: str,
        params: bytes,
        decode_result: Callable[[bytes], Any],
        *,
        headers: Mapping[str, str] | None = None,
        handshake_timeout: float | None = None,
        result_timeout: float = DEFAULT_RESULT_TIMEOUT,
    ) -> Any:
        """Invoke `{prefix}.wrpc.0.0.1.{instance}.{function}` and return the decoded result.

        Trace headers of the invocation being served (if any) are passed on unless `headers`
        sets them. Raises `NotServedError` (503, nobody serves it), `InvocationTimeout`,
        `LatticeUnavailable` (the NATS connection is down now, or was lost during the call:
        nothing is sent, or the answer cannot arrive), or `TransportError` (the peer ended the
        stream without a value, e.g. a trapped component).
        """
        subject = invocation_subject(prefix, instance, function)
        all_headers: dict[str, str] = dict(current_trace_headers.get() or {})
        if headers:
            all_headers.update(headers)
        with client_span(self.tracer, subject, all_headers):
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def outcome(value: Any, error: BaseException | None) -> None:
                if future.done():
                    return
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)

            entry = self.call(
                subject,
                params,
                decode_result,
                outcome,
                headers=all_headers or None,
                handshake_timeout=handshake_timeout,
                result_timeout=result_timeout,
            )
            try:
                return await future
            except asyncio.CancelledError:
                entry.give_up()
                raise
