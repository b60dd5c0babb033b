"""A user's experiment exposures: the variant each experiment showed the user, once.

The variant is assigned by whoever shows it (deterministically, `actors/experiment.py` `assign`:
a hash of the user and the experiment's salt), and recorded here the first time it is
shown: one `ExposureRecorded` per user per experiment. Showing the same variant again
records nothing; a different variant for an experiment already recorded is refused
(`AssignmentChanged`), since an assignment that moves breaks the experiment.

A part of the session decider (`actors/session/__init__.py`), which checks the command's
fields and user first. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import immutables

from saleday.actors.decider import Decider, Rejection
from saleday.events.registry import event_type

Exposures = immutables.Map[str, str]
"""The experiments the user was exposed to: experiment -> variant."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordExposure:
    """The user was shown `variant` of `experiment`."""

    user: str
    experiment: str
    variant: str
    now: int


@event_type("sessions.exposure_recorded")
@dataclass(frozen=True, slots=True, kw_only=True)
class ExposureRecorded:
    """The user was first shown `variant` of `experiment` at `at`."""

    user: str
    experiment: str
    variant: str
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentChanged(Rejection):
    """The user saw `recorded` of `experiment` before; `requested` is another variant."""

    user: str
    experiment: str
    recorded: str
    requested: str


EMPTY: Exposures = immutables.Map()


def decide(command: RecordExposure, state: Exposures) -> list[ExposureRecorded] | Rejection:
    """The first exposure recorded; a repeat records nothing; another variant is refused."""
    recorded = state.get(command.experiment)
    if recorded == command.variant:
        return []
    if recorded is not None:
        return AssignmentChanged(user=command.user, experiment=command.experiment,
                                 recorded=recorded, requested=command.variant)
    return [ExposureRecorded(user=command.user, experiment=command.experiment,
                             variant=command.variant, at=command.now)]


def evolve(state: Exposures, event: ExposureRecorded) -> Exposures:
    """The exposures after `event`."""
    return state.set(event.experiment, event.variant)


exposure_decider: Decider[RecordExposure, ExposureRecorded, Exposures] = Decider(
    kind="session.exposure", initial=lambda user: EMPTY, decide=decide, evolve=evolve,
    entity_of=attrgetter("user"), commands=(RecordExposure,), events=(ExposureRecorded,))
