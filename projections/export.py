"""Exporting a log for auditors and analysts: JSONL or Parquet, plus a manifest of heads.

Every event becomes one record with every envelope field, in stream order (streams
sorted by name): `stream, version, type, schema_version, recorded_at, command_id,
correlation_id, causation_id, data, prev_hash, hash`, hashes as lowercase hex.

- JSONL (`events.jsonl`): one JSON object per line, `data` a JSON object. The payload
  round-trips to the exact values that were hashed (docs/AUDIT.md): JSON integers are
  exact in Python, arrays come back as arrays, and the one msgpack value JSON has no
  form for, bytes, is written `{"$bytes": "<hex>"}` (a payload map whose only key is
  `$bytes` could not be told apart, so exporting one is refused). `saleday audit --log`
  reads it back and recomputes every hash.
- Parquet (`events.parquet`, pyarrow): the same columns typed for query engines, plus
  `entity` (the SKU, user, order, campaign or team the event is about, `ENTITY_FIELDS`):
  `recorded_at` a UTC timestamp (ms), `data` that JSON text as Parquet's JSON logical type
  (DuckDB reads it as `JSON`: `data->>'sku'`), hashes as hex; row groups of `BATCH`
  events, readable by DuckDB (`FROM 'events.parquet'`).

Both are written while reading, a page of events at a time, so memory stays bounded
however long the log. `manifest.json` records each stream's last version and head hash
and the log digest, so a file that was cut short is told from a complete one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saleday.events import Envelope, EventLogError, EventStore
from saleday.events.store import redact
from saleday.projections.source import BYTES_TAG, MANIFEST, log_digest
from saleday.projections.store_source import open_existing

FORMATS = ("jsonl", "parquet")
BATCH = 10_000
"""Events read per page and written per Parquet row group."""

COLUMNS = ("stream", "version", "type", "schema_version", "recorded_at", "command_id",
           "correlation_id", "causation_id", "data", "prev_hash", "hash")
PARQUET_COLUMNS = ("stream", "version", "type", "schema_version", "recorded_at", "entity",
                   "command_id", "correlation_id", "causation_id", "data", "prev_hash", "hash")

ENTITY_FIELDS = {"inventory": "sku", "sessions": "user", "orders": "order_id",
                 "coupons": "campaign", "teams": "team"}
"""The payload field naming an event's entity, by the type's family (`inventory.*`: `sku`)."""


def entity_of(env: Envelope) -> str | None:
    """The id of the entity an event is about (its shard's key), or None if unknown."""
    field = ENTITY_FIELDS.get(env.type.partition(".")[0])
    value = env.data.get(field) if field is not None else None
    return value if type(value) is str else None


class ExportError(EventLogError):
    """A log that cannot be exported as asked (bad format, unwritable dir, a payload
    JSON cannot carry unambiguously, a store that cannot be read)."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    manifest: Path
    format: str
    events: int
    streams: dict[str, int]
    log_digest: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "manifest": str(self.manifest), "format": self.format,
                "events": self.events, "streams": self.streams, "log_digest": self.log_digest,
                "seconds": round(self.seconds, 3)}


def _tag(value: Any) -> Any:
    if type(value) is bytes:
        return {BYTES_TAG: value.hex()}
    raise TypeError(f"{type(value).__name__} is not a log payload value")


def data_json(env: Envelope) -> str:
    """The payload as JSON text, bytes tagged; refuses a map JSON would confuse with bytes."""
    text = json.dumps(env.data, ensure_ascii=False, separators=(",", ":"), default=_tag)
    if BYTES_TAG in text and _ambiguous(env.data):
        raise ExportError(f"stream {env.stream!r} version {env.version}: the payload holds a map "
                          f"whose only key is {BYTES_TAG!r}, which the export uses for bytes")
    return text


def _ambiguous(value: Any) -> bool:
    if type(value) is dict:
        if set(value) == {BYTES_TAG}:
            return True
        return any(_ambiguous(v) for v in value.values())
    if type(value) in (list, tuple):
        return any(_ambiguous(v) for v in value)
    return False


def jsonl_line(env: Envelope) -> str:
    """One event as an export line (stream and version first, so a cut line is locatable)."""
    return (f'{{"stream":{json.dumps(env.stream, ensure_ascii=False)},"version":{env.version},'
            f'"type":{json.dumps(env.type, ensure_ascii=False)},"schema_version":{env.schema_version},'
            f'"recorded_at":{env.recorded_at},'
            f'"command_id":{json.dumps(env.command_id, ensure_ascii=False)},'
            f'"correlation_id":{json.dumps(env.correlation_id, ensure_ascii=False)},'
            f'"causation_id":{json.dumps(env.causation_id, ensure_ascii=False)},'
            f'"data":{data_json(env)},"prev_hash":"{env.prev_hash.hex()}","hash":"{env.hash.hex()}"}}\n')


def _events(store: EventStore, heads: dict[str, tuple[int, bytes]]) -> Iterator[list[Envelope]]:
    """Every stream's events, a page at a time, recording each stream's last event. The
    streams are those with commits as well as those with heads: a stream whose head record
    was lost is exported too (the audit of the store reports it)."""
    for stream in sorted(set(store.logged_streams()) | set(store.streams())):
        pos = 1
        while page := store.read(stream, pos, BATCH):
            yield page
            pos = page[-1].version + 1
            heads[stream] = (page[-1].version, page[-1].hash)


def export(url: str, *, fmt: str, out: str | Path) -> ExportResult:
    """Write the log at store `url` to `out`/events.<fmt> and `out`/manifest.json."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use jsonl or parquet")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out}: {exc}") from exc
    path = out / f"events.{fmt}"
    started = time.perf_counter()
    heads: dict[str, tuple[int, bytes]] = {}
    store = open_existing(url)  # read-only: nothing is created or written in the log
    try:
        events = (_write_jsonl if fmt == "jsonl" else _write_parquet)(path, _events(store, heads))
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from exc
    finally:
        store.close()
    digest = log_digest(heads)
    manifest = out / MANIFEST
    manifest.write_text(json.dumps({
        "format": "saleday-export/1", "file": path.name, "file_format": fmt,
        "source": redact(url), "exported_at_ms": time.time_ns() // 1_000_000,
        "events": events,
        "streams": {s: {"version": v, "head_hash": h.hex()} for s, (v, h) in sorted(heads.items())},
        "log_digest": digest}, indent=1) + "\n")
    return ExportResult(path=path, manifest=manifest, format=fmt, events=events,
                        streams={s: v for s, (v, _) in sorted(heads.items())}, log_digest=digest,
                        seconds=time.perf_counter() - started)


