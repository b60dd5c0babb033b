"""Composing small deciders over one entity: routing by class, one slice per part, one
intake, the timed part's timers."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import pytest

from saleday.actors.combine import combine
from saleday.actors.decider import Decider, InvalidCommand
from saleday.actors.fields import Intake
from tests.actors.given import given


@dataclass(frozen=True, slots=True, kw_only=True)
class Add:
    box: str
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Added:
    box: str
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Arm:
    box: str
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Armed:
    box: str
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    box: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Rang:
    box: str
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    box: str
    total: int
    alarm: tuple[int, ...]


def _ring(alarm, command):
    if command.now not in alarm:
        return []
    return [Rang(box=command.box, at=command.now)]


counter = Decider(
    kind="box.counter", initial=lambda box: 0, entity_of=attrgetter("box"),
    decide=lambda c, total: [Added(box=c.box, n=c.n)] if c.n else [],
    evolve=lambda total, e: total + e.n, commands=(Add,), events=(Added,))
alarm = Decider(
    kind="box.alarm", initial=lambda box: (), entity_of=attrgetter("box"),
    decide=lambda c, armed: ([Armed(box=c.box, at=c.at)] if type(c) is Arm else _ring(armed, c)),
    evolve=lambda armed, e: (*armed, e.at) if type(e) is Armed else armed[1:],
    commands=(Arm, Ring), events=(Armed, Rang),
    deadline_of=lambda e: e.at if type(e) is Armed else None,
    next_deadline=lambda armed: min(armed, default=None), expire=lambda box, now: Ring(box=box,
                                                                                        now=now))
INTAKE = Intake("box", (Add, Arm, Ring), entity="box", non_negative=("n",))
box = combine("box", Box, entity="box", intake=INTAKE, parts={"total": counter, "alarm": alarm})


def test_a_command_goes_to_the_part_that_takes_it():
    """Each command is decided by the one part that takes its class, against its slice."""
    given(box).when(Add(box="b", n=2)).then(Added(box="b", n=2))
    given(box, Armed(box="b", at=5)).when(Ring(box="b", now=5)).then(Rang(box="b", at=5))
    given(box).when(Ring(box="b", now=5)).then()


def test_an_event_folds_into_its_own_slice_only():
    """An event changes its part's slice; every other slice stays the very same value."""
    before = given(box, Armed(box="b", at=5)).state
    after = box.evolve(before, Added(box="b", n=3))
    assert after == Box(box="b", total=3, alarm=(5,))
    assert after.alarm is before.alarm


def test_the_intake_runs_before_any_part():
    """A malformed command, or one for another entity, is refused before a part sees it."""
    given(box).when(Add(box="b", n=-1)).then_rejected(InvalidCommand,
                                                      reason="Add.n must be >= 0, not -1")
    result = box.decide(Add(box="other", n=1), box.initial("b"))
    assert result == InvalidCommand(reason="Add for box 'other' sent to box 'b'")


def test_a_class_no_part_takes_is_not_taken():
    """A command of no part's class is refused in the kind's own words."""
    assert box.decide("ring", box.initial("b")) == InvalidCommand(
        reason="the box decider does not take str")


def test_an_unknown_event_is_not_folded():
    """Folding an event class no part knows is a bug, and says which."""
    with pytest.raises(AssertionError, match="does not fold str"):
        box.evolve(box.initial("b"), "rang")


def test_the_timers_are_the_timed_parts():
    """Deadlines come from the timed part's events and slice; other parts' events set none."""
    state = given(box, Armed(box="b", at=9), Armed(box="b", at=5)).state
    assert box.next_deadline(state) == 5
    assert box.deadline_of(Armed(box="b", at=9)) == 9
    assert box.deadline_of(Added(box="b", n=1)) is None
    assert box.expire("b", 5) == Ring(box="b", now=5)


def test_the_kind_lists_every_parts_commands_and_events():
    """The combined decider takes and folds the union of its parts' classes."""
    assert set(box.commands) == {Add, Arm, Ring}
    assert set(box.events) == {Added, Armed, Rang}
    assert box.initial("b") == Box(box="b", total=0, alarm=())


def test_two_parts_cannot_take_one_class():
    """A command class taken by two parts is refused when combining."""
    with pytest.raises(ValueError, match="Add is taken by two parts"):
        combine("box", Box, entity="box", intake=INTAKE, parts={"total": counter,
                                                                 "alarm": counter})


def test_the_state_has_the_entity_and_one_field_per_part():
    """A state class whose fields are not the entity id and the parts is refused."""
    with pytest.raises(ValueError, match="must have the fields"):
        combine("box", Box, entity="box", intake=INTAKE, parts={"alarm": alarm, "total": counter})


def test_only_one_part_keeps_timers():
    """Two timed parts would need two expiry commands: refused when combining."""
    other = Decider(kind="x", initial=lambda b: 0, entity_of=attrgetter("box"),
                    decide=lambda c, s: [], evolve=lambda s, e: s, commands=(Add,),
                    events=(Added,), expire=lambda box, now: Ring(box=box, now=now))
    with pytest.raises(ValueError, match="only one part"):
        combine("box", Box, entity="box", intake=INTAKE, parts={"total": other, "alarm": alarm})


def test_the_intake_must_cover_the_parts_commands():
    """An intake that does not check exactly the parts' commands is refused."""
    with pytest.raises(ValueError, match="intake"):
        combine("box", Box, entity="box", intake=Intake("box", (Add,), entity="box"),
                parts={"total": counter, "alarm": alarm})
