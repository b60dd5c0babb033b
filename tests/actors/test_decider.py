"""The decider contract's helpers: compact pickles of states."""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass

import pytest

from saleday.actors.decider import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    a: int
    b: int


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class _Wider:
    a: int
    b: int
    c: int


_Wider.__qualname__ = "Shape"   # what `Shape` became after a change of its fields

def test_a_state_pickles_to_an_equal_state():
    """A compact pickle round trip gives back an equal state."""
    assert pickle.loads(pickle.dumps(Shape(a=1, b=2))) == Shape(a=1, b=2)


def test_a_pickle_of_another_shape_is_refused(monkeypatch):
    """A snapshot taken when the state class had other fields is refused, never loaded
    with its fields shifted."""
    data = pickle.dumps(Shape(a=1, b=2))
    monkeypatch.setattr(sys.modules[__name__], "Shape", _Wider)
    with pytest.raises(ValueError):
        pickle.loads(data)
