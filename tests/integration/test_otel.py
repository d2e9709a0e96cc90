"""OpenTelemetry export per the host's otel_config: spans for served and made wRPC calls, the
trace parent carried across the wRPC hop, and metrics, all received by a real OTLP/HTTP
endpoint in the test (protobuf decoded with opentelemetry-proto)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from provider.natsserver import free_port
from tests.components import TestComponent
from tests.harness import WS_PROVIDER, FakeHost
from tests.wsclient import Client
from wasmcloud_provider_sdk import Ok

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Collector:
    """A minimal OTLP/HTTP receiver: keeps every request body by path."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split()[1]
                length = next(
                    int(v)
                    for k, _, v in (line.partition(":") for line in lines[1:])
                    if k.lower() == "content-length"
                )
                body = await reader.readexactly(length)
                await self.requests.put((path, body))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def span(self, match: Callable[[Any], bool], timeout: float = 20) -> Any:
        """The first exported span for which `match` is true."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            path, body = await asyncio.wait_for(self.requests.get(), deadline - loop.time())
            if path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        if match(span):
                            return span

    async def metric_names(self, timeout: float = 20) -> set[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            path, body = await asyncio.wait_for(self.requests.get(), deadline - loop.time())
            if path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                return {
                    m.name
                    for rm in request.resource_metrics
                    for sm in rm.scope_metrics
                    for m in sm.metrics
                }


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    c = Collector()
    await c.start()
    yield c
    await c.stop()


async def test_spans_metrics_and_trace_parent_across_the_wrpc_hop(
    host: FakeHost, collector: Collector
) -> None:
    comp = await TestComponent(host, "comp1").serve()
    ws_port = free_port()
    base = f"http://127.0.0.1:{collector.port}"
    await host.start_provider(
        WS_PROVIDER,
        link_definitions=[
            host.consumer_link("comp1"),
            host.handler_link(
                "comp1", source_config={"MODE": "server", "URI": f"127.0.0.1:{ws_port}"}
            ),
        ],
        config={"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "300"},
        otel_config={
            "enable_observability": True,
            "protocol": "Http",
            "traces_endpoint": f"{base}/v1/traces",
            "metrics_endpoint": f"{base}/v1/metrics",
            "additional_ca_paths": [],
            "trace_level": "info",
        },
    )
    await host.wait_healthy()
    # A component call with a trace parent: the provider's SERVER span is its child.
    client = await Client.open(f"ws://127.0.0.1:{ws_port}/ws")
    from tests.components import ConsumerCaller
    from wasmcloud_provider_sdk import BrokerMessage

    caller = ConsumerCaller(host, "comp1")
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    assert (
        await caller.publish(
            BrokerMessage(client.session_id, b"hi"), extra={"traceparent": traceparent}
        )
        == Ok()
    )
    publish = await collector.span(lambda s: s.name == "wasmcloud:messaging/consumer@0.2.0.publish")
    assert publish.trace_id.hex() == TRACE_ID
    assert publish.parent_span_id.hex() == PARENT_ID
    # An inbound WebSocket message: a CLIENT span for handle-message, whose context is what
    # the component receives as its traceparent.
    await client.message("chat", "hello")
    ctx, msg = await asyncio.wait_for(comp.calls.get(), 10)
    while msg.subject != "chat":
        ctx, msg = await asyncio.wait_for(comp.calls.get(), 10)
    _, trace_id, span_id, _flags = ctx.headers["traceparent"].split("-")
    call = await collector.span(lambda s: s.span_id.hex() == span_id)
    assert call.name == "wasmcloud:messaging/handler@0.2.0.handle-message"
    assert call.trace_id.hex() == trace_id
    names = await collector.metric_names()
    assert {"wsp.connections", "wsp.messages_in", "wsp.sessions_open"} <= names
