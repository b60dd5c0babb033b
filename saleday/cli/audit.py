"""`saleday audit`, `saleday export` and `saleday bench audit` (registered by cluster/cli.py).

Exit status of `audit`: 0 when every rule held, 1 with findings, 2 when the log cannot
be read at all (no store, no file, not an export, a `memory://` log of another process)
or holds no events (an empty log proves nothing). `export` exits 2 when it cannot read
the store or write the files. Both open the log read-only and print store URLs redacted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli.common import DEFAULT_DATA, console

SHOWN = 50
"""Findings printed in the summary for people (`--json` gives them all)."""


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add `audit`, `export` and `bench audit` to the `saleday` app."""
    app.command("audit")(audit)
    app.command("export")(export)
    bench_app.command("audit")(bench_audit)


def _views(enabled: bool) -> list[Any]:
    if not enabled:
        return []
    try:
        from saleday.projections.views import all_views
    except ImportError:  # the views package is not there: audit the log alone
        return []
    return all_views()


def audit(
    store: Annotated[str | None, typer.Option("--store", help="Store URL: sqlite:///path/events.db, "
                                              "redis://host:port/db or rediss://...")] = None,
    data: Annotated[str | None, typer.Option("--data", help="A saleday data dir (its events.db); "
                                             f"the default when no log is named: {DEFAULT_DATA}.")] = None,
    log: Annotated[str | None, typer.Option("--log", help="A JSONL export (`saleday export`); "
                                            "every hash is recomputed from the fields.")] = None,
    manifest: Annotated[str | None, typer.Option(help="The export's manifest.json (default: the "
                                                 "one next to --log, if any).")] = None,
    views: Annotated[bool, typer.Option(help="Rebuild every view and print its digest.")] = True,
    clock_skew_ms: Annotated[int, typer.Option(
        min=0, help="How far apart the shards' clocks may be, in ms: a cause in another "
                    "stream may be stamped up to this much later than its effect.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replay a log and prove its invariants: chains, stock, tiers, limits, reservations,
    coupons, red packets, follow-ups delivered once (audit a log whose reactor has caught
    up), orders, referrals, members, prices and presales. Exit 0 if all hold, 1 with
    findings."""
    from saleday.events import EventLogError
    from saleday.projections.audit import run_audit
    from saleday.projections.source import SourceError, open_source

    if store is None and data is None and log is None:
        data = DEFAULT_DATA
    try:
        source = open_source(store=store, data=data, log=log, manifest=manifest)
    except SourceError as exc:
        _fail(str(exc))
    try:
        report = run_audit(source, _views(views), clock_skew_ms=clock_skew_ms)
    except EventLogError as exc:
        _fail(str(exc))
    finally:
        source.close()
    if report.events == 0 and report.ok:
        _fail(f"no events to audit in {report.source}: an empty log proves nothing")
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _print_report(report: Any) -> None:
    out = console()
    last = (datetime.fromtimestamp(report.last_event_at / 1000, UTC).isoformat(timespec="milliseconds")
            if report.last_event_at else "-")
    out.print(f"[bold]audit[/bold] of {escape(report.source)} (chain verified over "
              f"{escape(report.verified_by)})")
    out.print(f"{report.events:,} events in {len(report.streams)} streams, last event at {last}; "
              f"{report.events_per_s:,} events/s ({report.seconds:.2f} s)")
    table = Table(title="rules")
    for col in ("rule", "passed", "failed", "what it means"):
        table.add_column(col, justify="right" if col in ("passed", "failed") else "left",
                         no_wrap=col == "rule")
    for rule, row in report.rules.items():
        failed = f"[red]{row['failed']:,}[/red]" if row["failed"] else "0"
        table.add_row(rule, f"{row['passed']:,}", failed, escape(row["about"]))
    out.print(table)
    if report.findings:
        out.print(f"[red bold]{len(report.findings):,} findings[/red bold]"
                  + (f" (the first {SHOWN}; --json for all)" if len(report.findings) > SHOWN else ""))
        for f in report.findings[:SHOWN]:
            out.print(f"  [red]{escape(f.rule)}[/red] {escape(str(f))}", soft_wrap=True)
    if report.views:
        vt = Table(title="views rebuilt from the log")
        vt.add_column("view")
        vt.add_column("digest (BLAKE2b-256 of its canonical JSON)")
        for name, digest in report.views.items():
            vt.add_row(escape(name), digest)
        out.print(vt)
    out.print(f"log digest (BLAKE2b-256 over the stream heads): {report.log_digest}")
    out.print("[green bold]OK: every rule held[/green bold]" if report.ok
              else f"[red bold]FAILED: {len(report.findings):,} findings[/red bold]")


def export(
    out: Annotated[str, typer.Option("--out", help="Directory to write events.<format> and "
                                     "manifest.json into.")],
    store: Annotated[str | None, typer.Option("--store", help="Store URL.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="A saleday data dir (its events.db); "
                                             f"the default when no store is named: {DEFAULT_DATA}.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet.")] = "jsonl",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write every event with every envelope field (hashes in hex) as JSONL or Parquet,
    streaming, with a manifest of the stream heads and the log digest."""
    from saleday.events import EventLogError
    from saleday.projections.export import FORMATS
    from saleday.projections.export import export as run_export
    from saleday.projections.source import SourceError
    from saleday.projections.store_source import data_dir_url

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if store is not None and data is not None:
        _fail("name exactly one log: --store URL or --data DIR")
    if store is None and data is None:
        data = DEFAULT_DATA
    try:
        url = store if store is not None else data_dir_url(data)  # type: ignore[arg-type]
        result = run_export(url, fmt=fmt, out=out)
    except (SourceError, EventLogError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    typer.echo(f"exported {result.events:,} events of {len(result.streams)} streams to "
               f"{result.path} in {result.seconds:.1f} s")
    typer.echo(f"manifest: {result.manifest}; log digest {result.log_digest}")


def bench_audit(
    events: Annotated[int, typer.Option(min=1000, help="Events in the log (about).")] = 300_000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure (the median is shown).")] = 3,
    seed: Annotated[int, typer.Option()] = 11,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Audit replay rate (read, verify the chain, decode, fold, check) on a sale-day log
    written by the real deciders, against `saleday log verify` over the same log."""
    from saleday.bench import audit as ba

    result = ba.run(events=events, repeat=repeat, seed=seed)
    if as_json:
        typer.echo(json.dumps(result))
        return
    out = console()
    t = result["traffic"]
    table = Table(title=f"audit replay over {result['events']:,} events in {result['streams']} "
                        f"streams ({t['orders']:,} checkouts: {t['paid']:,} paid, {t['failed']:,} "
                        f"failed, {t['abandoned']:,} abandoned, {t['late']:,} paid late), "
                        f"median of {result['repeat']}")
    for col in ("what", "events/s", "events per CPU-second"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row("saleday audit (read, verify, decode, fold, check)",
                  f"{result['audit_events_per_s']:,}", f"{result['audit_events_per_s_cpu']:,}")
    table.add_row("baseline: saleday log verify (events.verify_commits)",
                  f"{result['verify_events_per_s']:,}", f"{result['verify_events_per_s_cpu']:,}")
    out.print(table)
    out.print(f"audit / verify (CPU): {result['audit_vs_verify']}; audit "
              + ("[green]passed[/green]" if result["ok"] else
                 f"[red]found {result['findings']} problems[/red]: {result['first_findings']}"))
    m = result["machine"]
    out.print(f"log built in {result['build_s']} s; machine: {m['cpu']}, {m['cores']} cores, "
              f"Python {m['python']}, load average {m['load_avg_1m_at_start']} at the start, "
              f"{m['load_avg_1m_at_end']} at the end")
