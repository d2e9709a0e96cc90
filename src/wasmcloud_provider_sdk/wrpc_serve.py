"""Serving wRPC exports: handshake, the parameter stream, the handler, the result stream.

docs/PROTOCOL.md, section 4. An invocation whose parameters came whole in its first
message (the usual case) is served inside the NATS callback: handshake, handler, results.
A handler returns the encoded result tuple, or an awaitable of it when it has to wait; only
then does the call get a task. A handler that waits for something callback-driven returns
a `Later` (or a `Deferred`: a result known now, sent once its gate is set) instead: the
result goes out from inside the callback that sets it, no task.
Parameters that span several messages are collected by a
`ParamsStream` entry of the inbox, under the shared deadline sweep.

A served call always ends with its results or, whatever happened (bad parameters, a failing
or cancelled handler, shutdown), the empty end of the result stream: no path leaves the
caller waiting on us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from .errors import CodecError, NeedMoreBytes, TransportError
from .later import Deferred, Later
from .wire import Wire, WireMsg
from .wrpc_handover import (
    EXPORT_HEADER,
    Invocation,
    PendingHandovers,
    handed_over_msg,
    handover_headers,
)
from .wrpc_inbox import InboxRouter, Waiting, clock
from .wrpc_trace import current_trace_headers, server_span
from .wrpc_wire import (
    DEFAULT_PARAMS_TIMEOUT,
    TRACE_HEADERS,
    Handler,
    InvocationContext,
    ParamsDecoder,
    invocation_subject,
)

log = logging.getLogger(__name__)

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
#: Invocation contexts kept (one per distinct header block a host sends; cleared when full).
_CONTEXTS = 64

#: Where an invocation belongs: None to serve it here, or the subject of the instance to
#: hand it over to (`wrpc_handover`). Called with the invocation's context and the bytes of
#: its first parameter message, before anything is decoded: a call handed over is never
#: decoded here, so a route reads only what it needs (e.g. `codec.leading_string`).
Route = Callable[[InvocationContext, bytes], str | None]


class Export:
    """One served function: its subject, parameter decoder, handler and route."""

    __slots__ = ("decode", "handler", "route", "subject")

    def __init__(
        self, subject: str, decode: ParamsDecoder, handler: Handler, route: Route | None = None
    ) -> None:
        self.subject = subject
        self.decode = decode
        self.handler = handler
        self.route = route


class ParamsStream(Waiting):
    """The rest of a served call's parameters, arriving on our inbox."""

    __slots__ = ("buf", "ctx", "export", "results", "server")

    def __init__(
        self,
        server: ExportServer,
        key: str,
        deadline: float,
        export: Export,
        ctx: InvocationContext,
        first: bytes,
        results: str,
    ) -> None:
        super().__init__(key, deadline)
        self.server = server
        self.export = export
        self.ctx = ctx
        self.buf = first
        self.results = results

    def received(self, msg: WireMsg) -> None:
        server = self.server
        data = msg.data
        if not data:
            server.done(self)
            try:
                params = self.export.decode(self.buf)
            except CodecError:
                self._failed("parameter stream ended inside a value")
                return
            server.run_handler(self.export, self.ctx, params, self.results)
            return
        # `params_timeout` is the wait for each chunk, not for the whole stream.
        self.deadline = clock() + server.params_timeout
        buf = self.buf + data
        if len(buf) > server.max_stream_bytes:
            server.done(self)
            self._failed(f"parameters exceed {server.max_stream_bytes} bytes: refused")
            return
        try:
            params = self.export.decode(buf)
        except NeedMoreBytes:
            self.buf = buf
            return
        except CodecError as exc:
            server.done(self)
            self._failed(str(exc))
            return
        server.done(self)
        server.run_handler(self.export, self.ctx, params, self.results)

    def _failed(self, why: str) -> None:
        log.warning(
            "failed to receive parameters for %s from %s: %s",
            self.export.subject,
            self.ctx.source_id,
            why,
        )
        self.server.publish_quietly(self.results, b"")

    def expired(self) -> None:
        self._failed("timed out waiting for parameter bytes")

    def lost(self, error: TransportError) -> None:
        log.debug("parameters for %s lost: %s", self.export.subject, error)


