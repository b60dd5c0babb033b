"""A quicker `__init__` for frozen slotted dataclasses, the value objects of the hot path.

A frozen dataclass's `__init__` sets each field through `object.__setattr__` (its own
`__setattr__` refuses), which costs ~130 ns a field: a seven-field `NewEvent` took ~930 ns
to build. `quick_init` writes the class an `__init__` with the same signature that fills
each slot through the slot's own descriptor, as `dataclasses` would with a plain class
(~345 ns for `NewEvent`); the class stays frozen, compares, hashes, prints and pickles as
before. Every command of an in-process run builds six to eight such objects (its request,
command, event, `NewEvent`, reply, the entity's next state), so this is ~8 % of that run.

Only what `dataclasses` itself wrote is replaced: a class with its own `__init__`, a
`__post_init__`, an `InitVar` or a field left out of `__init__` keeps the dataclass's.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

_QUICK = "__saleday_quick_init__"


def quick_init(cls: T) -> T:
    """Give the frozen slotted dataclass `cls` an `__init__` that fills its slots directly
    (the same parameters, defaults and factories); any other class is returned as it is.
    Idempotent: a class already given one keeps it."""
    if not _eligible(cls):
        return cls
    fields = dataclasses.fields(cls)
    scope: dict[str, Any] = {"_qi_missing": dataclasses.MISSING}
    positional, keyword, body = [], [], []
    for i, f in enumerate(fields):
        scope[f"_qi_set_{i}"] = getattr(cls, f.name).__set__
        if f.default is not dataclasses.MISSING:
            scope[f"_qi_default_{i}"] = f.default
            param, value = f"{f.name}=_qi_default_{i}", f.name
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_qi_factory_{i}"] = f.default_factory
            param, value = (f"{f.name}=_qi_missing",
                            f"_qi_factory_{i}() if {f.name} is _qi_missing else {f.name}")
        else:
            param, value = f.name, f.name
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    _qi_set_{i}(_qi_self, {value})")
    params = ["_qi_self", *positional, *(["*", *keyword] if keyword else [])]
    source = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "    pass")
    exec(source, scope)  # noqa: S102 - the class's own field names (identifiers)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    setattr(init, _QUICK, True)
    cls.__init__ = init
    return cls


def _eligible(cls: type) -> bool:
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        return False
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, _QUICK, False):
        return False   # inherited, or already quick
    code = getattr(init, "__code__", None)
    if code is None or "__create_fn__" not in code.co_qualname:
        return False   # the class wrote its own
    if not (params.frozen and params.init and "__slots__" in cls.__dict__):
        return False
    if hasattr(cls, "__post_init__"):
        return False
    fields = dataclasses.fields(cls)
    if not all(f.init and isinstance(getattr(cls, f.name, None), types.MemberDescriptorType)
               for f in fields):
        return False   # a field without a slot of its own, or left out of __init__
    if any(f.name.startswith("_qi_") for f in fields):
        return False   # would shadow the names the quick __init__ is written with
    # The dataclass's parameters are exactly the fields (no InitVar among them).
    params = list(inspect.signature(init).parameters)
    return set(params[1:]) == {f.name for f in fields} and len(params) == len(fields) + 1
