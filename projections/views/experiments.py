"""The experiments view: per experiment and variant, exposures, conversions, rate, lift
against control with 95 % intervals, the two-proportion test, and the SRM check.

Rows (all ints and strs; the statistics are computed when the view is shown):
- `defs` (key = experiment): its definition, from `experiments.experiment_defined`.
- `users` (key = user): {experiment: [variant, exposed at, first order placed at, first
  order paid at]} (0: not yet), from the user's own session stream. A conversion counts
  for an experiment only if it comes after the exposure in that stream, so the view does
  not depend on how streams interleave.
- `clock` (key = stream): the latest `recorded_at` of any event of the stream; the
  experiment has ended once any stream's is at or past its `end`.

A user counts in an experiment if exposed within `[start, end)`; converted if the
experiment's conversion (`order_placed` or `order_paid`) happened after the exposure and
before `end`. A result is `readable` once the experiment has ended (by the log's clock,
or the reader's: `to_json(now_ms)`) or every variant has
its planned exposures; before that the view shows the running numbers with no verdict
(docs/EXPERIMENTS.md: why peeking inflates false positives).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.stats import ALPHA, srm, two_proportion
from saleday.projections.view import DISJOINT, View

VARIANT, EXPOSED_AT, PLACED_AT, PAID_AT = range(4)
_SLOT = {"placed": PLACED_AT, "paid": PAID_AT}


class ExperimentsView(View):
    name = "experiments"
    tables: ClassVar[dict[str, str]] = {"defs": DISJOINT, "users": DISJOINT, "clock": DISJOINT}

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        users, clock = self.t["users"], self.t["clock"]
        dirty_u = self.dirty["users"]
        for env in envs:
            if env.recorded_at > clock.get(env.stream, 0):
                clock[env.stream] = env.recorded_at
                self.dirty["clock"].add(env.stream)
            kind = env.type
            if kind == "sessions.exposure_recorded":
                d = env.data
                row = users.get(d["user"])
                if row is None:
                    row = users[d["user"]] = {}
                if d["experiment"] not in row:
                    row[d["experiment"]] = [d["variant"], d["at"], 0, 0]
                    dirty_u.add(d["user"])
            elif kind == "sessions.order_status_changed":
                d = env.data
                slot = _SLOT.get(d["status"])
                row = users.get(d["user"])
                if slot is None or row is None:
                    continue
                for facts in row.values():
                    if not facts[slot]:
                        facts[slot] = d["at"]
                        dirty_u.add(d["user"])
            elif kind == "experiments.experiment_defined":
                d = env.data
                self.t["defs"][d["experiment"]] = {
                    "variants": [[n, w] for n, w in d["variants"]], "control": d["control"],
                    "salt": d["salt"], "conversion": d["conversion"], "start": d["start"],
                    "end": d["end"], "planned_per_variant": d.get("planned_per_variant", 0)}
                self.dirty["defs"].add(d["experiment"])

    # -- reading ---------------------------------------------------------------------------

    def counts(self, experiment: str) -> dict[str, list[int]]:
        """variant -> [exposures, conversions] within the experiment's window."""
        spec = self.t["defs"][experiment]
        start, end = spec["start"], spec["end"]
        slot = PAID_AT if spec["conversion"] == "order_paid" else PLACED_AT
        out = {name: [0, 0] for name, _ in spec["variants"]}
        for row in self.t["users"].values():
            facts = row.get(experiment)
            if facts is None or not start <= facts[EXPOSED_AT] < end:
                continue
            cell = out.setdefault(facts[VARIANT], [0, 0])
            cell[0] += 1
            cell[1] += bool(facts[slot]) and facts[slot] < end
        return out

    def result(self, experiment: str, now_ms: int = 0) -> dict[str, Any]:
        """The experiment's figures; `now_ms` is the reader's clock, if later than the log's
        (the experiment may have ended with nothing recorded since)."""
        spec = self.t["defs"][experiment]
        counts = self.counts(experiment)
        weights = dict((n, w) for n, w in spec["variants"])
        nc, xc = counts[spec["control"]]
        now = max(now_ms, *self.t["clock"].values()) if self.t["clock"] else now_ms
        planned = spec["planned_per_variant"]
        ended = now >= spec["end"]
        sized = planned > 0 and all(counts[n][0] >= planned for n in weights)
        check = srm([counts[n][0] for n in weights], list(weights.values()))
        unknown = sorted(set(counts) - set(weights))
        readable = (ended or sized) and not check["mismatch"] and not unknown
        variants = []
        for name in weights:
            n, x = counts[name]
            row: dict[str, Any] = {"variant": name, "weight": weights[name], "exposures": n,
                                   "conversions": x, "rate": _r(x / n if n else None)}
            if name != spec["control"]:
                t = two_proportion(x, n, xc, nc)
                row |= {k: _r(v) for k, v in t.items() if k != "z"}
                row["verdict"] = _verdict(t) if readable else None
            variants.append(row)
        return {"experiment": experiment, "control": spec["control"],
                "conversion": spec["conversion"], "start": spec["start"], "end": spec["end"],
                "planned_per_variant": planned,
                "status": "ended" if ended else "sized" if sized else "running",
                "readable": readable, "variants": variants,
                "srm": {k: _r(v) for k, v in check.items()},
                "unknown_variants": {n: counts[n][0] for n in unknown}}

    def to_json(self, now_ms: int = 0) -> dict[str, Any]:
        return {"experiments": [self.result(e, now_ms) for e in sorted(self.t["defs"])]}


def _verdict(t: dict[str, Any]) -> str:
    p = t["p_value"]
    if p is None or p >= ALPHA:
        return "no significant difference"
    return "better than control" if t["abs_lift"] > 0 else "worse than control"


def _r(v: Any) -> Any:
    """Floats rounded for a stable digest; lists element-wise."""
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, list):
        return [_r(x) for x in v]
    return v
