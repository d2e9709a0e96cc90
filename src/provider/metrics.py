"""Counters, gauges and a latency histogram, rendered in the Prometheus text format. Sans-I/O.

Deliberately tiny (no dependency): the hub counts, `/metrics` on the listener renders
(`METRICS=true`). Label values are our own codes and numbers, never client-supplied text.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable
from typing import Any

#: Handler latency buckets, seconds (sub-millisecond to the default 30 s handler timeout).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Histogram:
    """Cumulative buckets, sum and count."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Everything `/metrics` shows; counters keyed by a label value where they have one."""

    def __init__(self) -> None:
        self.connects = 0
        self.disconnects: defaultdict[int, int] = defaultdict(int)  # by close code
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out_closed = 0  # bytes written to sessions that have ended
        self.bytes_out_live: Callable[[], int] = lambda: 0  # ... and to the open ones
        self.errors: defaultdict[str, int] = defaultdict(int)  # by error-frame code
        #: Failed `handle-message` calls (messages and session events), by failure code.
        self.delivery_failures: defaultdict[str, int] = defaultdict(int)
        self.rate_limited = 0
        self.refused_upgrades: defaultdict[int, int] = defaultdict(int)  # by HTTP status
        self.handler_latency = Histogram()
        #: Resume attempts by outcome: recovered, resumed (gap not covered), new (unknown
        #: or expired session: a new one started).
        self.resumes: defaultdict[str, int] = defaultdict(int)
        self.gauges: dict[str, Callable[[], float]] = {}

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("wsp_connections_total", "counter", "WebSocket sessions opened")
        out.append(f"wsp_connections_total {self.connects}")
        family("wsp_disconnections_total", "counter", "Sessions closed, by close code")
        for code, n in sorted(self.disconnects.items()):
            out.append(f'wsp_disconnections_total{{code="{code}"}} {n}')
        family("wsp_messages_in_total", "counter", "Frames received from clients")
        out.append(f"wsp_messages_in_total {self.messages_in}")
        family("wsp_bytes_in_total", "counter", "Bytes received from clients")
        out.append(f"wsp_bytes_in_total {self.bytes_in}")
        family("wsp_bytes_out_total", "counter", "Bytes written to clients")
        out.append(f"wsp_bytes_out_total {self.bytes_out_closed + self.bytes_out_live()}")
        family("wsp_messages_out_total", "counter", "Frames queued for clients")
        out.append(f"wsp_messages_out_total {self.messages_out}")
        family("wsp_errors_total", "counter", "Error frames sent, by code")
        for error_code, n in sorted(self.errors.items()):
            out.append(f'wsp_errors_total{{code="{error_code}"}} {n}')
        family(
            "wsp_delivery_failures_total",
            "counter",
            "Failed handle-message calls (session events included), by failure code",
        )
        for failure, n in sorted(self.delivery_failures.items()):
            out.append(f'wsp_delivery_failures_total{{code="{failure}"}} {n}')
        family("wsp_rate_limited_total", "counter", "Messages dropped by the rate limiter")
        out.append(f"wsp_rate_limited_total {self.rate_limited}")
        family("wsp_refused_upgrades_total", "counter", "Upgrades refused, by HTTP status")
        for status, n in sorted(self.refused_upgrades.items()):
            out.append(f'wsp_refused_upgrades_total{{status="{status}"}} {n}')
        family("wsp_resumes_total", "counter", "Resume attempts, by outcome")
        for outcome, n in sorted(self.resumes.items()):
            out.append(f'wsp_resumes_total{{outcome="{outcome}"}} {n}')
        h = self.handler_latency
        family("wsp_handler_latency_seconds", "histogram", "handle-message call latency")
        cumulative = 0
        for bound, n in zip(h.buckets, h.counts, strict=False):
            cumulative += n
            out.append(f'wsp_handler_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'wsp_handler_latency_seconds_bucket{{le="+Inf"}} {h.count}')
        out.append(f"wsp_handler_latency_seconds_sum {h.total}")
        out.append(f"wsp_handler_latency_seconds_count {h.count}")
        for name, read in sorted(self.gauges.items()):
            family(name, "gauge", name.replace("_", " "))
            out.append(f"{name} {read()}")
        return "\n".join(out) + "\n"


def register_otel_metrics(meter: Any, metrics: Metrics) -> None:
    """Expose the same figures as OpenTelemetry observable instruments (read at export)."""
    from opentelemetry.metrics import CallbackOptions, Observation

    def counter(name: str, read: Callable[[], float], description: str) -> None:
        def callback(options: CallbackOptions) -> list[Observation]:
            return [Observation(read())]

        meter.create_observable_counter(name, callbacks=[callback], description=description)

    counter("wsp.connections", lambda: metrics.connects, "WebSocket sessions opened")
    counter("wsp.messages_in", lambda: metrics.messages_in, "Frames received from clients")
    counter("wsp.messages_out", lambda: metrics.messages_out, "Frames queued for clients")
    counter("wsp.bytes_in", lambda: metrics.bytes_in, "Bytes received from clients")
    counter(
        "wsp.bytes_out",
        lambda: metrics.bytes_out_closed + metrics.bytes_out_live(),
        "Bytes written to clients",
    )
    counter("wsp.errors", lambda: sum(metrics.errors.values()), "Error frames sent")
    counter("wsp.rate_limited", lambda: metrics.rate_limited, "Messages dropped by rate limits")

    def sessions(options: CallbackOptions) -> list[Observation]:
        read = metrics.gauges.get("wsp_sessions_open")
        return [Observation(read() if read else 0)]

    meter.create_observable_gauge(
        "wsp.sessions_open", callbacks=[sessions], description="Open WebSocket sessions"
    )
