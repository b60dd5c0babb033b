"""The entity kinds a shard can host, by name: one decider each (pure; no I/O)."""

from __future__ import annotations

from typing import Any


def deciders() -> dict[str, Any]:
    """The entity kinds a shard can host, by name."""
    from saleday.actors.campaign import campaign_decider
    from saleday.actors.experiment import experiment_decider
    from saleday.actors.order import order_decider
    from saleday.actors.session import session_decider
    from saleday.actors.sku import sku_decider
    from saleday.actors.team import team_decider

    return {d.kind: d for d in (sku_decider, session_decider, campaign_decider, team_decider,
                                order_decider, experiment_decider)}
