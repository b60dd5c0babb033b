"""Recording and replaying the command stream a simulation drives.

The stream is the sequence of visits (each a user's session script: arrival, claims,
team-ups, the order and its payment outcome) in arrival order, as JSON lines after one
header line that names the scenario (in full), the seed and the fault plan's seed. The
engines turn visits into commands deterministically, so replaying a recording with the
in-process engine on a fresh store writes the same log (the same digest); with the Ray
engine it drives the same traffic (deadlines then follow the wall clock).

A recording may be gzip-compressed (`.gz`).

Reading one checks it as it goes: a line that is not JSON or not a visit (a missing or
extra field, a wrong type, a time outside the recorded sale), a gzip stream that is cut
short or corrupt, or bytes that are not UTF-8 raise a `RecordingError` naming the file and
the line. A replay stops there (exit 2); nothing from such a file is guessed at.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from saleday.simulator.generator import Order, Visit
from saleday.simulator.scenario import Scenario, ScenarioError, check_seed

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


_VISIT_FIELDS = frozenset(f.name for f in fields(Visit))
_ORDER_FIELDS = frozenset(f.name for f in fields(Order))
_STR_FIELDS = ("user", "session_id", "utm_source", "utm_medium", "utm_campaign", "inviter",
               "claim", "team_create", "team_join")
_PAYMENTS = ("success", "fail", "never")
_INT64_MAX = 2**63 - 1
_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def _fields(d: object, names: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{what} is a JSON object, not {type(d).__name__}")
    if d.keys() != names:
        missing, extra = sorted(names - d.keys()), sorted(d.keys() - names)
        raise ValueError(f"{what} " + "; ".join(
            ([f"lacks {', '.join(missing)}"] if missing else [])
            + ([f"has unknown {', '.join(map(str, extra))}"] if extra else [])))
    return d


def _int(d: dict[str, Any], name: str, low: int = 0) -> int:
    v = d[name]
    if type(v) is not int or not low <= v <= _INT64_MAX:
        raise ValueError(f"{name} must be a whole number from {low} to 2**63 - 1, not {v!r}")
    return v


def _time(d: dict[str, Any], name: str, low: float, high: float) -> float:
    v = d[name]
    if type(v) not in (int, float) or not math.isfinite(v) or not low <= v <= high:
        raise ValueError(f"{name} must be a number of seconds from {low:g} to {high:g}, not {v!r}")
    return float(v)


def _decode(d: object, sc: Scenario) -> Visit:
    """A visit from its JSON, checked field by field (types, and times inside the window:
    arrivals from its opening, orders from midnight)."""
    d = _fields(d, _VISIT_FIELDS, "a visit")
    window = float(sc.traffic.window_s)
    for name in _STR_FIELDS:
        if type(d[name]) is not str:
            raise ValueError(f"{name} must be a string, not {d[name]!r}")
    if not d["user"] or not d["session_id"]:
        raise ValueError("user and session_id must not be empty")
    if type(d["shares"]) is not bool:
        raise ValueError(f"shares must be true or false, not {d['shares']!r}")
    order = d["order"]
    if order is not None:
        o = _fields(order, _ORDER_FIELDS, "an order")
        lines = o["lines"]
        if (type(lines) is not list or not lines
                or not all(type(x) is list and len(x) == 2 and type(x[0]) is str and x[0]
                           and type(x[1]) is int and 1 <= x[1] <= _INT64_MAX for x in lines)):
            raise ValueError(f"order.lines must be a non-empty list of [sku, units >= 1], "
                             f"not {lines!r}")
        if type(o["order_id"]) is not str or not o["order_id"]:
            raise ValueError(f"order.order_id must be a non-empty string, not {o['order_id']!r}")
        if o["payment"] not in _PAYMENTS:
            raise ValueError(f"order.payment must be one of {', '.join(_PAYMENTS)}, "
                             f"not {o['payment']!r}")
        if type(o["use_coupon"]) is not bool:
            raise ValueError(f"order.use_coupon must be true or false, not {o['use_coupon']!r}")
        t_order = _time(o, "t_s", 0.0, window)
        # An exponential delay past 100 means has a chance of e**-100: not a real one.
        late = t_order + 100 * max(sc.funnel.payment_delay_s, 1.0)
        order = Order(order_id=o["order_id"], lines=tuple((sku, q) for sku, q in lines),
                      t_s=t_order, payment=o["payment"], pay_t_s=_time(o, "pay_t_s", t_order, late),
                      use_coupon=o["use_coupon"])
    # A visit may arrive from the window's opening (before midnight with a lead); an order
    # only once the sale is open.
    return Visit(seq=_int(d, "seq"), t_s=_time(d, "t_s", float(sc.traffic.start_s), window),
                 **{name: d[name] for name in _STR_FIELDS}, views=_int(d, "views"),
                 carts=_int(d, "carts"), order=order, shares=d["shares"])


class Recording:
    """A recorded stream: its header (scenario, seed, faults) and its visits."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(f"{self.path}: no such recording")
        first = next(self._lines(), (1, ""))[1]
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
        try:
            self.seed = check_seed(header.get("seed", 0))
        except ScenarioError as exc:
            raise RecordingError(f"{self.path}:1: the recorded {exc}") from None
        if type(header.get("faults", False)) is not bool:
            raise RecordingError(f"{self.path}:1: faults must be true or false")
        self.faults = bool(header.get("faults", False))

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every line; a file that cannot be read on is a
        `RecordingError` naming the line it stopped at."""
        n = 0
        try:
            with _open(self.path, "r") as f:
                for n, line in enumerate(f, start=1):  # noqa: B007 (n is read after a failure)
                    yield n, line
        except _READ_ERRORS as exc:
            raise RecordingError(f"{self.path}:{n + 1}: cannot read on: {_read_error(exc)}") from None

    def visits(self) -> Iterator[Visit]:
        lines = self._lines()
        next(lines, None)
        for n, line in lines:
            if not line.strip():
                continue
            try:
                yield _decode(json.loads(line), self.scenario)
            except json.JSONDecodeError as exc:
                raise RecordingError(f"{self.path}:{n}: not JSON: {exc}") from None
            except ValueError as exc:
                raise RecordingError(f"{self.path}:{n}: not a recorded visit: {exc}") from None


def _read_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return f"the gzip stream is cut short ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start} of a block)"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"not a valid gzip stream ({exc})"
    return str(exc) or type(exc).__name__
