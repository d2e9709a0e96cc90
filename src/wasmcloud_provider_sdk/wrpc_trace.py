"""Trace context for wRPC calls: pass-through of W3C headers, and spans when tracing is on.

OpenTelemetry is imported only when a tracer is given (the host enabled traces).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

from .wrpc_wire import InvocationContext, span_name

#: Trace headers of the invocation being served, passed on to calls it makes.
current_trace_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "current_trace_headers", default=None
)


@contextlib.contextmanager
def server_span(tracer: Any, subject: str, ctx: InvocationContext) -> Iterator[dict[str, str]]:
    """A SERVER span (child of the caller's traceparent) when `tracer` is set; yields the
    trace headers to pass on to calls made while serving (the span's own context, or,
    without tracing, the caller's headers unchanged)."""
    if tracer is None:
        yield ctx.trace_headers
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    parent = propagator.extract(carrier=dict(ctx.headers))
    with tracer.start_as_current_span(
        span_name(subject),
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
def client_span(tracer: Any, subject: str, headers: dict[str, str]) -> Iterator[None]:
    """A CLIENT span around an invocation when `tracer` is set; its context replaces the
    trace headers in `headers`."""
    if tracer is None:
        yield
        return
    from opentelemetry import context as otel_context
    from opentelemetry.trace import SpanKind, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    parent = propagator.extract(carrier=dict(current_trace_headers.get() or {}))
    with tracer.start_as_current_span(
        span_name(subject),
        context=parent or otel_context.get_current(),
        kind=SpanKind.CLIENT,
        attributes={"messaging.system": "wrpc"},
    ) as span:
        propagator.inject(headers, context=set_span_in_context(span))
        yield
