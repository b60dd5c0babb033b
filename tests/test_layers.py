"""The house's rules, checked: the rooms import one way, the pure core imports no I/O
framework, every package installs, and ruff finds nothing.

The rooms (one folder each at the top of the repository, installed as `saleday.<room>`):
events <- actors <- flows <- cluster <- simulator <- the composition root (`saleday.cli`,
`saleday.bench`, `saleday.http`); projections read events only, and cluster and
simulator may use them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("events", "actors", "flows", "projections", "cluster", "simulator", "saleday")

MAY_IMPORT = {
    "events": {"events"},
    "actors": {"events", "actors"},
    "flows": {"events", "actors", "flows"},
    "projections": {"events", "projections"},
    "cluster": {"events", "actors", "flows", "projections", "cluster"},
    "simulator": {"events", "actors", "flows", "projections", "cluster", "simulator"},
    "saleday": set(ROOMS),
}
"""Which rooms each room may import (its own included). `saleday` is the composition root."""

PURE = {
    "actors": ("ray", "redis", "fastapi", "starlette"),
    "flows": ("ray", "redis", "fastapi", "starlette"),
    "events/envelope.py": ("ray", "redis", "structlog"),
    "events/chain.py": ("ray", "redis", "structlog"),
    "events/codec.py": ("ray", "redis", "structlog"),
    "events/registry.py": ("ray", "redis", "structlog"),
    "events/store.py": ("ray", "redis", "structlog"),
    "events/errors.py": ("ray", "redis", "structlog"),
}
"""What the pure core never imports, at any depth of a module (function-level included)."""


def modules() -> list[tuple[str, Path]]:
    return [(room, path) for room in ROOMS for path in sorted((ROOT / room).rglob("*.py"))]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in `path`, at any depth: (line, dotted name)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((node.lineno, node.module))
    return out


def room_of(name: str) -> str | None:
    """The room an import names (`saleday.flows.checkout` -> flows), or None if external."""
    parts = name.split(".")
    if parts[0] != "saleday":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "saleday"


def test_rooms_import_only_the_rooms_below_them():
    """No module imports a room its own room may not depend on (so there are no cycles)."""
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for room, path in modules() for line, name in imports(path)
             if (other := room_of(name)) is not None and other not in MAY_IMPORT[room]]
    assert not wrong, "\n".join(wrong)


def test_the_allowed_dependencies_have_no_cycle():
    """The rule itself is a layering: following 'may import' never leads back to a room."""
    def reach(room: str, seen: frozenset[str]) -> None:
        for other in MAY_IMPORT[room] - {room}:
            assert other not in seen, f"cycle through {other}"
            reach(other, seen | {other})
    for room in ROOMS:
        if room != "saleday":
            reach(room, frozenset({room}))


def test_every_import_of_a_room_goes_through_the_saleday_namespace():
    """`import events` would load a second copy of a room beside `saleday.events`."""
    bare = [f"{path.relative_to(ROOT)}:{line} imports {name}"
            for _, path in modules() + [("tests", p) for p in sorted((ROOT / "tests").rglob("*.py"))]
            for line, name in imports(path) if name.split(".")[0] in ROOMS[:-1]]
    assert not bare, "\n".join(bare)


def test_the_pure_core_imports_no_io_framework():
    """Deciders, flows and the log's core modules never import Ray, Redis or a web framework."""
    wrong = []
    for scope, banned in PURE.items():
        paths = [ROOT / scope] if scope.endswith(".py") else sorted((ROOT / scope).rglob("*.py"))
        if scope == "actors":   # the deciders and their words log nothing; the shard host does
            banned = banned + ("structlog",)
            paths = [p for p in paths if p.parent != ROOT / "actors" / "host"]
        for path in paths:
            wrong += [f"{path.relative_to(ROOT)}:{line} imports {name}"
                      for line, name in imports(path) if name.split(".")[0] in banned]
    assert not wrong, "\n".join(wrong)


def test_only_the_ray_module_calls_ray():
    """Ray is imported by `saleday.cluster.ray_api` alone (and the Serve app that Ray hosts)."""
    allowed = {ROOT / "cluster" / "ray_api.py", ROOT / "saleday" / "http" / "serve.py"}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for _, path in modules() if path not in allowed
             for line, name in imports(path) if name.split(".")[0] == "ray"]
    assert not wrong, "\n".join(wrong)


def test_every_package_is_installed():
    """Each folder with an `__init__.py` is listed in pyproject.toml, so a wheel carries it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for room in ROOMS:
        for init in (ROOT / room).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join(rel) if room == "saleday" else ".".join(("saleday",) + rel))
    assert found == listed
    assert all(mapping[f"saleday.{room}"] == room for room in ROOMS if room != "saleday")


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_finds_nothing():
    """`ruff check` (pyproject.toml's rules) passes on the whole repository."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    out = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
