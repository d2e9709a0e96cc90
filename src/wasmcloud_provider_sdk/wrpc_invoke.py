"""Invoking wRPC functions: the parameter stream, the handshake, the result stream.

docs/PROTOCOL.md, section 4. An invocation we stop waiting for before its handshake came
(timeout, cancellation, lost connection) is remembered for `ABANDONED_MEMORY` seconds: if
the handshake arrives late, the end of the parameter stream is still sent, so the peer's
call can finish (its result is discarded). A wasmCloud host holds one of the component's
invocation permits until the parameters end: without that answer a late handshake would
keep the permit for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from nats.aio.client import Client as NatsClient

from .errors import (
    InvocationTimeout,
    LatticeUnavailable,
    NeedMoreBytes,
    NotServedError,
    TransportError,
)
from .wrpc_inbox import Inbox, InboxRouter
from .wrpc_trace import client_span, current_trace_headers
from .wrpc_wire import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_RESULT_TIMEOUT,
    STATUS_HEADER,
    handshake_reply,
    header_block_len,
    invocation_subject,
    split_chunks,
)


class Invoker(InboxRouter):
    """Invokes wRPC functions over one nats-py connection (the invoking half of
    `WrpcTransport`)."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        **rest: Any,
    ) -> None:
        super().__init__(nc, **rest)
        self.handshake_timeout = handshake_timeout

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
            return await self._invoke(
                subject,
                params,
                decode_result,
                all_headers or None,
                handshake_timeout,
                result_timeout,
            )

    async def _invoke(
        self,
        subject: str,
        params: bytes,
        decode_result: Callable[[bytes], Any],
        hdrs: dict[str, str] | None,
        handshake_timeout: float | None,
        result_timeout: float,
    ) -> Any:
        if not self._nc.is_connected:
            # nats-py would buffer the publish while reconnecting and we would wait for a
            # handshake that cannot come before the reconnect: fail now, clearly.
            raise LatticeUnavailable(f"not connected to the lattice NATS: {subject} not called")
        key = str(next(self._ids))
        reply = f"{self._inbox_prefix}.{key}"
        limit = self._nc.max_payload
        chunks = split_chunks(params, limit - header_block_len(hdrs) - len(reply), limit)
        inbox = Inbox()
        self._inboxes[key] = inbox
        try:
            try:
                await self._nc.publish(subject, chunks[0], reply=reply, headers=hdrs)
                timeout = handshake_timeout or self.handshake_timeout
                msg = await inbox.get(timeout)
                if msg is None:
                    raise InvocationTimeout(f"no handshake from {subject} within {timeout:g}s")
                server_inbox = handshake_reply(
                    subject, msg.subject, (msg.headers or {}).get(STATUS_HEADER), msg.reply
                )
            except NotServedError:
                raise
            except BaseException:
                # Timed out, cancelled, or the connection dropped: the handshake may already be
                # queued (it arrived in the same loop iteration), or may still come.
                if not self._end_queued_handshake(inbox, reply):
                    self._abandoned.remember(key, asyncio.get_running_loop().time())
                raise
            params_subject = f"{server_inbox}.params"
            try:
                for chunk in chunks[1:]:
                    await self._nc.publish(params_subject, chunk)
                await self._nc.publish(params_subject, b"")
            except BaseException:
                self._spawn_publish(params_subject, b"")  # let the peer's call finish
                raise
            return await self._collect_results(inbox, subject, decode_result, result_timeout)
        finally:
            del self._inboxes[key]

    def _end_queued_handshake(self, inbox: Inbox, reply: str) -> bool:
        """A handshake already routed to `inbox` but not taken: end its parameters now."""
        while not inbox.queue.empty():
            msg = inbox.queue.get_nowait()
            if msg is not None and msg.subject == reply and msg.reply and not msg.data:
                self._spawn_publish(f"{msg.reply}.params", b"")
                return True
        return False

    async def _collect_results(
        self, inbox: Inbox, subject: str, decode: Callable[[bytes], Any], timeout: float
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        buf = bytearray()
        while True:
            remaining = deadline - loop.time()
            msg = await inbox.get(max(remaining, 0))
            if msg is None:
                raise InvocationTimeout(f"no result from {subject} within {timeout:g}s")
            if not msg.data:
                if not buf:
                    raise TransportError(f"{subject} failed: the peer ended without a result")
                try:
                    return decode(bytes(buf))
                except NeedMoreBytes:
                    raise TransportError(f"{subject} ended its results inside a value") from None
            buf += msg.data
            if len(buf) > self.max_stream_bytes:
                raise TransportError(f"{subject} results exceed {self.max_stream_bytes} bytes")
            try:
                return decode(bytes(buf))
            except NeedMoreBytes:
                continue
