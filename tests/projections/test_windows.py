"""Event-time windows: the incremental view agrees with a brute-force computation over
random logs with out-of-order and late events, whatever the interleaving of streams, the
split into parts or the checkpoints between batches; rebuilt equals live."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saleday.events import NewEvent, open_store
from saleday.events.envelope import Envelope
from saleday.projections.checkpoint import open_checkpoints
from saleday.projections.runner import Partition, Projection
from saleday.projections.view import merged
from saleday.projections.views.windows import BROWSE_5M, Browse5m, Trail30m, window_view
from saleday.projections.windows import (
    SESSION,
    SLIDING,
    TUMBLING,
    Agg,
    WindowSpec,
    WindowSpecError,
)

TYPE = "sessions.behaviour_recorded"
AGGS = (Agg("n", "count"), Agg("skus", "distinct", "sku"), Agg("qty", "sum", "qty"),
        Agg("last_cat", "last", "category"), Agg("trail", "trail", "sku", limit=3))
SPECS = {
    "tumbling": WindowSpec(kind=TUMBLING, size_ms=100, out_of_orderness_ms=20,
                           allowed_lateness_ms=30, aggs=AGGS),
    "sliding": WindowSpec(kind=SLIDING, size_ms=120, hop_ms=40, out_of_orderness_ms=10,
                          allowed_lateness_ms=25, aggs=AGGS),
    "session": WindowSpec(kind=SESSION, gap_ms=50, out_of_orderness_ms=15,
                          allowed_lateness_ms=20, aggs=AGGS),
    "by_category": WindowSpec(kind=TUMBLING, size_ms=150, key="category", where=(("action", "view"),),
                              out_of_orderness_ms=0, allowed_lateness_ms=10, aggs=AGGS),
    "by_user_and_category": WindowSpec(kind=SLIDING, size_ms=90, hop_ms=30, key="user+category",
                                       out_of_orderness_ms=5, allowed_lateness_ms=5, aggs=AGGS),
}


def env(stream: str, version: int, data: dict, type_: str = TYPE) -> Envelope:
    return Envelope(stream, version, type_, 1, data["at"], f"c{stream}{version}", "", "", data,
                    b"", b"")


@st.composite
def logs(draw):
    """Per stream, events in log order whose event times wander back (out of order, some
    far enough to be late or dropped)."""
    out = {}
    for s in range(draw(st.integers(1, 3))):
        stream, t, envs = f"session-{s:03d}", draw(st.integers(-50, 50)), []
        for v in range(1, draw(st.integers(0, 40)) + 1):
            t += draw(st.integers(0, 40))
            back = draw(st.sampled_from([0, 0, 0, 5, 15, 40, 90, 200]))
            data = {"user": f"u{draw(st.integers(0, 3))}", "sku": f"p{draw(st.integers(0, 5))}",
                    "category": f"c{draw(st.integers(0, 2))}", "qty": draw(st.integers(0, 4)),
                    "action": draw(st.sampled_from(["view", "view", "cart"])), "at": t - back}
            envs.append(env(stream, v, data, draw(st.sampled_from([TYPE] * 5 + ["other.type"]))))
        out[stream] = envs
    return out


def brute(spec: WindowSpec, log: dict[str, list[Envelope]]) -> dict:
    """The windows by definition: each stream's watermark decides what it may add, then
    every window is computed from scratch from the events it took."""
    taken: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    totals = {"events": 0, "late": 0, "dropped": 0}
    for stream in sorted(log):
        latest = None
        for e in log[stream]:
            d = e.data
            if e.type not in spec.types or any(d.get(f) != v for f, v in spec.where):
                continue
            t = d[spec.time_field]
            wm = None if latest is None else latest - spec.out_of_orderness_ms
            totals["events"] += 1
            latest = t if latest is None else max(latest, t)
            if spec.kind == SESSION:
                candidates = [(t, t + spec.gap_ms)]
            else:
                hop = spec.hop_ms if spec.kind == SLIDING else spec.size_ms
                candidates = [(k * hop, k * hop + spec.size_ms)
                              for k in range((t - spec.size_ms) // hop - 1, t // hop + 2)
                              if k * hop <= t < k * hop + spec.size_ms]
            for start, end in candidates:
                if wm is not None and end + spec.allowed_lateness_ms <= wm:
                    totals["dropped"] += 1
                    continue
                totals["late"] += wm is not None and end <= wm
                key = "|".join(str(d[f]) for f in spec.key.split("+"))
                taken[key][start if spec.kind != SESSION else None].append((e, end))
    windows = {}
    for key, by_start in taken.items():
        if spec.kind == SESSION:
            groups, cur = [], None
            for e, end in sorted(by_start[None], key=lambda x: x[0].data["at"]):
                t = e.data["at"]
                if cur is not None and t <= cur[1]:
                    cur[1] = max(cur[1], end)
                    cur[2].append(e)
                else:
                    cur = [t, end, [e]]
                    groups.append(cur)
            rows = [(s, en, es) for s, en, es in groups]
        else:
            rows = [(s, s + spec.size_ms, [e for e, _ in es]) for s, es in sorted(by_start.items())]
        windows[key] = [aggregate(spec, s, en, es) for s, en, es in rows]
    return {"totals": totals, "windows": dict(sorted(windows.items()))}


def aggregate(spec: WindowSpec, start: int, end: int, es: list[Envelope]) -> dict:
    out = {"start": start, "end": end}
    marked = sorted(((e.data["at"], e.stream, e.version), e.data) for e in es)
    for a in spec.aggs:
        if a.op == "count":
            out[a.name] = len(es)
        elif a.op == "sum":
            out[a.name] = sum(e.data[a.field] for e in es)
        elif a.op == "distinct":
            out[a.name] = sorted({e.data[a.field] for e in es})
        elif a.op == "last":
            out[a.name] = marked[-1][1][a.field]
        else:
            out[a.name] = [[m[0], d[a.field]] for m, d in marked[-a.limit:]]
    return out


def interleaved(log: dict[str, list[Envelope]], seed: int) -> list[Envelope]:
    rng, queues, out = random.Random(seed), {s: list(es) for s, es in log.items() if es}, []
    while queues:
        s = rng.choice(sorted(queues))
        out.append(queues[s].pop(0))
        if not queues[s]:
            del queues[s]
    return out


def folded(cls, envs, batch: int = 7):
    view = cls()
    for i in range(0, len(envs), batch):
        view.apply_batch(envs[i:i + batch])
    return view


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=15, deadline=None)
@given(log=logs(), seed=st.integers(0, 10**6))
def test_windows_equal_the_brute_force_computation_in_any_interleaving(name, log, seed):
    """Windows, late and dropped counts equal those computed from scratch, for any mix of
    the streams' events, including out-of-order and late ones."""
    spec = SPECS[name]
    cls = window_view(f"w-{name}", spec)
    view = folded(cls, interleaved(log, seed))
    want = brute(spec, log)
    got = {k: view.windows(k) for k in sorted(view.t["win"])}
    assert got == want["windows"]
    totals = view.totals()
    assert {k: totals[k] for k in ("events", "late", "dropped")} == want["totals"]
    assert view.digest() == folded(cls, interleaved(log, seed + 1), batch=3).digest()


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=8, deadline=None)
@given(log=logs())
def test_split_parts_merge_into_the_single_view(name, log):
    """Folding the streams in two parts and merging them gives the view one part builds."""
    cls = window_view(f"w-{name}", SPECS[name])
    whole = folded(cls, interleaved(log, 1))
    parts = [folded(cls, [e for e in interleaved(log, 2) if Partition(i, 2).owns(e.stream)])
             for i in range(2)]
    assert merged(parts).digest() == whole.digest()


