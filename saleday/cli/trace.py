"""`saleday trace ID`: the whole story of an order, a visit, a team or a user, in order,
across streams (projections/trace.py), from a data dir, a store or a JSONL export."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli.common import DEFAULT_DATA, console
from saleday.cli.human import event_time


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)


def trace(
    subject: Annotated[str, typer.Argument(metavar="ID", help="An order id (O00000042), a "
                                           "visit's session id, a team id or a user id.")],
    data: Annotated[str | None, typer.Option("--data", help="A saleday data dir (its events.db); "
                                             f"the default when no log is named: {DEFAULT_DATA}.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Store URL instead of --data.")] = None,
    log: Annotated[str | None, typer.Option("--log", help="A JSONL export instead of --data.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print every event of an order, visit, team or user, in event-time order, across
    streams: the flows it took part in (correlation ids) and what they caused (causation
    ids). Exit 1 when no event names ID."""
    from saleday.events import EventLogError
    from saleday.projections.source import SourceError, open_source
    from saleday.projections.trace import trace as run_trace

    if store is None and log is None and data is None:
        data = DEFAULT_DATA

    def read() -> Any:
        source = open_source(store=store, data=data, log=log)
        try:
            yield from source
        finally:
            source.close()

    try:
        found = run_trace(read, subject)
    except (SourceError, EventLogError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(found.to_json()))
    elif found.events:
        _print(found)
    else:
        typer.echo(f"no event names {subject!r}", err=True)
    if not found.events:
        raise typer.Exit(1)


def _print(found: Any) -> None:
    out = console()
    table = Table(title=f"the story of {escape(found.subject)}: {len(found.events):,} events "
                        f"of {len(found.flows):,} flows ({escape(', '.join(found.flows[:6]))}"
                        f"{', …' if len(found.flows) > 6 else ''})")
    for col in ("event time (UTC+8)", "event", "type", "flow", "caused by", "what"):
        table.add_column(col, overflow="fold")
    for e in found.events:
        table.add_row(event_time(e.recorded_at), f"{e.stream}@{e.version}", e.type.split(".", 1)[-1],
                      escape(e.correlation_id), escape(e.causation_id), escape(_what(e.data)))
    out.print(table)


def _what(data: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in data.items())[:160]
