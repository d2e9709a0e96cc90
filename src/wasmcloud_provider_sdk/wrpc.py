"""wRPC over NATS (`wrpc.0.0.1`), both directions: serving exports and invoking them.

docs/PROTOCOL.md, section 4. The wire rules kept here:

* invocation subject `{prefix}.wrpc.0.0.1.{instance}.{function}`, exports queue-subscribed
  with group = prefix;
* the invoker publishes the first parameter bytes with reply = its inbox `Rc`, the server
  answers with an empty handshake whose reply is the server inbox `Rs`;
* further parameter bytes go to `Rs.params`, results to `Rc.results`; an empty message ends
  each stream; a server that cannot run the call sends only the empty end;
* every message fits `max_payload` counting its header block (nats-py does not count it).

One wildcard subscription `{inbox}.>` made at start carries every handshake, result and
parameter chunk addressed to this process; its callback only routes messages to the queue of
the invocation they belong to. Handlers run in their own tasks, never in a NATS callback.

No path leaves a peer waiting on us. A served call always ends with its results or, whatever
happened (bad parameters, a failing or cancelled handler), the empty end of the result stream.
An invocation we stop waiting for before its handshake came (timeout, cancellation) is
remembered for `ABANDONED_MEMORY` seconds: if the handshake arrives late, the end of the
parameter stream is still sent, so the peer's call can finish (its result is discarded). A
wasmCloud host holds one of the component's invocation permits until the parameters end;
without that answer a late handshake would keep the permit for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import (
    CodecError,
    InvocationTimeout,
    LatticeUnavailable,
    NeedMoreBytes,
    NotServedError,
    TransportError,
)

log = logging.getLogger(__name__)

PROTOCOL = "wrpc.0.0.1"
TRACE_HEADERS = ("traceparent", "tracestate")
STATUS_HEADER = "Status"
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_RESULT_TIMEOUT = 60.0
DEFAULT_PARAMS_TIMEOUT = 10.0
#: Largest parameter or result stream accepted (a peer declaring a 4 GiB list must not make
#: us buffer it). 64 MiB is far above any sensible message.
DEFAULT_MAX_STREAM_BYTES = 64 * 1024 * 1024
#: How long an invocation we gave up on is remembered for a late handshake. A wasmCloud
#: host's default execution limit for a component call is 10 minutes.
ABANDONED_MEMORY = 600.0
#: At most this many are remembered (the oldest go first); ~100 bytes each.
ABANDONED_MAX = 100_000

#: Trace headers of the invocation being served, passed on to calls it makes.
current_trace_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "current_trace_headers", default=None
)


def invocation_subject(prefix: str, instance: str, function: str) -> str:
    """`{prefix}.wrpc.0.0.1.{instance}.{function}` (the instance segment omitted when empty)."""
    if instance:
        return f"{prefix}.{PROTOCOL}.{instance}.{function}"
    return f"{prefix}.{PROTOCOL}.{function}"


def _span_name(subject: str) -> str:
    """`wasmcloud:messaging/consumer@0.2.0.publish` from an invocation subject."""
    return subject.partition(f".{PROTOCOL}.")[2] or subject


def header_block_len(headers: Mapping[str, str] | None) -> int:
    """Bytes of the NATS header block nats-py writes for `headers` (0 for None)."""
    if headers is None:
        return 0
    size = len(b"NATS/1.0\r\n") + 2
    for key, value in headers.items():
        size += len(key.strip().encode()) + 2 + len(value.strip().encode()) + 2
    return size


def split_chunks(data: bytes, first: int, rest: int) -> list[bytes]:
    """Split `data` into a first chunk of at most `first` bytes, then chunks of `rest`."""
    if first < 1 or rest < 1:
        raise TransportError("max_payload is too small for the headers of this message")
    chunks = [data[:first]]
    for start in range(first, len(data), rest):
        chunks.append(data[start : start + rest])
    return chunks


@dataclass(frozen=True)
class InvocationContext:
    """What a served function learns about its caller (from the invocation headers)."""

    source_id: str
    link_name: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def trace_headers(self) -> dict[str, str]:
        """The W3C trace headers of the call, to pass on to calls made while serving it."""
        return {k: v for k, v in self.headers.items() if k.lower() in TRACE_HEADERS}


class ParamsDecoder(Protocol):
    """Decodes a complete parameter buffer, raising `NeedMoreBytes` while it is incomplete."""

    def __call__(self, buf: bytes, /) -> Any: ...


Handler = Callable[[InvocationContext, Any], Awaitable[bytes]]


class _Inbox:
    """Per-invocation queue that the wildcard subscription routes messages to; `None` in it
    means the invocation failed with `error` (the lattice connection was lost)."""

    __slots__ = ("error", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self.error: TransportError | None = None

    def fail(self, error: TransportError) -> None:
        """Wake the waiter with `error`."""
        if self.error is None:
            self.error = error
            self.queue.put_nowait(None)

    async def get(self, timeout: float) -> Msg | None:
        """The next message within `timeout` (None on timeout); raises the failure if any.

        Not `asyncio.wait_for(queue.get(), ...)`: on 3.11 that wraps the get in a new task,
        three times per call on the hot path (bench --profile); a queued message is taken
        without arming a timer at all.
        """
        if self.queue.empty():
            try:
                async with asyncio.timeout(timeout):
                    msg = await self.queue.get()
            except TimeoutError:
                return None
        else:
            msg = self.queue.get_nowait()
        if msg is None:
            assert self.error is not None
            raise self.error
        return msg


class WrpcTransport:
    """Serves and invokes wRPC functions over one nats-py connection."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        params_timeout: float = DEFAULT_PARAMS_TIMEOUT,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
    ) -> None:
        self._nc = nc
        self._inbox_prefix = nc.new_inbox()  # subscribed: handshakes, results, our params
        self._quiet_prefix = nc.new_inbox()  # never subscribed: Rs when params are complete
        self._ids = itertools.count(1)
        self._inboxes: dict[str, _Inbox] = {}
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()  # invocations being served
        self._background: set[asyncio.Task[None]] = set()  # stream ends sent late
        self._open_results: set[str] = set()  # result streams of served calls not yet ended
        self._inbox_sub: Subscription | None = None
        #: Invocations given up before their handshake: key -> when to forget it.
        self._abandoned: dict[str, float] = {}
        self.handshake_timeout = handshake_timeout
        self.params_timeout = params_timeout
        self.max_stream_bytes = max_stream_bytes
        #: An OpenTelemetry tracer (set when the host enables traces): spans per invocation.
        self.tracer: Any = None

    def connection_lost(self) -> None:
        """Fail every invocation waiting for a handshake, parameters or results with
        `LatticeUnavailable`: NATS core does not keep what was published to our inbox while
        we were disconnected, so those answers can never arrive. (The runtime calls this
        from the NATS client's disconnected callback.)"""
        for inbox in self._inboxes.values():
            inbox.fail(LatticeUnavailable("lost the lattice NATS connection during the call"))

    @property
    def in_flight(self) -> int:
        """Invocations currently being served."""
        return len(self._tasks)

    async def start(self) -> None:
        """Subscribe the process-wide inbox wildcard (call once, before serving or invoking)."""
        self._inbox_sub = await self._nc.subscribe(
            f"{self._inbox_prefix}.>",
            cb=self._route,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )

    async def _route(self, msg: Msg) -> None:
        # Handshake arrives on `<prefix>.<id>`, results on `<prefix>.<id>.results`,
        # parameters for our served calls on `<prefix>.s<id>.params`.
        rest = msg.subject[len(self._inbox_prefix) + 1 :]
        key = rest.split(".", 1)[0]
        inbox = self._inboxes.get(key)
        if inbox is not None:
            inbox.queue.put_nowait(msg)
        elif key in self._abandoned and rest == key and msg.reply and msg.data == b"":
            self._finish_abandoned(key, msg.reply)

    @property
    def abandoned(self) -> int:
        """Invocations given up before their handshake, still remembered."""
        return len(self._abandoned)

    def _abandon(self, key: str) -> None:
        """We stopped waiting for this invocation's handshake: remember it (see module doc)."""
        now = asyncio.get_running_loop().time()
        abandoned = self._abandoned
        while abandoned:
            oldest, forget_at = next(iter(abandoned.items()))
            if forget_at > now and len(abandoned) < ABANDONED_MAX:
                break
            del abandoned[oldest]
        abandoned[key] = now + ABANDONED_MEMORY

    def _end_queued_handshake(self, inbox: _Inbox, reply: str) -> bool:
        """A handshake already routed to `inbox` but not taken: end its parameters now."""
        while not inbox.queue.empty():
            msg = inbox.queue.get_nowait()
            if msg is not None and msg.subject == reply and msg.reply and not msg.data:
                self._spawn_publish(f"{msg.reply}.params", b"")
                return True
        return False

    def _finish_abandoned(self, key: str, server_inbox: str) -> None:
        """A late handshake: end the parameter stream so the peer's call can finish."""
        del self._abandoned[key]
        log.info(
            "late wRPC handshake for an invocation given up earlier: parameters ended, "
            "its result will be discarded"
        )
        self._spawn_publish(f"{server_inbox}.params", b"")

    def _spawn_publish(self, subject: str, data: bytes) -> None:
        async def publish() -> None:
            try:
                await self._nc.publish(subject, data)
            except Exception as exc:  # connection gone: nobody waits on this stream any more
                log.debug("could not publish to %s: %s", subject, exc)

        task = asyncio.get_running_loop().create_task(publish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- serving ------------------------------------------------------------------------

    async def serve(
        self,
        prefix: str,
        instance: str,
        function: str,
        decode_params: ParamsDecoder,
        handler: Handler,
    ) -> Subscription:
        """Queue-subscribe an export; each invocation runs `handler` in its own task.

        `handler(ctx, params)` returns the encoded result tuple; raising makes the call fail
        at transport level (only the empty end-of-stream is sent), so a handler should return
        WIT-level errors as values.
        """
        subject = invocation_subject(prefix, instance, function)

        async def on_invocation(msg: Msg) -> None:
            task = asyncio.get_running_loop().create_task(
                self._serve_one(subject, msg, decode_params, handler)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        sub = await self._nc.subscribe(
            subject,
            queue=prefix,
            cb=on_invocation,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        self._subs.append(sub)
        return sub

    async def _serve_one(
        self, subject: str, msg: Msg, decode_params: ParamsDecoder, handler: Handler
    ) -> None:
        client_inbox = msg.reply
        if not client_inbox:
            log.warning("dropping wRPC invocation without reply subject on %s", subject)
            return
        results_subject = f"{client_inbox}.results"
        self._open_results.add(results_subject)
        try:
            result = await self._run_served(subject, msg, client_inbox, decode_params, handler)
            if result is not None and results_subject in self._open_results:
                self._open_results.discard(results_subject)
                await self._send_stream(results_subject, result)
        finally:
            if results_subject in self._open_results:
                # Whatever stopped the call (bad parameters, the handler raising or being
                # cancelled), the caller learns at once that no result comes.
                self._open_results.discard(results_subject)
                self._spawn_publish(results_subject, b"")

    async def _run_served(
        self,
        subject: str,
        msg: Msg,
        client_inbox: str,
        decode_params: ParamsDecoder,
        handler: Handler,
    ) -> bytes | None:
        """Handshake, parameters, handler: the encoded result, or None when the call failed
        (logged; the caller then sends only the end of the result stream)."""
        headers = dict(msg.headers or {})
        ctx = InvocationContext(
            source_id=headers.get("source-id", "<unknown>"),
            link_name=headers.get("link-name") or "default",
            headers=headers,
        )
        params: Any = None
        complete = False
        try:
            params = decode_params(msg.data)
            complete = True
        except NeedMoreBytes:
            pass
        except CodecError as exc:
            log.warning("undecodable parameters for %s from %s: %s", subject, ctx.source_id, exc)
            await self._handshake(client_inbox, f"{self._quiet_prefix}.{next(self._ids)}")
            return None

        try:
            if complete:
                await self._handshake(client_inbox, f"{self._quiet_prefix}.{next(self._ids)}")
            else:
                params = await self._receive_params(client_inbox, msg.data, decode_params)
        except (TransportError, CodecError) as exc:
            log.warning(
                "failed to receive parameters for %s from %s: %s", subject, ctx.source_id, exc
            )
            return None

        with self._server_span(subject, ctx) as trace_headers:
            token = current_trace_headers.set(trace_headers or None)
            try:
                return await handler(ctx, params)
            except Exception:
                log.exception("handler for %s failed (caller %s)", subject, ctx.source_id)
                return None
            finally:
                current_trace_headers.reset(token)

    @contextlib.contextmanager
    def _server_span(self, subject: str, ctx: InvocationContext) -> Iterator[dict[str, str]]:
        """A SERVER span (child of the caller's traceparent) when tracing is on; yields the
        trace headers to pass on to calls made while serving (the span's own context, or,
        without tracing, the caller's headers unchanged)."""
        if self.tracer is None:
            yield ctx.trace_headers
            return
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagator = TraceContextTextMapPropagator()
        parent = propagator.extract(carrier=dict(ctx.headers))
        with self.tracer.start_as_current_span(
            _span_name(subject),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "wasmcloud.source_id": ctx.source_id,
                "wasmcloud.link_name": ctx.link_name,
                "messaging.system": "wrpc",
            },
        ):
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
            yield carrier

    @contextlib.contextmanager
    def _client_span(self, subject: str, headers: dict[str, str]) -> Iterator[None]:
        """A CLIENT span around an invocation; its context replaces the trace headers."""
        if self.tracer is None:
            yield
            return
        from opentelemetry import context as otel_context
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagator = TraceContextTextMapPropagator()
        parent = propagator.extract(carrier=dict(current_trace_headers.get() or {}))
        with self.tracer.start_as_current_span(
            _span_name(subject),
            context=parent or otel_context.get_current(),
            kind=SpanKind.CLIENT,
            attributes={"messaging.system": "wrpc"},
        ) as span:
            propagator.inject(headers, context=set_span_in_context(span))
            yield

    async def _handshake(self, client_inbox: str, server_inbox: str) -> None:
        await self._nc.publish(client_inbox, b"", reply=server_inbox)

    async def _receive_params(self, client_inbox: str, first: bytes, decode: ParamsDecoder) -> Any:
        key = f"s{next(self._ids)}"
        inbox = _Inbox()
        self._inboxes[key] = inbox
        try:
            await self._handshake(client_inbox, f"{self._inbox_prefix}.{key}")
            buf = bytearray(first)
            while True:
                chunk = await inbox.get(self.params_timeout)
                if chunk is None:
                    raise InvocationTimeout("timed out waiting for parameter bytes")
                if not chunk.data:
                    # End of stream: the value must be complete now.
                    try:
                        return decode(bytes(buf))
                    except NeedMoreBytes:
                        raise TransportError("parameter stream ended inside a value") from None
                buf += chunk.data
                if len(buf) > self.max_stream_bytes:
                    raise TransportError(
                        f"parameters exceed {self.max_stream_bytes} bytes: refused"
                    )
                try:
                    return decode(bytes(buf))
                except NeedMoreBytes:
                    continue
        finally:
            del self._inboxes[key]

    async def _send_stream(self, subject: str, data: bytes) -> None:
        limit = self._nc.max_payload
        for start in range(0, len(data), limit):
            await self._nc.publish(subject, data[start : start + limit])
        await self._nc.publish(subject, b"")

    # --- invoking -----------------------------------------------------------------------

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
        with self._client_span(subject, all_headers):
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
        inbox = _Inbox()
        self._inboxes[key] = inbox
        try:
            try:
                await self._nc.publish(subject, chunks[0], reply=reply, headers=hdrs)
                server_inbox = await self._await_handshake(
                    inbox, subject, handshake_timeout or self.handshake_timeout
                )
            except NotServedError:
                raise
            except BaseException:
                # Timed out, cancelled, or the connection dropped: the handshake may already be
                # queued (it arrived in the same loop iteration), or may still come.
                if not self._end_queued_handshake(inbox, reply):
                    self._abandon(key)
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

    async def _await_handshake(self, inbox: _Inbox, subject: str, timeout: float) -> str:
        msg = await inbox.get(timeout)
        if msg is None:
            raise InvocationTimeout(f"no handshake from {subject} within {timeout:g}s")
        status = (msg.headers or {}).get(STATUS_HEADER)
        if status == "503":
            raise NotServedError(f"nobody serves {subject} (no responders)")
        if status is not None and status != "200":
            raise TransportError(f"NATS status {status} for {subject}")
        if msg.subject.endswith(".results"):
            raise TransportError(f"{subject} sent results before its handshake")
        if not msg.reply:
            raise TransportError(f"handshake from {subject} has no reply subject")
        return msg.reply

    async def _collect_results(
        self, inbox: _Inbox, subject: str, decode: Callable[[bytes], Any], timeout: float
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

    # --- life cycle ---------------------------------------------------------------------

    async def stop_serving(self) -> None:
        """Unsubscribe every export (in-flight invocations continue)."""
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # connection already closed: nothing to undo
                log.debug("unsubscribe failed: %s", exc)

    async def end_served_calls(self) -> int:
        """End the result stream of every call still being served (shutdown: the callers
        learn now that no result comes, instead of at their own timeout). Returns how many."""
        subjects, self._open_results = self._open_results, set()
        for subject in subjects:
            with contextlib.suppress(Exception):
                await self._nc.publish(subject, b"")
        return len(subjects)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for in-flight invocations to finish."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