class ExportServer(InboxRouter):
    """Serves wRPC exports over one NATS connection (the serving half of `WrpcTransport`)."""

    def __init__(
        self,
        wire: Wire,
        *,
        params_timeout: float = DEFAULT_PARAMS_TIMEOUT,
        **rest: Any,
    ) -> None:
        super().__init__(wire, **rest)
        self._quiet_prefix = wire.new_inbox()  # never subscribed: Rs when params are complete
        self._sids: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()  # handlers that had to wait
        #: Calls answered by a `Later` not set yet (and set while there are none).
        self._laters = 0
        self._laters_idle = asyncio.Event()
        self._laters_idle.set()
        self._open_results: set[str] = set()  # result streams of those calls not yet ended
        #: Contexts by the id of the (parser-kept, read-only) headers they were made from.
        self._contexts: dict[int, InvocationContext] = {}
        self.params_timeout = params_timeout
        #: Served exports by subject, for invocations handed over by another instance.
        self._exports: dict[str, Export] = {}
        self._handovers = PendingHandovers()

    @property
    def in_flight(self) -> int:
        """Invocations currently being served (handlers waiting)."""
        return len(self._tasks) + self._laters

    async def serve(
        self,
        prefix: str,
        instance: str,
        function: str,
        decode_params: ParamsDecoder,
        handler: Handler,
        route: Route | None = None,
    ) -> int:
        """Queue-subscribe an export (group = `prefix`); returns the subscription id.

        `handler(ctx, params)` returns the encoded result tuple, a `Later` of it (sent
        when set), a `Deferred` of it (sent when its gate is set), or an awaitable of it
        (awaited in a task);
        raising makes the call fail at transport level (only the empty end-of-stream is
        sent), so a handler should return WIT-level errors as values. `route(ctx, data)`,
        given the raw first parameter message before any decoding, may name another
        instance to hand the invocation over to instead (`Route`, `wrpc_handover`).
        """
        subject = invocation_subject(prefix, instance, function)
        export = Export(subject, decode_params, handler, route)
        self._exports[subject] = export

        def on_invocation(msg: WireMsg) -> None:
            self.invocation(export, msg)

        sid = self._wire.subscribe(export.subject, on_invocation, prefix)
        self._sids.append(sid)
        await self._wire.flush()
        return sid

    def invocation(self, export: Export, msg: WireMsg, may_route: bool = True) -> None:
        """Serve one invocation of `export` (called from the NATS callback); with
        `may_route`, it may be handed over to the instance `export.route` names (decided
        before its parameters are decoded)."""
        client_inbox = msg.reply
        if not client_inbox:
            log.warning("dropping wRPC invocation without reply subject on %s", export.subject)
            return
        headers = msg.headers or _NO_HEADERS
        # The parser hands out one mapping per distinct header block: one context for it.
        known = self._contexts.get(id(headers))
        if known is not None and known.headers is headers:
            ctx = known
        else:
            ctx = InvocationContext(
                headers.get("source-id", "<unknown>"),
                headers.get("link-name") or "default",
                headers,
            )
            if type(headers) is MappingProxyType:  # kept by the parser: worth keeping too
                if len(self._contexts) >= _CONTEXTS:
                    self._contexts.clear()
                self._contexts[id(headers)] = ctx
        if may_route and export.route is not None:
            try:
                target = export.route(ctx, msg.data)
            except Exception:
                log.exception("routing %s failed: served here", export.subject)
                target = None
            if target is not None and self._hand_over(target, export, msg):
                return
        results = f"{client_inbox}.results"
        wire = self._wire
        try:
            try:
                params = export.decode(msg.data)
            except NeedMoreBytes:
                key = f"s{next(self._ids)}"
                deadline = clock() + self.params_timeout
                self.wait(ParamsStream(self, key, deadline, export, ctx, msg.data, results))
                wire.publish(client_inbox, b"", f"{self._inbox_prefix}.{key}")
                return
            except Exception as exc:  # CodecError, or a decoder's own failure
                log.warning(
                    "undecodable parameters for %s from %s: %s", export.subject, ctx.source_id, exc
                )
                wire.publish(client_inbox, b"", f"{self._quiet_prefix}.{next(self._ids)}")
                wire.publish(results, b"")
                return
            wire.publish(client_inbox, b"", f"{self._quiet_prefix}.{next(self._ids)}")
        except TransportError as exc:  # the connection is gone: the caller learns from NATS
            log.debug("could not answer %s: %s", export.subject, exc)
            return
        self.run_handler(export, ctx, params, results)

    def _hand_over(self, target: str, export: Export, msg: WireMsg) -> bool:
        """Publish the handover of `msg` to `target`; False when it cannot be sent."""
        key = f"h{next(self._ids)}"
        invocation = Invocation(export.subject, msg.data, msg.headers, msg.reply)
        self._handovers.add(key, (invocation, export), clock())
        try:
            self._wire.publish(
                target, msg.data, f"{self._inbox_prefix}.{key}", handover_headers(invocation)
            )
        except Exception as exc:  # too large with the markers, or disconnected
            log.debug("handover to %s not sent: %s", target, exc)
            self._handovers.take(key)
            return False
        return True

    def take_handover(self, data: bytes, headers: Mapping[str, str], reply: str) -> None:
        """Serve an invocation another instance handed over (a message whose headers
        `wrpc_handover.is_handover`), as if its caller had sent it here (and as cheaply: the
        invocation is rebuilt once, never routed again). An export not served here (yet) is
        refused: the other instance then serves it itself."""
        export = self._exports.get(headers[EXPORT_HEADER])
        if export is None:
            if reply:
                self.publish_quietly(reply, b"")
            return
        self.invocation(export, handed_over_msg(data, headers), may_route=False)

    def _handover_refused(self, key: str) -> None:
        entry = self._handovers.take(key)
        if entry is not None:  # nobody took it (no responders, or refused): serve it here
            self._serve_here(*entry)

    def _serve_here(self, invocation: Invocation, export: Export) -> None:
        headers = dict(invocation.headers) if invocation.headers is not None else None
        msg = WireMsg(invocation.subject, invocation.reply, headers, invocation.data)
        self.invocation(export, msg, may_route=False)

    def run_handler(
        self, export: Export, ctx: InvocationContext, params: Any, results: str
    ) -> None:
        """Run the handler; its result (now, or when its awaitable completes) goes to
        `results`."""
        if self.tracer is not None:
            self._spawn(self._traced(export, ctx, params, results), results)
            return
        headers = ctx.headers
        trace = None
        if TRACE_HEADERS[0] in headers or TRACE_HEADERS[1] in headers:
            trace = ctx.trace_headers
        token = current_trace_headers.set(trace)
        try:
            result = export.handler(ctx, params)
            if not isinstance(result, bytes):
                if isinstance(result, (Later, Deferred)):
                    # Answered from the callback that sets it: no task.
                    self._open_results.add(results)
                    self._laters += 1
                    self._laters_idle.clear()
                    if type(result) is Deferred:  # the value is known: wait for the gate only
                        result.gate.then(partial(self._gate_set, results, result.value))
                    else:
                        result.then(partial(self._later_set, results))
                    return
                # The task inherits the trace headers set above.
                self._spawn(self._awaited(export, ctx, result, results), results)
                return
        except Exception:
            log.exception("handler for %s failed (caller %s)", export.subject, ctx.source_id)
            self.publish_quietly(results, b"")
            return
        finally:
            current_trace_headers.reset(token)
        self._send_results(results, result)

    def _spawn(self, coro: Any, results: str) -> None:
        self._open_results.add(results)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later_set(self, results: str, result: bytes) -> None:
        self._laters -= 1
        if not self._laters:
            self._laters_idle.set()
        self._end(results, result)

    def _gate_set(self, results: str, result: bytes, _gate_value: object) -> None:
        self._later_set(results, result)

    async def _awaited(
        self, export: Export, ctx: InvocationContext, pending: Awaitable[bytes], results: str
    ) -> None:
        result: bytes | None = None
        try:
            result = await pending
        except Exception:
            log.exception("handler for %s failed (caller %s)", export.subject, ctx.source_id)
        finally:
            self._end(results, result)

    async def _traced(
        self, export: Export, ctx: InvocationContext, params: Any, results: str
    ) -> None:
        result: bytes | None = None
        try:
            with server_span(self.tracer, export.subject, ctx) as trace_headers:
                token = current_trace_headers.set(trace_headers or None)
                try:
                    answer = export.handler(ctx, params)
                    if isinstance(answer, bytes):
                        result = answer
                    elif isinstance(answer, (Later, Deferred)):
                        result = await answer.wait()
                    else:
                        result = await answer
                except Exception:
                    log.exception(
                        "handler for %s failed (caller %s)", export.subject, ctx.source_id
                    )
                finally:
                    current_trace_headers.reset(token)
        finally:
            self._end(results, result)

    def _end(self, results: str, result: bytes | None) -> None:
        """Send `result` (or only the end of the stream) unless shutdown already ended it."""
        if results not in self._open_results:
            return
        self._open_results.discard(results)
        if result is None:
            self.publish_quietly(results, b"")
        else:
            self._send_results(results, result)

    def _send_results(self, subject: str, data: bytes) -> None:
        wire = self._wire
        try:
            limit = wire.max_payload
            if len(data) <= limit:
                wire.publish(subject, data)
            else:
                for start in range(0, len(data), limit):
                    wire.publish(subject, data[start : start + limit])
            wire.publish(subject, b"")
        except Exception as exc:  # connection gone: the caller learns from NATS
            log.debug("could not send results to %s: %s", subject, exc)

    async def stop_serving(self) -> None:
        """Unsubscribe every export (in-flight invocations continue)."""
        sids, self._sids = self._sids, []
        for sid in sids:
            try:
                self._wire.unsubscribe(sid)
            except Exception as exc:  # connection already closed: nothing to undo
                log.debug("unsubscribe failed: %s", exc)

    async def end_served_calls(self) -> int:
        """End the result stream of every call still being served (shutdown: the callers
        learn now that no result comes, instead of at their own timeout). Returns how many."""
        subjects, self._open_results = self._open_results, set()
        for subject in subjects:
            with contextlib.suppress(Exception):
                self._wire.publish(subject, b"")
        return len(subjects)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for in-flight invocations to finish."""
        waits: set[asyncio.Future[Any]] = set(self._tasks)
        idle = asyncio.ensure_future(self._laters_idle.wait()) if self._laters else None
        if idle is not None:
            waits.add(idle)
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        if idle is not None:
            idle.cancel()  # still waiting (timed out): not left pending
