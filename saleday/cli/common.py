"""What the `saleday` commands share: store options, opening a store, the console."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_DATA = "saleday-data"
"""The data dir every command that reads a log uses when none is named (`simulate` writes it)."""
StoreOpt = Annotated[str, typer.Option("--store", help="Store URL: sqlite:///path/events.db, "
                                       "redis://host:port/db or rediss://...")]


ReadStoreOpt = Annotated[str | None, typer.Option(
    "--store", help="Store URL: sqlite:///path/events.db, redis://host:port/db or rediss://... "
                    "(default: the --data dir's log).")]
ReadDataOpt = Annotated[str | None, typer.Option(
    "--data", help=f"A saleday data dir (its events.db); default {DEFAULT_DATA}.")]


def log_url(store: str | None, data: str | None) -> str:
    """The log a reading command names: `--store`, else the `--data` dir's (default
    `DEFAULT_DATA`); exit 2 when both are given or the data dir has no log."""
    if store is not None:
        if data is not None:
            fail(ValueError("name one log: --store URL or --data DIR, not both"))
        return store
    from saleday.projections.source import SourceError
    from saleday.projections.store_source import data_dir_url

    try:
        return data_dir_url(data if data is not None else DEFAULT_DATA)
    except SourceError as exc:
        fail(exc)
        raise


class opened:
    """Open a store from a URL (`read_only` for commands that only read the log: it must
    exist and nothing is written); turn log errors into one readable line and exit 2."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only

    def __enter__(self):  # type: ignore[no-untyped-def]
        from saleday.events import EventLogError, open_store

        try:
            self.store = open_store(self.url, read_only=self.read_only)
        except EventLogError as exc:
            fail(exc)
        return self.store

    def __exit__(self, kind, exc, tb) -> bool:  # type: ignore[no-untyped-def]
        from saleday.events import EventLogError

        self.store.close()
        if isinstance(exc, EventLogError) and not isinstance(exc, typer.Exit):
            fail(exc)
        return False


PIPED_WIDTH = 132
"""Columns of output that goes to a pipe or file (no terminal to ask), unless $COLUMNS says."""


def console() -> Console:
    """A console as wide as the terminal it prints to (tables fit, nothing wraps), or, when
    the output is piped, $COLUMNS or `PIPED_WIDTH` wide so tables are not cut at 80."""
    if sys.stdout.isatty():
        return Console(width=shutil.get_terminal_size().columns)
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH)


def fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


# The error types that bad input, usage or environment cause, each carrying a readable
# message: a command that raises one ends with `error: <message>` and exit status 2. Named
# by module so nothing is imported for them; an error of a module that is not loaded
# cannot have been raised.
KNOWN_ERRORS = (
    ("saleday.events.errors", "EventLogError"),  # stores, URLs, logs (and the projections' errors)
    ("saleday.simulator.scenario", "ScenarioError"),
    ("saleday.simulator.recording", "RecordingError"),
    ("saleday.simulator.clickstream", "ClickstreamError"),
    ("saleday.simulator.run", "SimulationError"),
    ("saleday.projections.views", "UnknownView"),
)


def is_known_error(exc: BaseException) -> bool:
    """Whether `exc` is one of `KNOWN_ERRORS` (a message for the user, not a bug)."""
    for module, name in KNOWN_ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return False


class KnownErrorsExit2(TyperGroup):
    """The top-level command group: a known error from any command becomes `error: ...`
    and exit 2, instead of a traceback and exit 1 (which means "violations found")."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, faults_with_a_mix(args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            if is_known_error(exc):
                fail(exc)
            raise


def faults_with_a_mix(args: list[str]) -> list[str]:
    """`simulate --faults swarm` (or `--faults=swarm`, `--faults CLASS,CLASS`) is read as
    `--faults --fault-mix swarm`: typer has no option whose value may be left out, and a
    bare `--faults` must keep meaning today's five classes."""
    if not args or args[0] != "simulate":
        return args
    out = [args[0]]
    rest = iter(args[1:])
    for arg in rest:
        if arg.startswith("--faults="):
            out += ["--faults", "--fault-mix", arg.split("=", 1)[1]]
        elif arg == "--faults":
            out.append(arg)
            nxt = next(rest, None)
            if nxt is not None and not nxt.startswith("-"):
                out += ["--fault-mix", nxt]
            elif nxt is not None:
                out.append(nxt)
        else:
            out.append(arg)
    return out


@contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While it lasts, whatever writes to stdout (file descriptor 1 or `sys.stdout`: Ray's
    worker and raylet lines among it) goes to stderr, so a `--json` answer printed after it
    is the only stdout."""
    if not enabled:
        yield
        return
    import os
    from contextlib import redirect_stdout

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
