"""Swarm testing: each seed draws which fault classes are on, and how often they strike.

`--faults` alone injects today's five classes three times each (`simulator.inprocess`).
`--faults swarm` lets the seed pick a mix of every class below (each on with even odds,
at least one on), a count and its own parameters for each; `--faults torn_write,clock_skew`
turns on exactly the classes named, with counts and parameters still drawn from the seed.
The mix is data (`FaultMix`): the report and `--json` show it, and the seed alone
reproduces it, so a failing seed is replayed by one command (`FaultMix.reproduce`).

Classes (the first five are today's; `simulator.swarm_shards` injects the rest):

| class | what happens |
|---|---|
| `crash`, `lost_reply`, `duplicate`, `failed_append`, `late_payment` | as with `--faults` |
| `torn_write` | the writer dies in the middle of a commit: the store keeps all of it or none (the seed picks) and answers an error; the shard recovers |
| `slow_store` | one append takes `max_s` seconds at most: the shard is blocked and its replies come that late, past deadlines |
| `full_disk` | the shard's appends are refused for up to `max_s` seconds; its clients retry every round |
| `clock_skew` | each shard's clock is off by up to `max_s` seconds, for the whole run |
| `delayed_reply` | a batch's replies come back up to `max_s` seconds late, in a shuffled order |
| `delayed_follow_up` | the reactor's follow-ups of one round are held up to `max_s` seconds, then sent shuffled |
| `bad_snapshot` | a shard recovers from a stale (older) or unreadable snapshot; snapshots are taken every `snapshot_every` events |
| `projection_kill` | a projection worker folding the log during the run is killed between a batch and its checkpoint, and restarted |

Pure: the plan is drawn from the seed with numpy; nothing here runs anything.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from saleday.simulator.errors import SimulationError

CLASSIC = ("crash", "lost_reply", "duplicate", "failed_append", "late_payment")
NEW = ("torn_write", "slow_store", "full_disk", "clock_skew", "delayed_reply",
       "delayed_follow_up", "bad_snapshot", "projection_kill")
SWARM_CLASSES = CLASSIC + NEW
LANE_KINDS = ("crash", "lost_reply", "duplicate", "failed_append", "torn_write",
              "slow_store", "full_disk", "delayed_reply", "bad_snapshot")
"""Classes that strike one shard's batch at a planned time."""


class FaultMixError(SimulationError):
    """A `--faults` value that names no mix or an unknown class."""


@dataclass
class FaultMix:
    """Which classes are on for a seed, each with its count and parameters."""

    seed: int
    on: dict[str, dict[str, Any]] = field(default_factory=dict)
    spec: str = "swarm"
    """What was asked: `swarm` or the classes named."""

    def count(self, kind: str) -> int:
        return int(self.on.get(kind, {}).get("count", 0))

    def param(self, kind: str, name: str, default: Any = None) -> Any:
        return self.on.get(kind, {}).get(name, default)

    def reproduce(self, *, scenario: str, users: int, compression: float) -> str:
        """The one command that runs this seed with this mix again."""
        args = ["saleday", "simulate", "--engine", "inprocess", "--scenario", scenario,
                "--users", str(users), "--compression", f"{compression:g}",
                "--seed", str(self.seed), "--faults", self.spec, "--no-charts"]
        return shlex.join(args)

    def as_json(self, *, scenario: str, users: int, compression: float) -> dict[str, Any]:
        return {"spec": self.spec, "classes": {k: dict(v) for k, v in self.on.items()},
                "reproduce": self.reproduce(scenario=scenario, users=users,
                                            compression=compression)}


def parse_spec(spec: str) -> tuple[str, ...] | None:
    """`swarm` -> None (the seed picks); `a,b` -> those classes; anything else is refused."""
    text = spec.strip()
    if text == "swarm":
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SWARM_CLASSES]
    if not names or unknown:
        raise FaultMixError(
            f"--faults takes `swarm` or classes separated by commas, not {spec!r}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            + f"; classes: {', '.join(SWARM_CLASSES)}")
    return names


def draw_mix(seed: int, spec: str = "swarm") -> FaultMix:
    """The classes on for `seed` and their counts and parameters. Every class's figures are
    drawn whether it is on or not, so a seed's figures do not depend on the spec."""
    only = parse_spec(spec)
    rng = np.random.default_rng([seed, 19])
    drawn: dict[str, dict[str, Any]] = {}
    coin = rng.random(len(SWARM_CLASSES))
    for kind in SWARM_CLASSES:
        count = int(rng.integers(1, 9))
        params: dict[str, Any] = {"count": count}
        x = float(rng.random())
        if kind == "late_payment":
            params = {"every": int(20 + x * 180)}   # one order in `every` pays late
        elif kind == "torn_write":
            params["kept"] = "all" if x < 0.5 else "none"
        elif kind == "slow_store":
            params["max_s"] = round(60 + x * 1140, 1)     # up to 20 simulated minutes
        elif kind == "full_disk":
            params["max_s"] = round(5 + x * 295, 1)
        elif kind == "clock_skew":
            params = {"max_s": round(1 + x * 59, 1)}      # static: no count
        elif kind == "delayed_reply":
            params["max_s"] = round(x * 30, 1)
        elif kind == "delayed_follow_up":
            params["max_s"] = round(x * 120, 1)
        elif kind == "bad_snapshot":
            params["snapshot_every"] = int(100 + x * 400)
        drawn[kind] = params
    if only is None:
        on = [k for k, c in zip(SWARM_CLASSES, coin) if c < 0.5]
        if not on:
            on = [SWARM_CLASSES[int(np.argmin(coin))]]
    else:
        on = list(only)
    return FaultMix(seed=seed, on={k: drawn[k] for k in SWARM_CLASSES if k in on}, spec=spec)


@dataclass
class SwarmSchedule:
    """When each struck class strikes: lane faults as `FaultPlan.at` takes them, the rest
    as simulated seconds, and each shard's clock skew (in simulated seconds)."""

    at: list[tuple[float, str, int]]
    follow_ups_at: list[float]
    kills_at: list[float]
    skew_s: list[float]
    variants: list[str]
    """`stale` or `unreadable` per `bad_snapshot`, in the order they strike."""


def schedule(mix: FaultMix, *, window_s: float, lanes: int) -> SwarmSchedule:
    """Random times in the busy half of the window, on random shards, per class on."""
    rng = np.random.default_rng([mix.seed, 19, 2])
    at: list[tuple[float, str, int]] = []
    for kind in LANE_KINDS:
        times = rng.uniform(0.0, 0.5 * window_s, 8)
        targets = rng.integers(0, lanes, 8)
        for t, lane in list(zip(times, targets))[:mix.count(kind)]:
            at.append((float(t), kind, int(lane)))
    at.sort()
    follow = sorted(float(t) for t in rng.uniform(0.0, 0.5 * window_s, 8)[
        :mix.count("delayed_follow_up")])
    kills = sorted(float(t) for t in rng.uniform(0.0, 0.6 * window_s, 8)[
        :mix.count("projection_kill")])
    skew_max = float(mix.param("clock_skew", "max_s", 0.0))
    skew = [float(s) for s in rng.uniform(-skew_max, skew_max, lanes)]
    variants = ["stale" if v < 0.5 else "unreadable" for v in rng.random(8)]
    return SwarmSchedule(at=at, follow_ups_at=follow, kills_at=kills, skew_s=skew,
                         variants=variants)
