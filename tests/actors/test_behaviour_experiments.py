"""Behaviour and exposures in the session decider, and the experiment decider with its
deterministic assignment."""

from __future__ import annotations

import pickle
from collections import Counter

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.experiment import (
    DefineExperiment,
    ExperimentDefined,
    ExperimentExists,
    assign,
    experiment_decider,
)
from saleday.actors.session import (
    AssignmentChanged,
    BehaviourRecorded,
    ExposureRecorded,
    RecordBehaviour,
    RecordExposure,
    session_decider,
)
from tests.actors.given import given

NOW = 10_000


def view(at: int = NOW - 500, action: str = "view") -> RecordBehaviour:
    return RecordBehaviour(user="alice", action=action, sku="P1", category="C3", at=at, now=NOW)


def test_a_product_view_is_recorded_with_its_event_time():
    """A view that happened before it arrived is one event carrying the client's time."""
    given(session_decider).when(view()).then(
        BehaviourRecorded(user="alice", action="view", sku="P1", category="C3", at=NOW - 500))


def test_behaviour_from_the_future_or_of_an_unknown_action_is_malformed():
    """A behaviour after `now`, or an action other than view/cart/fav, is refused."""
    given(session_decider).when(view(at=NOW + 1)).then_rejected(InvalidCommand)
    given(session_decider).when(view(action="buy")).then_rejected(InvalidCommand)


def test_the_session_counts_behaviour_and_pickles_with_it():
    """Recorded behaviour is counted in the session's slice, which survives a pickle."""
    t = given(session_decider, *given(session_decider).when(view()).events,
              *given(session_decider).when(view(action="cart")).events)
    assert t.state.behaviour == 2
    assert pickle.loads(pickle.dumps(t.state)) == t.state


def expose(variant: str = "countdown") -> RecordExposure:
    return RecordExposure(user="alice", experiment="countdown-1111", variant=variant, now=NOW)


def exposed(variant: str = "countdown") -> ExposureRecorded:
    return ExposureRecorded(user="alice", experiment="countdown-1111", variant=variant, at=NOW)


def test_an_exposure_is_recorded_once_and_a_moved_assignment_is_refused():
    """The first exposure is an event, the same again nothing, another variant a refusal."""
    given(session_decider).when(expose()).then(exposed())
    given(session_decider, exposed()).when(expose()).then()
    given(session_decider, exposed()).when(expose("static")).then_rejected(
        AssignmentChanged, recorded="countdown", requested="static")


def define(**overrides) -> DefineExperiment:
    fields = dict(experiment="countdown-1111", variants=(("static", 1), ("countdown", 1)),
                  control="static", salt="s1", conversion="order_paid", start=0, end=100,
                  now=NOW)
    return DefineExperiment(**(fields | overrides))


def defined() -> ExperimentDefined:
    return ExperimentDefined(experiment="countdown-1111", variants=(("static", 1), ("countdown", 1)),
                             control="static", salt="s1", conversion="order_paid", start=0,
                             end=100, at=NOW)


def test_an_experiment_is_defined_once_and_its_terms_never_move():
    """Defining an experiment is an event; the same terms again nothing; others a refusal."""
    given(experiment_decider).when(define()).then(defined())
    given(experiment_decider, defined()).when(define(now=NOW + 5)).then()
    given(experiment_decider, defined()).when(define(salt="s2")).then_rejected(
        ExperimentExists, experiment="countdown-1111")


@pytest.mark.parametrize("bad", [dict(variants=(("a", 1),)), dict(variants=(("a", 1), ("a", 2))),
                                 dict(variants=(("a", 0), ("b", 1))), dict(control="nope"),
                                 dict(conversion="clicked"), dict(start=100, end=100),
                                 dict(salt="")])
def test_a_malformed_experiment_is_refused(bad):
    """One variant, duplicate names, a zero weight, an unknown control or conversion, an
    empty window or salt are refused."""
    given(experiment_decider).when(define(**bad)).then_rejected(InvalidCommand)


def test_assignment_is_deterministic_and_follows_the_weights():
    """The same user and salt always get the same variant; over many users the shares
    follow the weights; another salt reshuffles users."""
    variants = (("a", 1), ("b", 3))
    users = [f"u{i}" for i in range(20_000)]
    first = [assign(u, "salt", variants) for u in users]
    assert first == [assign(u, "salt", variants) for u in users]
    share_b = Counter(first)["b"] / len(users)
    assert 0.74 < share_b < 0.76
    other = [assign(u, "other", variants) for u in users]
    assert sum(x != y for x, y in zip(first, other)) > 5_000
