"""OpenTelemetry export per the host's `otel_config` (docs/PROTOCOL.md 2.2).

Traces and metrics go over OTLP/HTTP to the endpoints the host configured (gRPC is not
supported: a `Grpc` config falls back to the HTTP defaults with a warning). The SDK is
imported only when the host turns observability on, and a failure to set it up disables
telemetry with a log line instead of stopping the provider.

Endpoint resolution: a signal-specific endpoint wins; else `observability_endpoint` (plus
`/v1/<signal>` when it has no path); else `http://127.0.0.1:4318/v1/<signal>`. Provider config
keys (case-insensitive) override them: `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`; and
`OTEL_BSP_SCHEDULE_DELAY` / `OTEL_METRIC_EXPORT_INTERVAL` (ms) tune how often they export.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .hostdata import HostData

log = logging.getLogger(__name__)

DEFAULT_HTTP = "http://127.0.0.1:4318"


def _signal_endpoint(base: str, signal: str) -> str:
    return base if urlsplit(base).path not in ("", "/") else base.rstrip("/") + f"/v1/{signal}"


def resolve_endpoint(host_data: HostData, config: Mapping[str, str], signal: str) -> str:
    """The OTLP/HTTP endpoint for `signal` ("traces" or "metrics")."""
    upper = {k.upper(): v for k, v in config.items()}
    specific = upper.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    general = upper.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if general:
        return _signal_endpoint(general, signal)
    otel = host_data.otel_config
    configured = otel.traces_endpoint if signal == "traces" else otel.metrics_endpoint
    if configured:
        return configured
    if otel.observability_endpoint:
        return _signal_endpoint(otel.observability_endpoint, signal)
    return f"{DEFAULT_HTTP}/v1/{signal}"


def _int(config: Mapping[str, str], key: str, default: int) -> int:
    upper = {k.upper(): v for k, v in config.items()}
    try:
        return max(1, int(upper.get(key, default)))
    except ValueError:
        return default


@dataclass
class Telemetry:
    """The tracer and meter this provider uses (None where that signal is off)."""

    tracer: Any = None
    meter: Any = None
    _providers: tuple[Any, ...] = ()

    def shutdown(self, timeout_ms: int = 100) -> None:
        """Flush what is pending (bounded: shutdown has ~300 ms in all) and stop."""
        for provider in self._providers:
            try:
                provider.force_flush(timeout_ms)
                provider.shutdown()
            except Exception as exc:  # telemetry must never break a shutdown
                log.debug("telemetry shutdown: %s", exc)


def setup_telemetry(host_data: HostData, config: Mapping[str, str]) -> Telemetry:
    """Traces and metrics as `otel_config` asks; an empty `Telemetry` when off or failing."""
    otel = host_data.otel_config
    on = otel.enable_observability
    traces = otel.enable_traces if otel.enable_traces is not None else on
    metrics = otel.enable_metrics if otel.enable_metrics is not None else on
    if not (traces or metrics):
        return Telemetry()
    if otel.protocol != "http":
        log.warning(
            "otel_config protocol %r is not supported: exporting over OTLP/HTTP", otel.protocol
        )
    try:
        return _setup(host_data, config, bool(traces), bool(metrics))
    except Exception as exc:
        log.error("telemetry disabled: could not set up OpenTelemetry: %s", exc)
        return Telemetry()


def _setup(
    host_data: HostData, config: Mapping[str, str], traces: bool, metrics: bool
) -> Telemetry:
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create(
        {
            "service.name": host_data.provider_key or "wasmcloud-provider",
            "service.instance.id": host_data.instance_id,
            "host.id": host_data.host_id,
        }
    )
    telemetry = Telemetry()
    providers: list[Any] = []
    if traces:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=resolve_endpoint(host_data, config, "traces"))
        tracer_provider.add_span_processor(
            BatchSpanProcessor(
                exporter, schedule_delay_millis=_int(config, "OTEL_BSP_SCHEDULE_DELAY", 5000)
            )
        )
        telemetry.tracer = tracer_provider.get_tracer("wasmcloud_provider_sdk")
        providers.append(tracer_provider)
    if metrics:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=resolve_endpoint(host_data, config, "metrics")),
            export_interval_millis=_int(config, "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        telemetry.meter = meter_provider.get_meter("wasmcloud_provider_sdk")
        providers.append(meter_provider)
    telemetry._providers = tuple(providers)
    log.info("OpenTelemetry export on: traces=%s metrics=%s", traces, metrics)
    return telemetry
