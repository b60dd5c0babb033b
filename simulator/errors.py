"""The simulator's errors: a run that cannot start or finish, said in words."""

from __future__ import annotations


class SimulationError(RuntimeError):
    """A run that cannot start or finish, said in words (bad store, setup refused, ...)."""