def _write_jsonl(path: Path, pages: Iterator[list[Envelope]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for page in pages:
            f.writelines(map(jsonl_line, page))
            n += len(page)
    return n


def _write_parquet(path: Path, pages: Iterator[list[Envelope]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("stream", pa.string()), ("version", pa.int64()), ("type", pa.string()),
                        ("schema_version", pa.int32()),
                        ("recorded_at", pa.timestamp("ms", tz="UTC")), ("entity", pa.string()),
                        ("command_id", pa.string()), ("correlation_id", pa.string()),
                        ("causation_id", pa.string()), ("data", pa.json_(pa.string())),
                        ("prev_hash", pa.string()), ("hash", pa.string())])
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for page in pages:
            columns = {
                "stream": [e.stream for e in page], "version": [e.version for e in page],
                "type": [e.type for e in page], "schema_version": [e.schema_version for e in page],
                "recorded_at": [e.recorded_at for e in page],
                "entity": [entity_of(e) for e in page],
                "command_id": [e.command_id for e in page],
                "correlation_id": [e.correlation_id for e in page],
                "causation_id": [e.causation_id for e in page],
                "data": [data_json(e) for e in page],
                "prev_hash": [e.prev_hash.hex() for e in page], "hash": [e.hash.hex() for e in page]}
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            n += len(page)
    return n
