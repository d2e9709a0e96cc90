"""Serving wRPC exports: handshake, the parameter stream, the handler, the result stream.

docs/PROTOCOL.md, section 4. Each invocation runs in its own task, never in the NATS
callback. A served call always ends with its results or, whatever happened (bad parameters,
a failing or cancelled handler, shutdown), the empty end of the result stream: no path
leaves the caller waiting on us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import CodecError, InvocationTimeout, NeedMoreBytes, TransportError
from .wrpc_handover import Invocation, PendingHandovers, handed_over, handover_headers
from .wrpc_inbox import Inbox, InboxRouter
from .wrpc_trace import current_trace_headers, server_span
from .wrpc_wire import (
    DEFAULT_PARAMS_TIMEOUT,
    Handler,
    InvocationContext,
    ParamsDecoder,
    invocation_subject,
)

log = logging.getLogger(__name__)

#: Where an invocation belongs: None to serve it here, or the subject of the instance to
#: hand it over to (`wrpc_handover`). Called with the invocation's context and its decoded
#: parameters, for invocations whose parameters came whole in the first message.
Route = Callable[[InvocationContext, Any], str | None]
#: What `_run_served` returns for an invocation handed over: nothing more to send here.
_HANDED_OVER = b"handed over"


class ExportServer(InboxRouter):
    """Serves wRPC exports over one nats-py connection (the serving half of `WrpcTransport`)."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        params_timeout: float = DEFAULT_PARAMS_TIMEOUT,
        **rest: Any,
    ) -> None:
        super().__init__(nc, **rest)
        self._quiet_prefix = nc.new_inbox()  # never subscribed: Rs when params are complete
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()  # invocations being served
        self._open_results: set[str] = set()  # result streams of served calls not yet ended
        self.params_timeout = params_timeout
        #: Served exports by subject, for invocations handed over by another instance.
        self._exports: dict[str, tuple[ParamsDecoder, Handler]] = {}
        self._handovers = PendingHandovers()

    @property
    def in_flight(self) -> int:
        """Invocations currently being served."""
        return len(self._tasks)

    async def serve(
        self,
        prefix: str,
        instance: str,
        function: str,
        decode_params: ParamsDecoder,
        handler: Handler,
        route: Route | None = None,
    ) -> Subscription:
        """Queue-subscribe an export; each invocation runs `handler` in its own task.

        `handler(ctx, params)` returns the encoded result tuple; raising makes the call fail
        at transport level (only the empty end-of-stream is sent), so a handler should return
        WIT-level errors as values. `route(ctx, params)` may name another instance to hand
        the invocation over to instead (`Route`, `wrpc_handover`).
        """
        subject = invocation_subject(prefix, instance, function)
        self._exports[subject] = (decode_params, handler)

        async def on_invocation(msg: Msg) -> None:
            invocation = Invocation(subject, msg.data, msg.headers, msg.reply)
            task = asyncio.get_running_loop().create_task(
                self._serve_one(invocation, decode_params, handler, route)
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

    def take_handover(self, data: bytes, headers: dict[str, str], reply: str) -> None:
        """Serve an invocation another instance handed over (a message whose headers
        `wrpc_handover.is_handover`), as if its caller had sent it here. An export not
        served here (yet) is refused: the other instance then serves it itself."""
        invocation = handed_over(data, headers)
        export = self._exports.get(invocation.subject)
        if export is None:
            if reply:
                self._spawn_publish(reply, b"")
            return
        self._spawn_serve(invocation, export)

    def _handover_refused(self, key: str) -> None:
        entry = self._handovers.take(key)
        if entry is not None:  # nobody took it (no responders, or refused): serve it here
            self._spawn_serve(*entry)

    def _spawn_serve(self, invocation: Invocation, export: tuple[ParamsDecoder, Handler]) -> None:
        task = asyncio.get_running_loop().create_task(self._serve_one(invocation, *export, None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(
        self, target: str, invocation: Invocation, export: tuple[ParamsDecoder, Handler]
    ) -> bool:
        """Publish the handover of `invocation` to `target`; False when it cannot be sent."""
        key = f"h{next(self._ids)}"
        self._handovers.add(key, (invocation, export), asyncio.get_running_loop().time())
        try:
            await self._nc.publish(
                target,
                invocation.data,
                reply=f"{self._inbox_prefix}.{key}",
                headers=handover_headers(invocation),
            )
        except Exception as exc:  # too large with the markers, or disconnected
            log.debug("handover to %s not sent: %s", target, exc)
            self._handovers.take(key)
            return False
        return True

    async def _serve_one(
        self,
        invocation: Invocation,
        decode_params: ParamsDecoder,
        handler: Handler,
        route: Route | None,
    ) -> None:
        client_inbox = invocation.reply
        if not client_inbox:
            log.warning("dropping wRPC invocation without reply subject on %s", invocation.subject)
            return
        results_subject = f"{client_inbox}.results"
        self._open_results.add(results_subject)
        try:
            result = await self._run_served(invocation, decode_params, handler, route)
            if result is _HANDED_OVER:
                self._open_results.discard(results_subject)  # the other instance answers
            elif result is not None and results_subject in self._open_results:
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
        invocation: Invocation,
        decode_params: ParamsDecoder,
        handler: Handler,
        route: Route | None,
    ) -> bytes | None:
        """Handshake, parameters, handler: the encoded result, or None when the call failed
        (logged; the caller then sends only the end of the result stream), or `_HANDED_OVER`
        when `route` sent it to another instance."""
        subject, client_inbox = invocation.subject, invocation.reply
        headers = dict(invocation.headers or {})
        ctx = InvocationContext(
            source_id=headers.get("source-id", "<unknown>"),
            link_name=headers.get("link-name") or "default",
            headers=headers,
        )
        params: Any = None
        complete = False
        try:
            params = decode_params(invocation.data)
            complete = True
        except NeedMoreBytes:
            pass
        except CodecError as exc:
            log.warning("undecodable parameters for %s from %s: %s", subject, ctx.source_id, exc)
            await self._handshake(client_inbox, f"{self._quiet_prefix}.{next(self._ids)}")
            return None

        if complete and route is not None:
            target = route(ctx, params)
            if target is not None and await self._hand_over(
                target, invocation, (decode_params, handler)
            ):
                return _HANDED_OVER
        try:
            if complete:
                await self._handshake(client_inbox, f"{self._quiet_prefix}.{next(self._ids)}")
            else:
                params = await self._receive_params(client_inbox, invocation.data, decode_params)
        except (TransportError, CodecError) as exc:
            log.warning(
                "failed to receive parameters for %s from %s: %s", subject, ctx.source_id, exc
            )
            return None

        with server_span(self.tracer, subject, ctx) as trace_headers:
            token = current_trace_headers.set(trace_headers or None)
            try:
                return await handler(ctx, params)
            except Exception:
                log.exception("handler for %s failed (caller %s)", subject, ctx.source_id)
                return None
            finally:
                current_trace_headers.reset(token)

    async def _handshake(self, client_inbox: str, server_inbox: str) -> None:
        await self._nc.publish(client_inbox, b"", reply=server_inbox)

    async def _receive_params(self, client_inbox: str, first: bytes, decode: ParamsDecoder) -> Any:
        key = f"s{next(self._ids)}"
        inbox = Inbox()
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
