"""What simulated visitors do about experiments and browsing: exposures, a true effect on
conversion, and each view and add-to-cart recorded as an event.

`Extras` is the driver's hook (`Driver.extras`), built from the scenario:

- setup: one `DefineExperiment` per declared experiment (window: the sale's);
- on arrival: each experiment's variant is assigned (`actors.experiment.assign`) and the
  exposure recorded (`RecordExposure`, once per user);
- the true effect: a user of variant v keeps the orders the generator drew with
  probability `(1 + lift_v) / (1 + max lift)` (the control's lift is 0), decided once per
  user and experiment from a hash, so conversion rates stand exactly in the declared ratio
  in expectation and nothing else in the traffic moves;
- browsing (`behaviour.record`): the visit's views and carts as `RecordBehaviour`
  commands, sent together (the gateway batches them) at the end of the browse, each with
  its own event time spread over it; products drawn from the catalogue's popularity, the
  ordered ones among them; SKU `P<i>` is in category `C<i mod categories>`.

Every draw is a hash of the seed and the visit or user, so the traffic the generator
makes is unchanged and the same seed gives the same log.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from bisect import bisect_right
from itertools import accumulate
from typing import Any

from saleday.actors.experiment import DefineExperiment, assign
from saleday.actors.session import RecordBehaviour, RecordExposure
from saleday.simulator.generator import Visit, popularity
from saleday.simulator.scenario import Experiment, Scenario


def extra_kinds(sc: Scenario) -> dict[str, int]:
    """The shards the scenario needs beyond the sale's: one for experiment definitions."""
    return {"experiment": 1} if sc.experiments else {}


def salt_of(e: Experiment) -> str:
    return e.salt or e.name


def variants_of(e: Experiment) -> tuple[tuple[str, int], ...]:
    return tuple(e.variants.items())


def define_commands(sc: Scenario, start_ms: int, end_ms: int, now: int) -> list[tuple[str, Any]]:
    """The experiments' definitions, as setup commands with their ids."""
    out: list[tuple[str, Any]] = []
    for e in sc.experiments:
        control = next(iter(e.variants))
        out.append((f"setup/experiment/{e.name}", DefineExperiment(
            experiment=e.name, variants=variants_of(e), control=control, salt=salt_of(e),
            conversion=e.conversion, start=start_ms, end=end_ms, now=now,
            planned_per_variant=e.planned_per_variant)))
    return out


def unit(*parts: object) -> float:
    """A uniform draw in [0, 1) from a hash of `parts`."""
    h = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


