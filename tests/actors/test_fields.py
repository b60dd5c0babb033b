"""The checks every decider makes of a command before its rules (`Intake`), and the
int64 test they share."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saleday.actors.decider import InvalidCommand
from saleday.actors.fields import INT64_MAX, INT64_MIN, FieldChecks, Intake, is_int64


@dataclass(frozen=True, slots=True, kw_only=True)
class Ship:
    order_id: str
    note: str
    qty: int


INTAKE = Intake("order", (Ship,), entity="order_id", noun="order", optional_strs=("note",),
                non_negative=("qty",))


def test_a_well_formed_command_for_this_entity_passes():
    """Nothing is wrong with a command of ours, well formed, for the entity it is sent to."""
    assert INTAKE.refusal(Ship(order_id="o1", note="", qty=0), "o1") is None


def test_a_malformed_field_is_refused_first():
    """A bad field is named even when the command is also for another entity."""
    assert INTAKE.refusal(Ship(order_id="o2", note="", qty=-1), "o1") == InvalidCommand(
        reason="Ship.qty must be >= 0, not -1")


def test_a_command_for_another_entity_is_refused_in_the_entitys_words():
    """The refusal names the entity by its noun, not by its field."""
    assert INTAKE.refusal(Ship(order_id="o2", note="x", qty=1), "o1") == InvalidCommand(
        reason="Ship for order 'o2' sent to order 'o1'")


def test_a_class_not_ours_passes_the_intake_and_is_not_taken():
    """The intake leaves a foreign class to the end of `decide`, which refuses it by kind."""
    assert INTAKE.refusal("ship it", "o1") is None
    assert INTAKE.not_taken("ship it") == InvalidCommand(
        reason="the order decider does not take str")


@pytest.mark.parametrize(("value", "fits"), [
    (0, True), (INT64_MAX, True), (INT64_MIN, True), (INT64_MAX + 1, False),
    (INT64_MIN - 1, False), (True, False), (1.0, False), ("1", False), (None, False)])
def test_is_int64(value, fits):
    """Only a real int (not a bool) within the log's 64-bit range is an int64."""
    assert is_int64(value) is fits


@pytest.mark.parametrize("changes", [{}, {"qty": 5}, {"note": "gift", "qty": 0},
                                     {"order_id": "o2", "note": "", "qty": 9}])
def test_fast_replace_is_dataclasses_replace(changes):
    """`fast_replace` gives what `dataclasses.replace` gives, and leaves the original as it was."""
    from dataclasses import replace

    from saleday.actors.fields import fast_replace

    before = Ship(order_id="o1", note="n", qty=1)
    after = fast_replace(Ship)(before, **changes)
    assert after == replace(before, **changes)
    assert type(after) is Ship and before == Ship(order_id="o1", note="n", qty=1)



@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    user: str
    reason: str
    points: int
    seq: int
    now: int


def _first_bad_field(command: Grant) -> str | None:
    """The first field the rules find wrong, walking the fields one by one (the reference)."""
    for name in ("user", "reason", "points", "seq", "now"):
        value = getattr(command, name)
        if name in ("user", "reason"):
            bad = type(value) is not str or (name == "user" and not value)
        elif name == "seq":   # unsigned
            bad = type(value) is not int or not 0 <= value <= 2**64 - 1
        else:                 # non-negative
            bad = type(value) is not int or not 0 <= value <= INT64_MAX
        if bad:
            return name
    return None


_ANY_VALUE = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([0, -1, 1, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 2**64 - 1,
                     2**64, True, False, 1.0, None, "", "u1", b"u1"]),
    st.text(max_size=3))


@settings(max_examples=400, deadline=None)
@given(user=_ANY_VALUE, reason=_ANY_VALUE, points=_ANY_VALUE, seq=_ANY_VALUE, now=_ANY_VALUE)
def test_the_written_out_checks_agree_with_the_field_by_field_walk(**values):
    """For any field values, the per-class check passes a command exactly when walking its
    fields finds nothing wrong, and otherwise names the first bad field."""
    checks = FieldChecks((Grant,), optional_strs=("reason",), non_negative=("points", "now"),
                         unsigned=("seq",))
    command = Grant(**values)
    problem, bad = checks.problem(command), _first_bad_field(command)
    if bad is None:
        assert problem is None, values
    else:
        assert problem is not None and problem.startswith(f"Grant.{bad} must be "), (values, problem)
