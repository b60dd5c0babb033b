"""`quick_init`: the same objects and the same errors as the dataclass's own `__init__`."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import InitVar, dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saleday.events.values import quick_init


def twins(**params):
    """The same frozen slotted dataclass twice: as `dataclasses` writes it, and quick."""

    def make():
        @dataclass(frozen=True, slots=True, **params)
        class Order:
            order_id: str
            qty: int
            lines: tuple[str, ...] = ()
            tags: list[str] = field(default_factory=list)

        return Order

    return make(), quick_init(make())


@given(order_id=st.text(max_size=5), qty=st.integers(), lines=st.lists(st.text(max_size=3)),
       tags=st.none() | st.lists(st.text(max_size=3)))
def test_a_quick_class_builds_the_objects_the_dataclass_builds(order_id, qty, lines, tags):
    """Given any values, by keyword or by position, with defaults and factories, the quick
    __init__ makes an object equal, field by field, to the dataclass's own."""
    plain, quick = twins()
    extra = {} if tags is None else {"tags": tags}
    a = plain(order_id, qty, tuple(lines), **extra)
    b = quick(order_id, qty, tuple(lines), **extra)
    assert dataclasses.astuple(a) == dataclasses.astuple(b)
    a = plain(qty=qty, order_id=order_id)
    b = quick(qty=qty, order_id=order_id)
    assert dataclasses.astuple(a) == dataclasses.astuple(b)
    assert b.tags == [] and b.tags is not quick(order_id, qty).tags   # a fresh list each time


@pytest.mark.parametrize("call", [
    lambda cls: cls(),                                   # missing arguments
    lambda cls: cls("o", 1, (), [], "one too many"),
    lambda cls: cls("o", 1, colour="red"),               # an unknown field
    lambda cls: cls("o", order_id="o", qty=1),           # a field given twice
])
def test_a_quick_class_refuses_what_the_dataclass_refuses(call):
    plain, quick = twins()
    with pytest.raises(TypeError):
        call(plain)
    with pytest.raises(TypeError):
        call(quick)


def test_keyword_only_fields_stay_keyword_only():
    plain, quick = twins(kw_only=True)
    assert quick(order_id="o", qty=2) == quick(qty=2, order_id="o")
    assert dataclasses.astuple(quick(order_id="o", qty=2)) == dataclasses.astuple(
        plain(order_id="o", qty=2))
    with pytest.raises(TypeError):
        quick("o", 2)


def test_a_quick_object_is_still_frozen_hashable_and_picklable():
    """A quick class's objects refuse assignment, hash, print and pickle as before."""
    from saleday.events import NewEvent

    event = NewEvent(type="inventory.stock_added", data={"qty": 1}, command_id="c-1",
                     recorded_at=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.recorded_at = 6
    assert pickle.loads(pickle.dumps(event)) == event
    assert repr(event) == ("NewEvent(type='inventory.stock_added', data={'qty': 1}, "
                           "command_id='c-1', recorded_at=5, schema_version=1, "
                           "correlation_id='', causation_id='')")
    _, quick = twins()
    assert hash(quick("o", 1, ("a",), ())) == hash(quick("o", 1, ("a",), ()))


def test_classes_it_cannot_speed_up_keep_their_own_init():
    """A `__post_init__`, an `InitVar`, a field left out of `__init__`, a class of its own
    `__init__`, a class not frozen or not slotted: each is returned as it was."""

    @dataclass(frozen=True, slots=True)
    class Checked:
        qty: int

        def __post_init__(self):
            if self.qty < 0:
                raise ValueError("negative")

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        qty: int
        scale: InitVar[int] = 1

    @dataclass(frozen=True, slots=True)
    class Derived:
        qty: int
        double: int = field(init=False, default=0)

    @dataclass(frozen=True, slots=True, init=False)
    class OwnInit:
        qty: int

        def __init__(self, text: str) -> None:
            object.__setattr__(self, "qty", int(text))

    @dataclass(slots=True)
    class Mutable:
        qty: int

    @dataclass(frozen=True)
    class Unslotted:
        qty: int

    for cls in (Checked, WithInitVar, Derived, OwnInit, Mutable, Unslotted):
        before = cls.__init__
        assert quick_init(cls) is cls and cls.__init__ is before, cls.__name__
    with pytest.raises(ValueError):
        Checked(-1)
    assert OwnInit("3").qty == 3


def test_giving_a_class_a_quick_init_twice_changes_nothing():
    _, quick = twins()
    first = quick.__init__
    assert quick_init(quick).__init__ is first


def test_the_hot_path_classes_are_quick():
    """Every registered event, every decider's commands and refusals, the shard's requests
    and replies and the log's new events are built through a quick __init__."""
    from saleday.actors.host import Accepted, Request
    from saleday.actors.kinds import deciders
    from saleday.actors.sku import SoldOut
    from saleday.actors.sku.words import LimitExceeded
    from saleday.events import NewEvent

    classes = [Request, Accepted, NewEvent, SoldOut, LimitExceeded]
    for decider in deciders().values():
        classes += [*decider.commands, *decider.events]
    slow = [c.__name__ for c in classes
            if not getattr(c.__init__, "__saleday_quick_init__", False)
            and "__create_fn__" in c.__init__.__code__.co_qualname]
    assert not slow


def test_fields_named_like_the_init_s_own_names_are_fine():
    """A field called `self` (which dataclasses allows) is a parameter like any other."""

    @dataclass(frozen=True, slots=True)
    class Odd:
        self: int
        cls: str = "c"

    quick_init(Odd)
    assert getattr(Odd.__init__, "__saleday_quick_init__", False)
    assert (Odd(1).self, Odd(self=2, cls="d").cls) == (1, "d")
