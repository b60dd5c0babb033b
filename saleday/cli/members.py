"""`saleday import orders`, `saleday members tiers`, and how `saleday view members` shows.

    saleday import orders history.csv --data ./saleday-data      # append member history
    saleday view members --as-of 2025-11-11 --json               # RFM per user
    saleday members tiers --as-of 2025-11-11                     # record TierChanged

`import orders` reads a CSV (flows/history.py says the format) and records each usable row
as `members.order_recorded` on its member's stream (`member-NNN`), through the member
shard hosts in this process: one commit per 10,000 rows per shard, every command id and
order ref derived from the row's content, so a second import records nothing twice. Bad
rows are counted by reason with their line numbers; if no row is usable the exit status
is 2. `members tiers` folds the members view, scores RFM as of a date and records a
`TierChanged` for every member whose tier by the rule differs from its recorded one.
`members protect|points` and `price set` are saleday/cli/benefits.py's. The member kind's
shard count (`--shards`) must be the one the rest of the system uses for this log
(default 1).
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli.common import console, fail, opened

CHUNK = 10_000
"""Commands per shard batch (one commit each)."""

DataOpt = Annotated[Path, typer.Option("--data", help="Data dir: the log is "
                                       "sqlite:///<data>/events.db unless --store says otherwise.")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="Event store URL (default sqlite:///<data>/events.db).")]
ShardsOpt = Annotated[int, typer.Option("--shards", min=1, max=64,
                                        help="Member shards of this log (streams member-NNN).")]
AsOfOpt = Annotated[str | None, typer.Option(
    "--as-of", help="RFM as of this date (YYYY-MM-DD, UTC; default today).")]
RuleOpt = Annotated[str, typer.Option(
    "--tier-rule", help="Tier thresholds on r+f+m, e.g. diamond=13,gold=10,silver=7.")]


def register(app: typer.Typer) -> None:
    """Add `import orders`, `members tiers` (and, from saleday/cli/benefits.py,
    `members protect|points` and `price set`) to the `saleday` app."""
    import_app = typer.Typer(help="Bring outside records into the log.", no_args_is_help=True)
    import_app.command("orders")(import_orders)
    app.add_typer(import_app, name="import")
    members_app = typer.Typer(help="Members: tiers from RFM, price protection, points "
                              "(docs/MEMBERS.md).",
                              no_args_is_help=True)
    members_app.command("tiers")(assign_tiers)
    app.add_typer(members_app, name="members")
    from saleday.cli import benefits

    benefits.register(app, members_app)


def parse_as_of(text: str | None) -> date:
    """The as-of date of `--as-of`, or today (UTC)."""
    if text is None:
        from datetime import UTC

        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date YYYY-MM-DD",
                                 param_hint="--as-of") from None


def parse_rule(text: str) -> Any:
    from saleday.projections.rfm import TierRule, TierRuleError

    try:
        return TierRule.parse(text)
    except TierRuleError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tier-rule") from None


class MemberShards:
    """The shard hosts of one kind (default: member) of a log, in this process."""

    def __init__(self, store: Any, shards: int, kind: str = "member") -> None:
        from saleday.actors.host import ShardHost
        from saleday.actors.kinds import deciders
        from saleday.cluster.routing import ShardMap

        decider = deciders()[kind]
        self.entity_of = decider.entity_of
        self.map = ShardMap.uniform(kind, shards)
        self.hosts = [ShardHost(decider=decider, store=store, stream=self.map.stream(i))
                      for i in range(self.map.shards)]

    def host_of(self, entity: str) -> Any:
        return self.hosts[self.map.shard_of(entity)]

    def run(self, requests: list[Any]) -> list[Any]:
        """Decide `requests` (each a `Request` of a command of this kind), in batches of
        `CHUNK` per shard; the replies in the requests' order."""
        by_shard: dict[int, list[int]] = {}
        for i, req in enumerate(requests):
            by_shard.setdefault(self.map.shard_of(self.entity_of(req.command)), []).append(i)
        replies: list[Any] = [None] * len(requests)
        for shard, indexes in by_shard.items():
            for start in range(0, len(indexes), CHUNK):
                part = indexes[start:start + CHUNK]
                for i, reply in zip(part, self.hosts[shard].handle([requests[i] for i in part])):
                    replies[i] = reply
        return replies


