"""Recording and replaying the command stream a simulation drives.

The stream is the sequence of visits (each a user's session script: arrival, claims,
team-ups, the order and its payment outcome) in arrival order, as JSON lines after one
header line that names the scenario (in full), the seed and the fault plan's seed. The
engines turn visits into commands deterministically, so replaying a recording with the
in-process engine on a fresh store writes the same log (the same digest); with the Ray
engine it drives the same traffic (deadlines then follow the wall clock).

A recording may be gzip-compressed (`.gz`).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from simulator.generator import Order, Visit
from simulator.scenario import Scenario, ScenarioError

FORMAT = "saleday-visits/1"


class RecordingError(ValueError):
    """A recording that cannot be read, with the line and what is wrong."""


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, mode + "b"), encoding="utf-8")
    return open(path, mode, encoding="utf-8")


class Recorder:
    """Writes visits as they are generated (a pass-through iterator)."""

    def __init__(self, path: str | Path, *, scenario: Scenario, seed: int, faults: bool) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _open(self.path, "w")
        header = {"format": FORMAT, "seed": seed, "faults": faults,
                  "scenario": scenario.model_dump(mode="json")}
        self._file.write(json.dumps(header, separators=(",", ":")) + "\n")
        self.count = 0

    def tee(self, visits: Iterator[Visit]) -> Iterator[Visit]:
        try:
            for v in visits:
                self._file.write(json.dumps(_encode(v), separators=(",", ":")) + "\n")
                self.count += 1
                yield v
        finally:
            self._file.close()


def _encode(v: Visit) -> dict[str, Any]:
    d = asdict(v)
    if v.order is not None:
        d["order"]["lines"] = [list(line) for line in v.order.lines]
    return d


def _decode(d: dict[str, Any]) -> Visit:
    order = d.get("order")
    if order is not None:
        order = Order(order_id=order["order_id"], lines=tuple((s, int(q)) for s, q in order["lines"]),
                      t_s=float(order["t_s"]), payment=order["payment"],
                      pay_t_s=float(order["pay_t_s"]), use_coupon=bool(order["use_coupon"]))
    return Visit(**{**d, "order": order})


class Recording:
    """A recorded stream: its header (scenario, seed, faults) and its visits."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RecordingError(f"{self.path}: no such recording")
        with _open(self.path, "r") as f:
            first = f.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError:
            raise RecordingError(f"{self.path}:1: the header is not JSON") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise RecordingError(f"{self.path}:1: not a saleday recording (expected format "
                                 f"{FORMAT!r})")
        try:
            self.scenario = Scenario.model_validate(header["scenario"])
        except (KeyError, ValidationError) as exc:
            raise RecordingError(f"{self.path}:1: the recorded scenario is invalid: {exc}") from None
        except ScenarioError as exc:
            raise RecordingError(f"{self.path}:1: {exc}") from None
        self.seed = int(header.get("seed", 0))
        self.faults = bool(header.get("faults", False))

    def visits(self) -> Iterator[Visit]:
        with _open(self.path, "r") as f:
            f.readline()
            for n, line in enumerate(f, start=2):
                if not line.strip():
                    continue
                try:
                    yield _decode(json.loads(line))
                except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
                    raise RecordingError(f"{self.path}:{n}: not a recorded visit: {exc}") from None
