"""What every decider does to its commands and its states before any rule, written once.

`Intake` is the start and the end of every `decide`: it refuses a malformed command, or
one addressed to another entity than the state it is decided against, before any business
rule, and it words the refusal of a command class the decider does not take.

`FieldChecks` checks a command's `int` and `str` fields before any business rule: ints
are real ints (not bools) that fit the log's 64-bit integers, strs are strs and, unless
listed as optional, non-empty. The common case is one test per field, written out per
class; only a bad command is walked field by field, to say what is wrong.

`fast_replace(cls)` is `dataclasses.replace` for a frozen slotted state class without
re-running `__init__` (5x faster; `evolve` runs on every event of every replay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields
from operator import attrgetter
from typing import Any, TypeVar

from saleday.actors.decider import InvalidCommand

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1


def is_int64(value: object) -> bool:
    """An int (not a bool) that fits the log's 64-bit integers."""
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


Fields = list[tuple[str, str]]
"""A command class's `int` and `str` fields, in order, with their kind: what is checked."""


def _typed_fields(cls: type) -> Fields:
    return [(f.name, f.type) for f in fields(cls) if f.type in ("int", "str")]


class FieldChecks:
    """Type checks for the int and str fields of a decider's command classes."""

    def __init__(self, commands: Iterable[type], *, optional_strs: Iterable[str] = (),
                 non_negative: Iterable[str] = (), unsigned: Iterable[str] = ()) -> None:
        self.optional_strs = frozenset(optional_strs)
        self.non_negative_names = frozenset(non_negative)
        self.unsigned = frozenset(unsigned)
        self._checks = {cls: self._compile(_typed_fields(cls)) for cls in commands}

    def problem(self, command: Any) -> str | None:
        """What is wrong with `command`'s fields, in words; None if nothing (or not ours)."""
        check = self._checks.get(type(command))
        return None if check is None else check(command)

    def _compile(self, typed: Fields) -> Callable[[Any], str | None]:
        """The common case of `problem` for one class, written out one test per field (as
        `dataclasses` writes `__init__`): every field read once, compared in place; anything
        amiss goes to `_explain`, which says what. (Getters, `map(type, ...)` and min/max
        over the fields cost 2-3x as much, on every command a shard decides.)"""
        tests: list[str] = []
        for i, (name, kind) in enumerate(typed):
            v = f"v{i}"
            tests.append(f"    {v} = command.{name}")
            if kind == "int":
                low, high = ((0, UINT64_MAX) if name in self.unsigned
                             else (0 if name in self.non_negative_names else INT64_MIN,
                                   INT64_MAX))
                tests.append(f"    if type({v}) is not int or not {low} <= {v} <= {high}:"
                             " return explain(command, typed)")
            else:
                test = f"type({v}) is not str"
                if name not in self.optional_strs:
                    test += f" or not {v}"
                tests.append(f"    if {test}: return explain(command, typed)")
        source = "\n".join(["def check(command):", *tests, "    return None"])
        scope: dict[str, Any] = {"explain": self._explain, "typed": typed}
        exec(source, scope)  # noqa: S102 - the class's own field names
        return scope["check"]

    def _explain(self, command: Any, typed: Fields) -> str:
        name = type(command).__name__
        for field, kind in typed:
            value = getattr(command, field)
            if kind == "int":
                if field in self.unsigned:
                    if type(value) is not int or not 0 <= value <= UINT64_MAX:
                        return f"{name}.{field} must be an unsigned 64-bit int, not {value!r}"
                    continue
                if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
                    return f"{name}.{field} must be a 64-bit int, not {value!r}"
                if field in self.non_negative_names and value < 0:
                    return f"{name}.{field} must be >= 0, not {value}"
            else:
                if type(value) is not str:
                    return f"{name}.{field} must be a str, not {value!r}"
                if not value and field not in self.optional_strs:
                    return f"{name}.{field} must be a non-empty str"
        return f"{name} is malformed"  # pragma: no cover - the fast path said something was


class Intake:
    """The checks every decider makes of a command before any business rule.

    `refusal(command, entity_id)` is an `InvalidCommand` for a command of ours whose int
    or str fields are malformed (see `FieldChecks`; the keyword arguments are its), or
    which names another entity (its `entity` field) than the one it is decided against;
    None otherwise, and None for a command class we do not take: `decide` ends its match
    with `not_taken(command)`, which says so.

        refused = _INTAKE.refusal(command, state.sku)
        if refused is not None:
            return refused
        match command:
            ...
            case _:
                return _INTAKE.not_taken(command)
    """

    __slots__ = ("kind", "noun", "commands", "checks", "_entity")

    def __init__(self, kind: str, commands: Iterable[type], *, entity: str,
                 noun: str | None = None, optional_strs: Iterable[str] = (),
                 non_negative: Iterable[str] = (), unsigned: Iterable[str] = ()) -> None:
        self.kind = kind
        """The decider's kind, as it names itself in a refusal ("the sku decider")."""
        self.noun = noun or entity
        """What the entity is called in a refusal ("order" for the field `order_id`)."""
        commands = tuple(commands)
        self.commands = frozenset(commands)
        self.checks = FieldChecks(commands, optional_strs=optional_strs,
                                  non_negative=non_negative, unsigned=unsigned)
        self._entity = attrgetter(entity)

    def refusal(self, command: Any, entity_id: str) -> InvalidCommand | None:
        """What is wrong with `command`'s fields, or that it is for another entity; None
        if nothing is (or the command class is not ours)."""
        problem = self.checks.problem(command)
        if problem is not None:
            return InvalidCommand(reason=problem)
        if type(command) in self.commands and self._entity(command) != entity_id:
            return InvalidCommand(reason=f"{type(command).__name__} for {self.noun} "
                                         f"{self._entity(command)!r} sent to {self.noun} "
                                         f"{entity_id!r}")
        return None

    def not_taken(self, command: Any) -> InvalidCommand:
        """The refusal of a command class this decider does not take."""
        return InvalidCommand(
            reason=f"the {self.kind} decider does not take {type(command).__name__}")


def fast_replace(cls: type[T]) -> Callable[..., T]:
    """A `replace(state, **changes)` for the frozen slotted dataclass `cls`.

    Its body is written out one line per field (as `dataclasses` writes `__init__`): a
    loop over a state's fields costs twice as much, on every event of every replay."""
    names = [f.name for f in fields(cls)]
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__}
    scope.update((f"set_{i}", cls.__dict__[name].__set__) for i, name in enumerate(names))
    source = "\n".join([
        "def replace(state, /, **changes):",
        "    obj = new(cls)",
        *[f"    set_{i}(obj, changes[{name!r}] if {name!r} in changes else state.{name})"
          for i, name in enumerate(names)],
        "    return obj",
    ])
    exec(source, scope)  # noqa: S102 - the class's own field names
    replace = scope["replace"]
    replace.__doc__ = f"`dataclasses.replace` for `{cls.__name__}`, without re-running `__init__`."
    return replace
