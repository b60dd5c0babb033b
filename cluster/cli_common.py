"""What the `saleday` commands share: store options, opening a store, the console."""

from __future__ import annotations

import shutil
from typing import Annotated

import typer
from rich.console import Console

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
StoreOpt = Annotated[str, typer.Option("--store", help="Store URL: sqlite:///path/events.db, "
                                       "redis://host:port/db or rediss://...")]


class opened:
    """Open a store from a URL (`read_only` for commands that only read the log: it must
    exist and nothing is written); turn log errors into one readable line and exit 2."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only

    def __enter__(self):  # type: ignore[no-untyped-def]
        from events import EventLogError, open_store

        try:
            self.store = open_store(self.url, read_only=self.read_only)
        except EventLogError as exc:
            fail(exc)
        return self.store

    def __exit__(self, kind, exc, tb) -> bool:  # type: ignore[no-untyped-def]
        from events import EventLogError

        self.store.close()
        if isinstance(exc, EventLogError) and not isinstance(exc, typer.Exit):
            fail(exc)
        return False


def console() -> Console:
    """A console at least 132 columns wide, so tables are never cut when output is piped."""
    return Console(width=max(shutil.get_terminal_size((132, 24)).columns, 132))


def fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)