class Extras:
    """Exposures, the true effect and browsing events for the driver's visits."""

    def __init__(self, sc: Scenario, seed: int) -> None:
        self.sc, self.seed = sc, seed
        self.record = sc.behaviour.record
        self.categories = sc.behaviour.categories
        self.experiments = [(e, variants_of(e), salt_of(e),
                             {v: (1 + e.true_lift.get(v, 0.0)) / (1 + max([0.0, *e.true_lift.values()]))
                              for v in e.variants}) for e in sc.experiments]
        self._cum = list(accumulate(popularity(sc).tolist())) if self.record else []
        self.exposures = 0
        self.orders_withheld = 0
        self.behaviours = 0
        self.triggers: dict[str, Any] | None = None
        """What the trigger runner did (`simulator.triggers`), when the run had one."""

    @property
    def active(self) -> bool:
        return bool(self.experiments) or self.record

    async def arrive(self, gw: Any, v: Visit, now: int) -> bool:
        """Record the visitor's exposures; whether the visit keeps its order (the true effect)."""
        keep = True
        for e, variants, salt, keeps in self.experiments:
            variant = assign(v.user, salt, variants)
            await gw.submit_retrying_busy(
                RecordExposure(user=v.user, experiment=e.name, variant=variant, now=now),
                command_id=f"exposure/{e.name}/{v.user}")
            self.exposures += 1
            keep = keep and unit(self.seed, "effect", e.name, v.user) < keeps[variant]
        if not keep and v.order is not None:
            self.orders_withheld += 1
        return keep

    def browsing(self, v: Visit, start_ms: int, end_ms: int) -> list[RecordBehaviour]:
        """The visit's views and carts, at event times spread over [start_ms, end_ms]."""
        if not self.record:
            return []
        rng = random.Random(f"{self.seed}:browse:{v.session_id}")
        ordered = [sku for sku, _ in v.order.lines] if v.order is not None else []
        n = max(v.views, len(ordered))
        skus = ordered + [self._pick(rng) for _ in range(n - len(ordered))]
        rng.shuffle(skus)
        span = max(0, end_ms - start_ms)
        times = sorted(start_ms + int(rng.random() * span) for _ in skus)
        out = [self._command(v.user, "view", sku, at, end_ms) for sku, at in zip(skus, times)]
        for i in range(min(v.carts, len(skus))):
            out.append(self._command(v.user, "cart", skus[i], times[i], end_ms))
        return out

    async def send(self, gw: Any, v: Visit, commands: list[RecordBehaviour]) -> None:
        self.behaviours += len(commands)
        await asyncio.gather(*(gw.submit_retrying_busy(c, command_id=f"behaviour/{v.session_id}/{i}")
                               for i, c in enumerate(commands)))

    def _pick(self, rng: random.Random) -> str:
        i = min(bisect_right(self._cum, rng.random() * self._cum[-1]), len(self._cum) - 1)
        return f"P{i:05d}"

    def _command(self, user: str, action: str, sku: str, at: int, now: int) -> RecordBehaviour:
        category = f"C{int(sku[1:]) % self.categories:02d}" if sku[1:].isdigit() else "C00"
        return RecordBehaviour(user=user, action=action, sku=sku, category=category, at=at, now=now)

    def summary(self) -> dict[str, Any]:
        return {"exposures_sent": self.exposures, "orders_withheld_by_effect": self.orders_withheld,
                "behaviour_events_sent": self.behaviours,
                "experiments": {e.name: {"variants": dict(e.variants),
                                         "true_lift": dict(e.true_lift)}
                                for e, *_ in self.experiments}}


def trigger_runner(sc: Scenario, store: Any, submit: Any) -> Any:
    """The scenario's coupon trigger over the log (None when it has none)."""
    if not (sc.behaviour.record and sc.behaviour.coupon_trigger):
        return None
    from saleday.simulator.triggers import BrowseTrigger, TriggerRunner

    return TriggerRunner(store, BrowseTrigger(min_products=sc.behaviour.trigger_min_products),
                         submit)


# -- what the report shows -------------------------------------------------------------------


def outcome_views(sc: Scenario) -> list[Any]:
    """The views the run's report reads besides the audit's: experiments, browse windows."""
    from saleday.projections.views.experiments import ExperimentsView
    from saleday.projections.views.windows import Browse5m, Trail30m

    out: list[Any] = []
    if sc.experiments:
        out.append(ExperimentsView())
    if sc.behaviour.record:
        out += [Browse5m(), Trail30m()]
    return out


def fill_outcomes(report: Any, sc: Scenario, extras: Extras | None, views: list[Any],
                  now_ms: int) -> None:
    """Put what was detected next to the truth the scenario declared, and what recording
    behaviour cost, into `report` (`experiments`, `behaviour`); `now_ms`: the run's end on
    the sale clock (the experiments ended with the run)."""
    by_name = {v.name: v for v in views}
    if "experiments" in by_name:
        declared = {e.name: e for e in sc.experiments}
        for result in by_name["experiments"].to_json(now_ms)["experiments"]:
            e = declared.get(result["experiment"])
            for row in result["variants"]:
                truth = e.true_lift.get(row["variant"], 0.0) if e is not None else None
                row["true_rel_lift"] = truth
                ci = row.get("rel_ci")
                row["covered"] = (ci[0] <= truth <= ci[1]) if ci and truth is not None and \
                    row["variant"] != result["control"] else None
            report.experiments.append(result)
    if extras is not None and extras.triggers is not None:
        report.behaviour["triggers"] = extras.triggers
    if "browse-5m" in by_name:
        orders = max(1, report.orders.get("placed", 0))
        sent = extras.behaviours if extras is not None else 0
        report.behaviour |= {
            "events": sent, "events_per_placed_order": round(sent / orders, 2),
            **{name: {k: by_name[name].totals()[k] for k in ("events", "keys", "windows",
                                                               "late", "dropped")}
               for name in ("browse-5m", "trail-30m") if name in by_name}}
