"""Prometheus metrics of one app: requests by route, method and status, their latency, and
the gateway's counters (submitted, busy, batches, retries, unavailable).

Each app has its own registry (so two apps in one process do not collide); `/metrics`
serves it in the Prometheus text format. The route label is the route's template
(`/v1/orders/{order_id}`), never the raw path, so ids cannot blow up the label set.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _GatewayStats:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def collect(self) -> Any:
        stats = getattr(self.gateway, "stats", None)
        if not isinstance(stats, dict):
            return
        family = CounterMetricFamily("saleday_gateway_commands", "The gateway's counters "
                                     "in this replica.", labels=["what"])
        for what, value in sorted(stats.items()):
            family.add_metric([what], float(value))
        yield family


class HttpMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, gateway: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("saleday_http_requests", "HTTP requests answered.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("saleday_http_request_duration_seconds",
                                 "Time to answer an HTTP request.", ["route", "method"],
                                 buckets=BUCKETS, registry=self.registry)
        if gateway is not None:
            self.registry.register(_GatewayStats(gateway))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
