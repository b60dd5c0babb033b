"""The flash-sale workload of `saleday bench reserve`, which saleday and the baselines all run.

`skus` SKUs with `stock` units each; reservations of one unit each (demand = `demand` x
supply) from `users` users, SKUs drawn Zipf-like (exponent `zipf`), all from `seed`; and
`percentiles`, how every system's latencies are summed up.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    skus: list[str]
    stock: int
    requests: list[tuple[str, str]]   # (user, sku)

    @property
    def supply(self) -> int:
        return len(self.skus) * self.stock


def reservations(*, skus: int, stock: int, demand: float) -> int:
    """How many reservations a sale of `skus` x `stock` units with `demand` asks for."""
    return int(skus * stock * demand)


def make_workload(*, skus: int, stock: int, demand: float, users: int, zipf: float,
                  seed: int) -> Workload:
    rng = random.Random(seed)
    names = [f"sku-{i:05d}" for i in range(skus)]
    weights = [1 / (rank ** zipf) for rank in range(1, skus + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    n = reservations(skus=skus, stock=stock, demand=demand)
    requests = []
    for _ in range(n):
        sku = names[bisect.bisect_left(cumulative, rng.random() * total)]
        requests.append((f"u-{rng.randrange(users):07d}", sku))
    return Workload(names, stock, requests)


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return round(p(0.50), 3), round(p(0.99), 3)
