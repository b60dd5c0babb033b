"""Event-time windows over the log, as views: tumbling, sliding (hopping) and session.

A `WindowSpec` says which events to read (types, and field = value filters), the field
that keys them (any payload field: "user", "category", ...), the field holding their
event time (ms), the window kind and sizes, the watermark's out-of-orderness bound and
the allowed lateness, and the aggregates (`Agg`) each window keeps:

- `count`            events in the window;
- `distinct FIELD`   the distinct values of FIELD (sorted; their number is `len`);
- `sum FIELD`        the sum of an int FIELD;
- `last FIELD`       FIELD of the latest event by event time;
- `trail FIELD`      the latest `limit` (event time, FIELD) pairs, oldest first.

Windows: `tumbling` [k*size, (k+1)*size); `sliding` every [k*hop, k*hop + size) holding
the event (size/hop of them); `session` the union of [t, t + gap) of a key's events,
merged when they touch.

Watermark and lateness, per stream: each stream's watermark is the latest event time
read from it minus `out_of_orderness_ms` (before the event at hand). A window of an event
is taken if `end + allowed_lateness_ms > watermark` (for a session: the event's own
[t, t + gap) is what is checked), and counted as `late` when `end <= watermark` (it
updates a window the watermark already passed); otherwise the event is `dropped` from that
window, and counted — never silently lost. The watermark is per stream, not global,
because the log has no order across streams: events of one stream come in version
order, so what is taken depends only on that stream, and every aggregate is commutative
(`last` and `trail` order by (event time, stream, version)), so the view is the same
however the streams interleave, split or are rebuilt. A key whose events come from
several streams (a category) merges exactly; the late/dropped verdicts stay per stream.

Rows: `win` (key -> {start: window}); `streams` (stream -> [latest event time, events
read, windows updated late, windows dropped]). Windows are results: they are kept, not
evicted, so the view grows with keys x windows (a user's 5-minute windows over a
two-hour sale are at most 24). Pure: imports the log's types only.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.view import DISJOINT, View

TUMBLING, SLIDING, SESSION = "tumbling", "sliding", "session"
KINDS = (TUMBLING, SLIDING, SESSION)
OPS = ("count", "distinct", "sum", "last", "trail")
MAX_AT, EVENTS, LATE, DROPPED = range(4)
NO_WATERMARK = -(2**62)


class WindowSpecError(ValueError):
    """A window spec that cannot work (sizes, kinds, aggregates)."""


@dataclass(frozen=True)
class Agg:
    """One aggregate a window keeps, shown under `name`."""

    name: str
    op: str
    field: str = ""
    limit: int = 0
    """trail: how many of the latest pairs are kept."""


@dataclass(frozen=True)
class WindowSpec:
    kind: str
    size_ms: int = 0
    """tumbling, sliding: the window's length."""
    hop_ms: int = 0
    """sliding: how far apart windows start (a divisor of size_ms)."""
    gap_ms: int = 0
    """session: the silence that ends a session."""
    key: str = "user"
    """The payload field that keys windows; "a+b" keys by several ("u1|C03")."""
    time_field: str = "at"
    types: tuple[str, ...] = ("sessions.behaviour_recorded",)
    where: tuple[tuple[str, str], ...] = ()
    """Only events whose payload has these field = value pairs."""
    out_of_orderness_ms: int = 0
    allowed_lateness_ms: int = 0
    aggs: tuple[Agg, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WindowSpecError(f"window kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == SESSION:
            if self.gap_ms <= 0:
                raise WindowSpecError("a session window needs gap_ms > 0")
        elif self.size_ms <= 0:
            raise WindowSpecError(f"a {self.kind} window needs size_ms > 0")
        if self.kind == SLIDING and not (0 < self.hop_ms <= self.size_ms
                                         and self.size_ms % self.hop_ms == 0):
            raise WindowSpecError("a sliding window needs 0 < hop_ms <= size_ms, hop dividing size")
        if self.out_of_orderness_ms < 0 or self.allowed_lateness_ms < 0:
            raise WindowSpecError("out_of_orderness_ms and allowed_lateness_ms are >= 0")
        names = [a.name for a in self.aggs]
        if len(set(names)) != len(names) or "start" in names or "end" in names:
            raise WindowSpecError(f"aggregate names must be unique and not start/end: {names}")
        for a in self.aggs:
            if a.op not in OPS:
                raise WindowSpecError(f"aggregate op must be one of {OPS}, not {a.op!r}")
            if a.op != "count" and not a.field:
                raise WindowSpecError(f"aggregate {a.name!r} ({a.op}) needs a field")
            if a.op == "trail" and a.limit <= 0:
                raise WindowSpecError(f"trail {a.name!r} needs limit > 0")

    def starts(self, t: int) -> list[int]:
        """Tumbling, sliding: the starts of the windows holding event time `t`."""
        if self.kind == TUMBLING:
            return [t - t % self.size_ms]
        first = t - t % self.hop_ms
        return list(range(first, t - self.size_ms, -self.hop_ms))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["types"], out["where"] = list(self.types), [list(p) for p in self.where]
        return out


# -- aggregate states (JSON-native, commutative) -------------------------------------------


def new_state(spec: WindowSpec, start: int, end: int) -> dict[str, Any]:
    out: dict[str, Any] = {"start": start, "end": end}
    for a in spec.aggs:
        out[a.name] = 0 if a.op in ("count", "sum") else [] if a.op in ("distinct", "trail") else None
    return out


def add_event(spec: WindowSpec, w: dict[str, Any], mark: list, data: dict[str, Any]) -> None:
    """Fold one event into window state `w`; `mark` is [event time, stream, version]."""
    for fold in folders(spec):
        fold(w, mark, data)


def folders(spec: WindowSpec) -> tuple[Any, ...]:
    """One function per aggregate, `(window, mark, data) -> None`, built once per spec."""
    cached = _FOLDERS.get(spec)
    if cached is None:
        cached = _FOLDERS[spec] = tuple(_folder(a) for a in spec.aggs)
    return cached


_FOLDERS: dict[WindowSpec, tuple[Any, ...]] = {}


def _folder(a: Agg) -> Any:
    name, field_, limit = a.name, a.field, a.limit
    if a.op == "count":
        def count(w: dict, mark: list, data: dict) -> None:
            w[name] += 1
        return count
    if a.op == "sum":
        def add(w: dict, mark: list, data: dict) -> None:
            w[name] += data.get(field_, 0)
        return add
    if a.op == "distinct":
        def distinct(w: dict, mark: list, data: dict) -> None:
            values, v = w[name], data.get(field_)
            i = bisect.bisect_left(values, v)
            if i == len(values) or values[i] != v:
                values.insert(i, v)
        return distinct
    if a.op == "last":
        def last(w: dict, mark: list, data: dict) -> None:
            cur = w[name]
            if cur is None or cur[:3] < mark:
                w[name] = [*mark, data.get(field_)]
        return last

    def trail(w: dict, mark: list, data: dict) -> None:
        pairs = w[name]
        if len(pairs) >= limit and pairs[0][:3] > mark:
            return  # older than everything kept
        bisect.insort(pairs, [*mark, data.get(field_)])
        if len(pairs) > limit:
            del pairs[0]
    return trail


def merge_states(spec: WindowSpec, w: dict[str, Any], other: dict[str, Any]) -> None:
    """Fold window state `other` into `w` (same window, or sessions being merged)."""
    w["start"], w["end"] = min(w["start"], other["start"]), max(w["end"], other["end"])
    for a in spec.aggs:
        mine, theirs = w[a.name], other[a.name]
        if a.op in ("count", "sum"):
            w[a.name] = mine + theirs
        elif a.op == "distinct":
            w[a.name] = sorted(set(mine) | set(theirs))
        elif a.op == "last":
            w[a.name] = theirs if mine is None or (theirs is not None and mine[:3] < theirs[:3]) else mine
        else:
            w[a.name] = sorted([list(x) for x in {tuple(x) for x in mine + theirs}])[-a.limit:]


def shown(spec: WindowSpec, w: dict[str, Any]) -> dict[str, Any]:
    """A window's aggregates as a reader wants them (no tie-break marks)."""
    out: dict[str, Any] = {"start": w["start"], "end": w["end"]}
    for a in spec.aggs:
        v = w[a.name]
        if a.op == "last":
            v = None if v is None else v[3]
        elif a.op == "trail":
            v = [[x[0], x[3]] for x in v]
        out[a.name] = v
    return out


# -- the view ------------------------------------------------------------------------------


class WindowView(View):
    """Windows of `spec` over the log (subclass with `name` and `spec`, or `window_view`)."""

    spec: ClassVar[WindowSpec]
    tables: ClassVar[dict[str, str]] = {"win": DISJOINT, "streams": DISJOINT}

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        spec = self.spec
        types, where, time_f = spec.types, spec.where, spec.time_field
        key_of = key_getter(spec.key)
        wins, streams = self.t["win"], self.t["streams"]
        dirty_w, dirty_s = self.dirty["win"], self.dirty["streams"]
        ooo, lateness = spec.out_of_orderness_ms, spec.allowed_lateness_ms
        fold = folders(spec)
        (where_f, where_v), = where if len(where) == 1 else ((None, None),)
        for env in envs:
            if env.type not in types:
                continue
            d = env.data
            if where_f is not None:
                if d.get(where_f) != where_v:
                    continue
            elif where and any(d.get(f) != v for f, v in where):
                continue
            st = streams.get(env.stream)
            if st is None:
                st = streams[env.stream] = [NO_WATERMARK, 0, 0, 0]
            t = d[time_f]
            wm = st[MAX_AT] - ooo if st[MAX_AT] != NO_WATERMARK else NO_WATERMARK
            st[EVENTS] += 1
            if t > st[MAX_AT]:
                st[MAX_AT] = t
            dirty_s.add(env.stream)
            key = key_of(d)
            mark = [t, env.stream, env.version]
            if spec.kind == SESSION:
                end = t + spec.gap_ms
                if end + lateness <= wm:
                    st[DROPPED] += 1
                    continue
                st[LATE] += end <= wm
                self._session_add(wins, key, t, end, mark, d)
            else:
                size = spec.size_ms
                row = None
                for start in spec.starts(t):
                    end = start + size
                    if end + lateness <= wm:
                        st[DROPPED] += 1
                        continue
                    st[LATE] += end <= wm
                    if row is None:
                        row = wins.get(key)
                        if row is None:
                            row = wins[key] = {}
                    w = row.get(str(start))
                    if w is None:
                        w = row[str(start)] = new_state(spec, start, end)
                    for f in fold:
                        f(w, mark, d)
                if row is None:
                    continue
            dirty_w.add(key)

    def _session_add(self, wins: dict, key: str, t: int, end: int, mark: list, d: dict) -> None:
        spec = self.spec
        row = wins.get(key)
        if row is None:
            row = wins[key] = {}
        w = new_state(spec, t, end)
        add_event(spec, w, mark, d)
        for start_key in [k for k, o in row.items() if o["start"] <= end and t <= o["end"]]:
            merge_states(spec, w, row.pop(start_key))
        row[str(w["start"])] = w

    def merge(self, other: View) -> None:
        """Fold another part: windows of a key seen by both parts are merged, not compared."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        spec, mine = self.spec, self.t["win"]
        for stream, st in other.t["streams"].items():
            self.t["streams"][stream] = list(st)
        for key, row in other.t["win"].items():
            target = mine.setdefault(key, {})
            for w in row.values():
                w = {k: (list(v) if isinstance(v, list) else v) for k, v in w.items()}
                if spec.kind == SESSION:
                    for k in [k for k, o in target.items()
                              if o["start"] <= w["end"] and w["start"] <= o["end"]]:
                        merge_states(spec, w, target.pop(k))
                    target[str(w["start"])] = w
                elif str(w["start"]) in target:
                    merge_states(spec, target[str(w["start"])], w)
                else:
                    target[str(w["start"])] = w

    # -- reading ---------------------------------------------------------------------------

    def windows(self, key: str) -> list[dict[str, Any]]:
        """A key's windows, by start, as `shown`."""
        row = self.t["win"].get(key, {})
        return [shown(self.spec, w) for w in sorted(row.values(), key=lambda w: w["start"])]

    def totals(self) -> dict[str, Any]:
        sts = self.t["streams"].values()
        marks = [st[MAX_AT] - self.spec.out_of_orderness_ms for st in sts]
        return {"events": sum(st[EVENTS] for st in sts), "late": sum(st[LATE] for st in sts),
                "dropped": sum(st[DROPPED] for st in sts), "keys": len(self.t["win"]),
                "windows": sum(len(r) for r in self.t["win"].values()),
                "watermark": min(marks) if marks else None}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec.to_json(), **self.totals(),
                "streams": {s: {"latest_at": st[MAX_AT], "events": st[EVENTS], "late": st[LATE],
                                "dropped": st[DROPPED]}
                            for s, st in sorted(self.t["streams"].items())},
                "keys_windows": {k: self.windows(k) for k in sorted(self.t["win"])}}


def key_getter(key: str) -> Any:
    """The function giving an event payload's window key under `key` ("a" or "a+b")."""
    fields = key.split("+")
    if len(fields) == 1:
        return lambda d: str(d.get(key))
    return lambda d: "|".join(str(d.get(f)) for f in fields)


def window_view(name: str, spec: WindowSpec) -> type[WindowView]:
    """A view class folding `spec`'s windows under `name`."""
    return type(f"WindowView_{name}", (WindowView,), {"name": name, "spec": spec})
