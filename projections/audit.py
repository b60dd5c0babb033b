"""The audit: replay a log, prove the invariants, rebuild views, and say what is wrong.

`run_audit(source, views=())` is a pure fold over the envelopes a source yields (I/O
lives in projections/source.py): the chain findings the source reports, then per event
the log rules (each command's effects recorded once; a type and schema version the audit
knows) and the invariants of projections/audit_rules.py (families in projections/rules/), and finally the end-of-log
checks. The views given are folded alongside and their digests reported. The report
says how many checks each rule made and which failed, each finding naming its stream
and version; `log_digest` (BLAKE2b over the stream heads) names exactly the log audited.

The hot path is one loop per batch: a dict lookup of the wire type's handler, a call on
the envelope tuple, plain dicts and lists for state.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter, ne
from typing import Any

from saleday.events import Envelope
from saleday.events.codec import gc_paused
from saleday.projections.audit_rules import READS, RULES, Rules
from saleday.projections.source import ChainFinding, EnvelopeSource, LogSource, log_digest
from saleday.projections.view import View

KNOWN_SCHEMA = 1
"""The payload version of every wire type this audit reads."""

_SHAPE_ERRORS = (KeyError, TypeError, IndexError, ValueError, AttributeError, RecursionError)
_at = itemgetter(4)
_type = itemgetter(2)
_command = itemgetter(5)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with the log: which rule, where (stream and version), what."""

    rule: str
    stream: str
    version: int | None
    message: str

    def __str__(self) -> str:
        where = self.stream + (f" v{self.version}" if self.version is not None else "")
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "stream": self.stream, "version": self.version,
                "message": self.message}


@dataclass
class AuditReport:
    """What an audit found; `ok` only when every rule held on every event."""

    source: str
    verified_by: str
    events: int
    streams: dict[str, int]
    findings: list[Finding]
    rules: dict[str, dict[str, Any]]
    views: dict[str, str]
    log_digest: str
    heads: dict[str, str]
    last_event_at: int
    seconds: float
    types: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def events_per_s(self) -> int:
        return int(self.events / self.seconds) if self.seconds > 0 else 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "verified_by": self.verified_by,
                "events": self.events, "streams": self.streams,
                "findings": [f.to_json() for f in self.findings], "rules": self.rules,
                "views": self.views, "log_digest": self.log_digest, "heads": self.heads,
                "last_event_at": self.last_event_at, "seconds": round(self.seconds, 3),
                "events_per_s": self.events_per_s, "types": self.types}


def run_audit(source: LogSource | Iterable[Envelope], views: Sequence[View] = (), *,
              clock_skew_ms: int = 0) -> AuditReport:
    """Replay `source` (a `LogSource`, or envelopes whose chain is then recomputed) and
    check every rule; fold `views` alongside and report their digests. `clock_skew_ms`:
    how far apart the shards' clocks may be (`log.causation` across streams)."""
    if not isinstance(source, LogSource):
        source = EnvelopeSource(source)
    source.rows_ok = not views
    started = time.perf_counter()
    with gc_paused():  # the fold's state holds no cycles; collections would rescan it all
        fold = _Fold(views)
        fold.rules.clock_skew_ms = clock_skew_ms
        for item in source:
            if type(item) is ChainFinding:
                fold.chain.append(item)
            else:
                fold.batch(*item)
        fold.rules.finish(fold.last_time)
        digests = {v.name: v.digest() for v in views}
    seconds = time.perf_counter() - started
    findings = [Finding(f.rule, f.stream, f.version, f.message) for f in fold.chain]
    findings += [Finding(*f) for f in fold.rules.findings]
    heads = source.heads
    return AuditReport(
        source=source.name, verified_by=source.verified_by, events=fold.events,
        streams={s: v for s, (v, _) in sorted(heads.items())}, findings=findings,
        rules=_rule_table(findings, fold.types, fold.rules.end_checks, fold.events),
        views=digests, log_digest=log_digest(heads),
        heads={s: h.hex() for s, (_, h) in sorted(heads.items())},
        last_event_at=fold.last_time, seconds=seconds, types=dict(sorted(fold.types.items())))


class _Fold:
    """The per-batch loop: log rules, then each event's handler, then the views."""

    def __init__(self, views: Sequence[View]) -> None:
        self.rules = Rules()
        self.chain: list[ChainFinding] = []
        self.types: Counter[str] = Counter()
        self.commands: set[str] = set()
        self.last_command: dict[str, str] = {}
        self.appliers = [getattr(v, "apply_batch", None) or _each(v.apply) for v in views]
        self.events = 0
        self.last_time = 0

    def batch(self, stream: str, envs: list[Envelope]) -> None:
        self.events += len(envs)
        self.types.update(map(_type, envs))
        self.last_time = max(self.last_time, max(map(_at, envs)))
        self._commands(stream, envs)
        rules = self.rules
        rules.causes_batch(stream, envs)
        get = rules.handlers.get
        for env in envs:
            handler = get(env[2])
            if handler is None or env[3] != KNOWN_SCHEMA:
                _unknown(rules, env, handler is None)
                continue
            try:
                handler(env)
            except _SHAPE_ERRORS as exc:
                rules.fail("log.schema", stream, env[1],
                           f"{env[2]} payload does not have the documented shape "
                           f"({type(exc).__name__}: {exc})")
        for apply in self.appliers:
            apply(envs)

    def _commands(self, stream: str, envs: list[Envelope]) -> None:
        """Each command id's events form one run, in one stream: set operations on the
        batch's runs, and a walk to name the event only when one repeats."""
        cids = list(map(_command, envs))
        runs = sum(map(ne, cids, islice(cids, 1, None))) + 1
        fresh = set(cids)
        before = self.last_command.get(stream)
        self.last_command[stream] = cids[-1]
        continued = cids[0] == before
        if len(fresh) == runs:  # no command id comes back within the batch
            if continued:
                fresh.discard(before)
            if self.commands.isdisjoint(fresh):
                self.commands |= fresh
                return
        seen = self.commands
        previous = before if continued else None
        for env in envs:
            cid = env[5]
            if cid == previous:
                continue
            previous = cid
            if cid in seen:
                self.rules.fail("log.commands", stream, env[1],
                                f"command {cid!r} recorded again: its effects are already "
                                "in the log (in another commit or stream)")
            seen.add(cid)


def _each(apply: Callable[[Envelope], None]) -> Callable[[list[Envelope]], None]:
    def apply_batch(envs: list[Envelope]) -> None:
        for env in envs:
            apply(env)
    return apply_batch


def _unknown(rules: Rules, env: Envelope, unknown_type: bool) -> None:
    if unknown_type:
        rules.fail("log.schema", env[0], env[1],
                   f"event type {env[2]!r} is not one this audit knows: nothing vouches for it")
    else:
        rules.fail("log.schema", env[0], env[1],
                   f"{env[2]} schema version {env[3]!r} is not the version this audit reads "
                   f"({KNOWN_SCHEMA})")


def _rule_table(findings: list[Finding], types: Counter[str], end: dict[str, int],
                events: int) -> dict[str, dict[str, Any]]:
    failed = Counter(f.rule for f in findings)
    table = {}
    for rule, about in RULES.items():
        if rule.startswith("log.") and rule not in end:
            checks = events
        else:
            checks = sum(types[t] for t in READS.get(rule, ())) + end.get(rule, 0)
        table[rule] = {"checks": checks, "passed": max(checks - failed[rule], 0),
                       "failed": failed[rule], "about": about}
    return table