def test_a_late_event_within_lateness_updates_its_window_and_a_later_one_is_dropped():
    """With the watermark past a window, an event within the allowed lateness still lands
    in it (counted late); one beyond it is counted dropped and changes no window."""
    cls = window_view("w", SPECS["tumbling"])  # size 100, out-of-order 20, lateness 30
    view = folded(cls, [env("s", 1, {"user": "u", "sku": "a", "category": "c", "qty": 1, "at": 50}),
                        env("s", 2, {"user": "u", "sku": "b", "category": "c", "qty": 1, "at": 125}),
                        env("s", 3, {"user": "u", "sku": "c", "category": "c", "qty": 1, "at": 90}),
                        env("s", 4, {"user": "u", "sku": "d", "category": "c", "qty": 1, "at": 160}),
                        env("s", 5, {"user": "u", "sku": "e", "category": "c", "qty": 1, "at": 10})])
    first = view.windows("u")[0]
    assert first["skus"] == ["a", "c"]
    assert view.totals()["late"] == 1 and view.totals()["dropped"] == 1


@pytest.mark.parametrize("bad", [dict(kind="hopping", size_ms=1),
                                 dict(kind=TUMBLING, size_ms=0),
                                 dict(kind=SLIDING, size_ms=100, hop_ms=30),
                                 dict(kind=SESSION, gap_ms=0),
                                 dict(kind=TUMBLING, size_ms=5, aggs=(Agg("x", "median", "a"),)),
                                 dict(kind=TUMBLING, size_ms=5, aggs=(Agg("x", "sum"),)),
                                 dict(kind=TUMBLING, size_ms=5, aggs=(Agg("t", "trail", "a"),))])
def test_a_spec_that_cannot_work_is_refused_in_words(bad):
    """Unknown kinds, empty sizes, a hop not dividing the size and bad aggregates are refused."""
    with pytest.raises(WindowSpecError):
        WindowSpec(**bad)


def behaviour(user: str, sku: str, category: str, at: int, i: int) -> NewEvent:
    return NewEvent(type=TYPE, data={"user": user, "action": "view", "sku": sku,
                                     "category": category, "at": at},
                    command_id=f"b{i}", recorded_at=at + 1000)


def test_rebuilt_windows_equal_the_live_ones_checkpointed_batch_by_batch(tmp_path):
    """Windows folded live in small checkpointed batches, restarted in between, equal the
    same windows rebuilt from zero."""
    store = open_store(f"sqlite:///{tmp_path}/events.db")
    cps = open_checkpoints(f"sqlite:///{tmp_path}/projections.db")
    rng = random.Random(5)
    t0, i = 1_762_790_400_000, 0
    heads = {"session-000": 0, "session-001": 0}
    for round_ in range(6):
        for stream in heads:
            events = []
            for _ in range(40):
                i += 1
                at = t0 + i * 7_000 - rng.choice([0, 0, 20_000, 90_000, 400_000])
                events.append(behaviour(f"u{rng.randrange(6)}", f"p{rng.randrange(9)}",
                                        f"c{rng.randrange(3)}", at, i))
            heads[stream] = store.append(stream, events, heads[stream]).last_version
        live = Projection([Browse5m(), Trail30m()], store, cps, batch_size=25)
        live.catch_up()
    assert live.views[0].totals()["dropped"] > 0 and live.views[0].totals()["late"] > 0
    rebuilt = Projection([Browse5m(), Trail30m()], store,
                         open_checkpoints(f"sqlite:///{tmp_path}/other.db"), batch_size=1000)
    rebuilt.catch_up()
    for a, b in zip(live.views, rebuilt.views):
        assert a.digest() == b.digest()
    assert BROWSE_5M.size_ms == 300_000
    store.close()
