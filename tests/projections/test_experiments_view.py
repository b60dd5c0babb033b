"""The experiments view: who counts as exposed and converted, when a result may be read,
a broken assignment flagged, and the same view whatever the order of streams."""

from __future__ import annotations

import random

from saleday.actors.experiment import assign
from saleday.events.envelope import Envelope
from saleday.projections.views.experiments import ExperimentsView

START, END = 1_000_000, 2_000_000
VARIANTS = [["static", 1], ["countdown", 1]]


class Log:
    """Envelopes per stream, versions counted."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Envelope]] = {}

    def add(self, stream: str, type_: str, recorded_at: int, **data) -> None:
        envs = self.streams.setdefault(stream, [])
        envs.append(Envelope(stream, len(envs) + 1, type_, 1, recorded_at, f"c{stream}{len(envs)}",
                             "", "", data, b"", b""))

    def define(self, at: int = START - 10, planned: int = 0) -> None:
        self.add("experiment-000", "experiments.experiment_defined", at, experiment="cd",
                 variants=VARIANTS, control="static", salt="s", conversion="order_paid",
                 start=START, end=END, at=at, planned_per_variant=planned)

    def expose(self, user: str, variant: str, at: int) -> None:
        self.add(_stream(user), "sessions.exposure_recorded", at, user=user, experiment="cd",
                 variant=variant, at=at)

    def order(self, user: str, status: str, at: int) -> None:
        self.add(_stream(user), "sessions.order_status_changed", at, user=user, order_id=f"o-{user}",
                 status=status, amount_cents=100, at=at)

    def folded(self, seed: int = 0) -> ExperimentsView:
        rng = random.Random(seed)
        queues = {s: list(es) for s, es in self.streams.items()}
        view = ExperimentsView()
        while queues:
            s = rng.choice(sorted(queues))
            view.apply(queues[s].pop(0))
            if not queues[s]:
                del queues[s]
        return view


def _stream(user: str) -> str:
    return f"session-00{int(user[1:]) % 3}"


def test_only_exposed_users_converting_after_exposure_and_before_the_end_count():
    """A conversion before the exposure, after the end, or of a user exposed outside the
    window does not count; a paid order after exposure does."""
    log = Log()
    log.define()
    log.order("u1", "paid", START + 5)          # before u1's exposure: not a conversion
    log.expose("u1", "static", START + 10)
    log.expose("u2", "countdown", START + 10)
    log.order("u2", "placed", START + 20)
    log.order("u2", "paid", START + 30)         # counts
    log.expose("u3", "countdown", START + 10)
    log.order("u3", "paid", END + 1)            # after the end
    log.expose("u4", "countdown", END + 5)      # exposed after the end: not in it
    view = log.folded()
    assert view.counts("cd") == {"static": [1, 0], "countdown": [2, 1]}


def many(log: Log, n: int, rate: dict[str, float], *, variant_of=None, at: int = START + 100) -> None:
    rng = random.Random(7)
    for i in range(n):
        user = f"u{i}"
        variant = variant_of(user) if variant_of else assign(user, "s", tuple(map(tuple, VARIANTS)))
        log.expose(user, variant, at)
        if rng.random() < rate[variant]:
            log.order(user, "paid", at + 50)


def test_a_running_experiment_shows_no_verdict_until_it_ends_or_is_sized():
    """Before its end (and short of its planned sample) a result has numbers but no verdict;
    once the log passes the end it is readable and names the winner."""
    log = Log()
    log.define(planned=10**6)
    many(log, 4000, {"static": 0.10, "countdown": 0.16})
    running = log.folded().result("cd")
    assert running["status"] == "running" and not running["readable"]
    assert running["variants"][1]["verdict"] is None and running["variants"][1]["p_value"] < 0.05
    log.add("session-000", "sessions.session_started", END + 1)   # the clock passes the end
    ended = log.folded().result("cd")
    assert ended["status"] == "ended" and ended["readable"]
    assert ended["variants"][1]["verdict"] == "better than control"
    assert ended["variants"][1]["rel_ci"][0] > 0


def test_a_biased_assignment_is_flagged_and_never_read():
    """Exposures 55/45 under 1:1 weights fail the SRM check; the result is not readable."""
    log = Log()
    log.define()
    many(log, 4000, {"static": 0.1, "countdown": 0.1},
         variant_of=lambda u: "static" if random.Random(u).random() < 0.55 else "countdown")
    log.add("session-000", "sessions.session_started", END + 1)
    result = log.folded().result("cd")
    assert result["srm"]["mismatch"] and not result["readable"]
    assert result["variants"][1]["verdict"] is None


def test_the_view_is_the_same_whatever_the_order_of_streams():
    """Folding the streams interleaved differently gives the same digest."""
    log = Log()
    log.define()
    many(log, 300, {"static": 0.2, "countdown": 0.3})
    assert log.folded(1).digest() == log.folded(2).digest()
