"""The experiment decider: an A/B test as data, and the deterministic assignment to it.

An experiment names its variants with integer weights (`control` names the one the
others are compared with), a `salt`, the conversion it targets (`order_paid` or `order_placed`,
as the user's session records it), and its window `[start, end)` in ms. Defining it is
an event (`ExperimentDefined`); defining it again with the same terms decides nothing,
with other terms it is refused (`ExperimentExists`): an experiment's terms never move
once users may have seen it.

`assign(user, salt, variants)` is the assignment every caller uses: BLAKE2b of
`salt + ":" + user` read as an unsigned 64-bit integer, modulo the sum of the weights,
picks the variant whose cumulative weight first exceeds it. It depends on nothing but its
arguments, so every front end, the simulator and an auditor agree on it.

Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from operator import attrgetter

from saleday.actors.decider import Decider, InvalidCommand, Rejection
from saleday.actors.fields import Intake
from saleday.events.registry import event_type

CONVERSIONS = ("order_paid", "order_placed")
MAX_VARIANTS = 16
Variants = tuple[tuple[str, int], ...]
"""`((name, weight), ...)`: weights are positive ints, names unique."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DefineExperiment:
    """Define `experiment`: variants with weights, its salt, conversion and window."""

    experiment: str
    variants: Variants
    control: str
    salt: str
    conversion: str
    start: int
    end: int
    now: int
    planned_per_variant: int = 0
    """Exposures per variant the test was sized for (0: read it only once it ended)."""


@event_type("experiments.experiment_defined")
@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentDefined:
    """`experiment` runs from `start` to `end` over these variants (weights), `control` first."""

    experiment: str
    variants: Variants
    control: str
    salt: str
    conversion: str
    start: int
    end: int
    at: int
    planned_per_variant: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentExists(Rejection):
    """`experiment` is defined already with other terms."""

    experiment: str


ExperimentState = ExperimentDefined | None
"""The definition, or None before it."""

_INTAKE = Intake("experiment", (DefineExperiment,), entity="experiment",
                 non_negative=("planned_per_variant",))


def assign(user: str, salt: str, variants: Variants) -> str:
    """The variant `user` sees: a hash of salt and user, spread over the weights."""
    total = sum(w for _, w in variants)
    h = int.from_bytes(hashlib.blake2b(f"{salt}:{user}".encode(), digest_size=8).digest(), "big")
    point = h % total
    for name, weight in variants:
        point -= weight
        if point < 0:
            return name
    raise AssertionError("unreachable: the weights add up to total")  # pragma: no cover


def problem(c: DefineExperiment) -> str | None:
    """What is wrong with a definition's terms, in words (None: nothing)."""
    v = c.variants
    if type(v) not in (tuple, list) or not 2 <= len(v) <= MAX_VARIANTS:
        return f"an experiment has 2 to {MAX_VARIANTS} variants, not {v!r}"
    for item in v:
        if (type(item) not in (tuple, list) or len(item) != 2 or type(item[0]) is not str
                or not item[0] or type(item[1]) is not int or not 0 < item[1] <= 1_000_000):
            return f"a variant is (name, weight 1..1000000), not {item!r}"
    names = [n for n, _ in v]
    if len(set(names)) != len(names):
        return f"variant names must be unique, not {names}"
    if c.control not in names:
        return f"the control {c.control!r} is not one of the variants {names}"
    if c.conversion not in CONVERSIONS:
        return f"conversion must be one of {CONVERSIONS}, not {c.conversion!r}"
    if not c.start < c.end:
        return f"an experiment starts before it ends, not [{c.start}, {c.end})"
    return None


def decide(command: DefineExperiment, state: ExperimentState) -> list[ExperimentDefined] | Rejection:
    """The experiment defined, unless its terms are malformed or it exists with others."""
    refused = _INTAKE.refusal(command, command.experiment if state is None else state.experiment)
    if refused is not None:
        return refused
    if not isinstance(command, DefineExperiment):
        return _INTAKE.not_taken(command)
    bad = problem(command)
    if bad is not None:
        return InvalidCommand(reason=bad)
    event = ExperimentDefined(
        experiment=command.experiment, variants=tuple((n, w) for n, w in command.variants),
        control=command.control, salt=command.salt, conversion=command.conversion,
        start=command.start, end=command.end, at=command.now,
        planned_per_variant=command.planned_per_variant)
    if state is not None:
        same = _terms(state) == _terms(event)
        return [] if same else ExperimentExists(experiment=command.experiment)
    return [event]


def evolve(state: ExperimentState, event: ExperimentDefined) -> ExperimentState:
    """The definition (variants as tuples, however the log decoded them)."""
    return ExperimentDefined(
        experiment=event.experiment, variants=tuple((n, w) for n, w in event.variants),
        control=event.control, salt=event.salt, conversion=event.conversion,
        start=event.start, end=event.end, at=event.at,
        planned_per_variant=event.planned_per_variant)


def _terms(e: ExperimentDefined) -> tuple:
    return (e.variants, e.control, e.salt, e.conversion, e.start, e.end, e.planned_per_variant)


experiment_decider: Decider[DefineExperiment, ExperimentDefined, ExperimentState] = Decider(
    kind="experiment", initial=lambda experiment: None, decide=decide, evolve=evolve,
    entity_of=attrgetter("experiment"), commands=(DefineExperiment,),
    events=(ExperimentDefined,))
