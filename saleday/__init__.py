"""saleday: an event-sourced sale-day (11.11) system on Ray, with a hash-chained event log.

The rooms install under this namespace while the repository keeps one folder per room:
`saleday.events` (the log) <- `saleday.actors` (the deciders and the shard host) <-
`saleday.flows` (checkout and the other cross-shard flows) <- `saleday.cluster` (the
runtime on Ray); `saleday.projections` (views and the audit) reads `saleday.events` only;
`saleday.simulator` drives the system; `saleday.cli` and `saleday.bench` wire everything
together. The layering is checked by tests/test_layers.py.

The public API, imported lazily so that `import saleday.events` stays light:

    from saleday import Runtime, RuntimeConfig, Checkout, SaleDayFlows, open_store
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "Runtime": "saleday.cluster.runtime",
    "RuntimeConfig": "saleday.cluster.runtime",
    "Gateway": "saleday.flows.gateway",
    "Checkout": "saleday.flows.checkout",
    "CheckoutResult": "saleday.flows.checkout",
    "SaleDayFlows": "saleday.flows.sale_day",
    "Reactor": "saleday.flows.reactor",
    "LocalShards": "saleday.cluster.local",
    "Accepted": "saleday.actors.host",
    "Rejection": "saleday.actors.decider",
    "TransportFailure": "saleday.actors.host",
    "Busy": "saleday.actors.host",
    "Unavailable": "saleday.actors.host",
    "open_store": "saleday.events",
    "EventStore": "saleday.events",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'saleday' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
