"""Auditing a JSONL export (`saleday export --format jsonl`), read line by line.

`JsonlSource` reads the file with bounded memory and recomputes every hash from the decoded
fields (`ChainVerifier` over `events.event_hash`, the rule in docs/LOG_FORMAT.md), so it
trusts neither the stored hashes nor this code's stores. A `manifest.json` next to the file
(written by `saleday export`) gives the heads, the event count and the log digest the export
had: a stream that ends early (a truncated file), a count or a digest that differs is
reported against it. A line that cannot be read (not UTF-8, not JSON, nested too deep,
missing fields) is a finding at that line. `envelope_from_json` reads one line back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saleday.events import ZERO_HASH, Envelope
from saleday.events.codec import gc_paused
from saleday.projections.source import (
    BATCH,
    BYTES_TAG,
    MANIFEST,
    ChainFinding,
    Item,
    LogSource,
    RecomputedChains,
    SourceError,
    checked_run,
    log_digest,
)

_new = tuple.__new__
_PREFIX = re.compile(r'\{"stream":\s*"((?:[^"\\]|\\.)*)",\s*"version":\s*(\d+)')


class JsonlSource(LogSource):
    """A `saleday export --format jsonl` file, read line by line, every hash recomputed."""

    verified_by = "recomputed from the fields (docs/LOG_FORMAT.md)"

    def __init__(self, path: str | Path, *, manifest: str | Path | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise SourceError(f"no such log file: {self.name}")
        found = Path(manifest) if manifest is not None else self.path.parent / MANIFEST
        self.manifest: dict[str, Any] | None = None
        if manifest is not None or found.is_file():
            try:
                self.manifest = json.loads(found.read_text())
                if not isinstance(self.manifest["streams"], dict) or not all(
                        type(h) is dict and type(h.get("version")) is int
                        and type(h.get("head_hash")) is str for h in self.manifest["streams"].values()):
                    raise TypeError("streams is not a map of {version, head_hash}")
                if type(self.manifest["events"]) is not int:
                    raise TypeError("events is not an integer")
                if type(self.manifest["log_digest"]) is not str:
                    raise TypeError("log_digest is not a string")
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
                raise SourceError(f"unreadable manifest {found}: {type(exc).__name__}: {exc}") from exc
        self.lines = 0
        self.events = 0
        """Lines read that are events (whatever their chain), to check the manifest's count."""

    def __iter__(self) -> Iterator[Item]:
        chain = RecomputedChains()
        self.heads = chain.heads
        run: list[Envelope] = []
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot read {self.name}: {exc}") from exc
        with f, gc_paused():
            for n, raw in enumerate(f, start=1):
                self.lines = n
                try:
                    line = raw.decode("utf-8")
                    env = envelope_from_json(line)
                except (ValueError, KeyError, TypeError, RecursionError) as exc:
                    if isinstance(exc, RecursionError):
                        exc = ValueError("nested too deep to read")
                    if n == 1:
                        raise SourceError(f"{self.name} is not a saleday JSONL export: "
                                          f"line 1: {exc}") from exc
                    line = raw.decode("utf-8", errors="replace")
                    stream, version = _located(line)
                    if run:
                        yield from checked_run(chain, run)
                        run = []
                    if stream is not None:
                        chain.broken.add(stream)
                    yield ChainFinding("log.chain", stream or "", version,
                                       f"line {n} is not a complete event"
                                       f"{' (the file is truncated)' if not line.endswith(chr(10)) else ''}: {exc}")
                    continue
                self.events += 1
                if run and (env.stream != run[0].stream or len(run) >= BATCH):
                    yield from checked_run(chain, run)
                    run = []
                if env.stream not in chain.broken:
                    run.append(env)
            if run:
                yield from checked_run(chain, run)
        if self.lines == 0 and self.manifest is None:
            raise SourceError(f"{self.name} is empty (and has no manifest saying the log is)")
        if self.manifest is not None:
            yield from self._against_manifest(chain)

    def _against_manifest(self, chain: RecomputedChains) -> Iterator[ChainFinding]:
        yield from self._against_manifest_heads(chain)
        want_events, want_digest = self.manifest["events"], self.manifest["log_digest"]
        if self.events != want_events:
            yield ChainFinding("log.chain", "", None,
                               f"the export's manifest counts {want_events:,} events but the file "
                               f"holds {self.events:,}")
        digest = log_digest(chain.heads)
        if digest != want_digest:
            yield ChainFinding("log.chain", "", None,
                               f"the log digest of what the file verifies to ({digest}) is not the "
                               f"export manifest's ({want_digest})")

    def _against_manifest_heads(self, chain: RecomputedChains) -> Iterator[ChainFinding]:
        listed = self.manifest["streams"]
        for stream in sorted(set(listed) | set(chain.heads)):
            want = listed.get(stream)
            if stream in chain.broken:
                continue
            have_v, have_h = chain.heads.get(stream, (0, ZERO_HASH))
            if want is None:
                yield ChainFinding("log.chain", stream, have_v,
                                   "stream is not in the export's manifest")
                continue
            if have_v < want["version"]:
                yield ChainFinding("log.chain", stream, have_v + 1,
                                   f"the file ends at version {have_v} but the export's manifest "
                                   f"has the stream up to version {want['version']} "
                                   "(events are missing from the end: a truncated file)")
            elif (have_v, have_h.hex()) != (want["version"], want["head_hash"]):
                yield ChainFinding("log.chain", stream, have_v,
                                   f"head (version {have_v}, hash {have_h.hex()[:16]}…) is not the "
                                   f"manifest's (version {want['version']}, hash "
                                   f"{want['head_hash'][:16]}…)")


def _located(line: str) -> tuple[str | None, int | None]:
    """The stream and version a (possibly cut) export line starts with, if readable."""
    m = _PREFIX.match(line)
    if not m:
        return None, None
    try:
        return json.loads(f'"{m.group(1)}"'), int(m.group(2))
    except ValueError:
        return None, None


def envelope_from_json(line: str) -> Envelope:
    """One export line back into an envelope (hashes from hex, tagged bytes restored)."""
    o = json.loads(line)
    data = o["data"]
    if type(data) is not dict:
        raise ValueError("data is not a JSON object")
    if BYTES_TAG in line:
        data = _untag(data)
    fields = (o["stream"], o["version"], o["type"], o["schema_version"], o["recorded_at"],
              o["command_id"], o["correlation_id"], o["causation_id"], data,
              bytes.fromhex(o["prev_hash"]), bytes.fromhex(o["hash"]))
    if type(fields[0]) is not str or type(fields[1]) is not int:
        raise ValueError("stream must be a string and version an integer")
    return _new(Envelope, fields)


def _untag(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        if len(value) == 1 and BYTES_TAG in value and type(value[BYTES_TAG]) is str:
            return bytes.fromhex(value[BYTES_TAG])
        return {k: _untag(v) for k, v in value.items()}
    if kind is list:
        return [_untag(v) for v in value]
    return value
