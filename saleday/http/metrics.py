"""Prometheus metrics of one app: requests by route, method and status, their latency, and
the gateway's counters (submitted, busy, batches, retries, unavailable).

Each app has its own registry (so two apps in one process do not collide); `/metrics`
serves it in the Prometheus text format. The route label is the route's template
(`/v1/orders/{order_id}`), never the raw path, so ids cannot blow up the label set.
`RecentRequests` keeps the last seconds of /v1 answers for the war room (rates, p50/p99).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
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
        self.recent = RecentRequests()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        """(route, method, status) -> its counter and histogram children: `labels()` checks
        and locks on every call, a third of what observing a request cost."""

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route, method))
        children[0].inc()
        children[1].observe(seconds)
        self.recent.add(route, method, status, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_TRAFFIC = frozenset({"/v1/warroom"})
"""Routes whose requests are not sale traffic (the war room's own polling)."""


class RecentRequests:
    """The /v1 requests of the last `window_s` seconds, in one bucket a second: counts by
    kind and a bounded sample of latencies (reservoir of `sample` per second)."""

    def __init__(self, window_s: int = 10, *, sample: int = 2000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.sample = sample
        self.clock = clock
        self.started = clock()
        self._buckets: dict[int, list[Any]] = {}
        self._rng = random.Random(0)

    def add(self, route: str, method: str, status: int, seconds: float) -> None:
        if not route.startswith("/v1/") or route in NOT_TRAFFIC:
            return
        second = int(self.clock())
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = [0, 0, 0, 0, []]
            for old in [s for s in self._buckets if s <= second - self.window_s]:
                del self._buckets[old]
        bucket[0] += 1
        bucket[1] += status == 429
        bucket[2] += status == 503
        bucket[3] += method in WRITES and status < 400
        latencies = bucket[4]
        if len(latencies) < self.sample:
            latencies.append(seconds)
        else:
            i = self._rng.randrange(bucket[0])
            if i < self.sample:
                latencies[i] = seconds

    def stats(self) -> dict[str, Any]:
        """Rates a second and latency percentiles (ms, None without requests) over the
        window (the full seconds of it; the current one counts for the latencies)."""
        now = self.clock()
        second = int(now)
        span = max(1.0, min(float(self.window_s - 1), now - self.started))
        full = [b for s, b in self._buckets.items() if second - self.window_s < s < second]
        latencies = sorted(x for s, b in self._buckets.items()
                           if s > second - self.window_s for x in b[4])
        n, limited, busy, writes = (sum(b[i] for b in full) for i in range(4))
        return {"window_s": self.window_s, "requests_per_s": round(n / span, 2),
                "rate_limited_per_s": round(limited / span, 2),
                "busy_per_s": round(busy / span, 2), "writes_per_s": round(writes / span, 2),
                "rate_limited_ratio": round(limited / n, 4) if n else None,
                "busy_ratio": round(busy / n, 4) if n else None,
                "p50_ms": _pct_ms(latencies, 0.50), "p99_ms": _pct_ms(latencies, 0.99),
                "sampled": len(latencies)}


def _pct_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)