def import_orders(
    file: Annotated[Path, typer.Argument(help="CSV with the header user,ordered_at,amount.")],
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Append an order-history CSV to the members' streams (idempotent)."""
    from saleday.actors.host import Accepted, Request, wall_clock_ms
    from saleday.flows.history import HistoryFileError, parse_orders

    started = time.perf_counter()
    try:
        with file.open(encoding="utf-8", newline="") as f:
            parsed = parse_orders(f, now=wall_clock_ms())
    except (OSError, UnicodeDecodeError, HistoryFileError) as exc:
        fail(exc)
    store_url = store or f"sqlite:///{data / 'events.db'}"
    if store is None:
        data.mkdir(parents=True, exist_ok=True)
    outcome = {"recorded": 0, "already": 0, "refused": 0}
    refusals: dict[str, int] = {}
    with opened(store_url) as s:
        members = MemberShards(s, shards)
        # An order the member already holds with these terms would decide nothing: count it
        # here rather than have the host re-read its events from the log to answer it.
        fresh = []
        for c in parsed.commands:
            known = members.host_of(c.user).state_of(c.user).orders.get(c.order_ref)
            if known == (c.ordered_at, c.amount_cents, c.source):
                outcome["already"] += 1
            else:
                fresh.append(c)
        requests = [Request(f"import-order:{c.order_ref}", c) for c in fresh]
        for reply in members.run(requests):
            if isinstance(reply, Accepted):
                outcome["recorded" if reply.events and not reply.duplicate else "already"] += 1
            else:
                outcome["refused"] += 1
                refusals[reply.code] = refusals.get(reply.code, 0) + 1
    seconds = time.perf_counter() - started
    report = {"file": str(file), "rows": parsed.rows, "usable": len(parsed.commands), **outcome,
              "refusals": refusals,
              "bad": {reason: {"count": len(lines), "lines": lines[:20]}
                      for reason, lines in sorted(parsed.bad.items())},
              "seconds": round(seconds, 3),
              "rows_per_s": round(parsed.rows / seconds) if seconds > 0 else None}
    if as_json:
        typer.echo(json.dumps(report))
    else:
        out = console()
        out.print(f"{escape(str(file))}: {parsed.rows:,} rows, {len(parsed.commands):,} usable: "
                  f"{outcome['recorded']:,} recorded, {outcome['already']:,} already in the log"
                  + (f", {outcome['refused']:,} refused {refusals}" if outcome["refused"] else "")
                  + f" ({seconds:.2f} s, {report['rows_per_s'] or 0:,} rows/s)")
        for reason, lines in sorted(parsed.bad.items()):
            shown = ", ".join(map(str, lines[:20])) + (", ..." if len(lines) > 20 else "")
            out.print(f"  bad rows, {reason}: {len(lines):,} (lines {shown})")
    if not parsed.commands:
        typer.echo("error: no usable row in the file", err=True)
        raise typer.Exit(2)


def rfm_rows(view: Any, as_of: date, rule: Any) -> list[dict[str, Any]]:
    """The view's RFM rows as of `as_of` under `rule` (projections/rfm.py)."""
    from saleday.projections.rfm import rfm

    return rfm(view.orders_by_user(), as_of, rule)


def show(v: Any, *, user: str | None, top: int, as_of: str | None = None,
         tier_rule: str = "", **_: Any) -> dict:
    """`saleday view members`: the JSON rows, and a table of the best `top` with tier counts."""
    from saleday.projections.rfm import TierRule

    day = parse_as_of(as_of)
    rule = parse_rule(tier_rule) if tier_rule else TierRule()
    rows = rfm_rows(v, day, rule)
    if user is not None:
        rows = [r for r in rows if r["user"] == user]
        if not rows:
            fail(LookupError(f"user {user!r} has no order on or before {day} in the view"))
    tiers: dict[str, int] = {}
    for r in rows:
        tiers[r["tier"]] = tiers.get(r["tier"], 0) + 1
    best = sorted(rows, key=lambda r: (-(r["r"] + r["f"] + r["m"]), -r["monetary"], r["user"]))
    table = Table(title=f"members as of {day} ({len(rows):,} with orders; tier rule {rule.text})")
    for col in ("user", "recency_days", "frequency", "monetary", "segment", "tier", "recorded",
                "points"):
        table.add_column(col, justify="left" if col in ("user", "tier", "recorded") else "right")
    for r in best[:top]:
        table.add_row(escape(r["user"]), str(r["recency_days"]), str(r["frequency"]),
                      f"{r['monetary']:.2f}", r["segment"], r["tier"],
                      v.recorded_tier(r["user"]), f"{v.points_of(r['user'])['balance']:,}")
    counts = Table(title="tiers by the rule")
    counts.add_column("tier")
    counts.add_column("members", justify="right")
    for name in ("diamond", "gold", "silver", "regular"):
        counts.add_row(name, f"{tiers.get(name, 0):,}")
    return {"json": rows, "rich": [table, counts]}


def assign_tiers(
    as_of: AsOfOpt = None,
    tier_rule: RuleOpt = "diamond=13,gold=10,silver=7",
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Record each member's tier by RFM as of a date (TierChanged, effective the next day)."""
    from saleday.actors.host import Accepted, Request
    from saleday.actors.member import ChangeTier
    from saleday.events import Tail
    from saleday.projections.rfm import DAY_MS, day_start_ms
    from saleday.projections.views import MembersView

    day = parse_as_of(as_of)
    rule = parse_rule(tier_rule)
    store_url = store or f"sqlite:///{data / 'events.db'}"
    if store_url.startswith("sqlite:///") and not Path(store_url[10:].split("?")[0]).exists():
        fail(FileNotFoundError(f"no event log at {store_url[10:]}: pass --data or --store"))
    effective = day_start_ms(day) + DAY_MS
    outcome = {"changed": 0, "unchanged": 0, "refused": 0}
    refusals: list[str] = []
    with opened(store_url) as s:
        view = MembersView()
        tail = Tail(s, include=lambda stream: stream.startswith(("member-", "order-")))
        while batch := tail.poll():
            view.apply_batch(batch)
        members = MemberShards(s, shards)
        rows = rfm_rows(view, day, rule)
        outcome["unchanged"] = sum(
            members.host_of(r["user"]).state_of(r["user"]).tier == r["tier"] for r in rows)
        rows = [r for r in rows
                if members.host_of(r["user"]).state_of(r["user"]).tier != r["tier"]]
        requests = [Request(f"tier:{r['user']}:{day}:{r['tier']}",
                            ChangeTier(user=r["user"], tier=r["tier"], rule=f"rfm:{rule.text}",
                                       now=effective))
                    for r in rows]
        for req, reply in zip(requests, members.run(requests)):
            if isinstance(reply, Accepted):
                outcome["changed" if reply.events and not reply.duplicate else "unchanged"] += 1
            else:
                outcome["refused"] += 1
                refusals.append(f"{req.command.user}: {reply.describe()}")
    report = {"as_of": str(day), "rule": rule.text, "effective_at": effective, **outcome,
              "refusals": refusals[:20]}
    if as_json:
        typer.echo(json.dumps(report))
        return
    console().print(f"tiers as of {day} by {rule.text}: {outcome['changed']:,} changed, "
                    f"{outcome['unchanged']:,} unchanged, {outcome['refused']:,} refused")
    for line in refusals[:20]:
        console().print(f"  refused: {escape(line)}")


def _store_url(data: Path, store: str | None, *, must_exist: bool) -> str:
    url = store or f"sqlite:///{data / 'events.db'}"
    if must_exist and url.startswith("sqlite:///") and not Path(url[10:].split("?")[0]).exists():
        fail(FileNotFoundError(f"no event log at {url[10:]}: pass --data or --store"))
    if store is None and not must_exist:
        data.mkdir(parents=True, exist_ok=True)
    return url
