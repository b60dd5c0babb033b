"""Where an audit reads a log from: a store, a data dir, a JSONL export, or envelopes in hand.

A source yields, stream by stream and in version order, `(stream, envelopes)` batches of
events whose hash chain it has checked, and a `ChainFinding` where a stream stops being
checkable (a gap, a broken link, a record that cannot be read). Events after a break are
not yielded: nothing vouches for them. After iteration, `heads` holds each stream's last
verified version and hash, from which the log digest is computed.

- `StoreSource` opens the store read-only (nothing is created or written), lists the
  streams from the commits themselves as well as from the store's heads (a stream whose
  head was deleted is audited, and reported), checks the chain over the stored bytes (the
  rule of `events.verify_commits`, what `saleday log verify` does) in the same pass that
  decodes each event, and asks `verify_commits` itself where a commit that fails is broken.
- `JsonlSource` reads an export line by line (bounded memory) and recomputes every hash
  from the decoded fields (`events.event_hash`, the rule in docs/LOG_FORMAT.md), so it
  trusts neither the stored hashes nor this code's stores. A `manifest.json` next to the
  file (written by `saleday export`) gives the heads, the event count and the log digest
  the export had: a stream that ends early (a truncated file), a count or a digest that
  differs is reported against it. A line that cannot be read (not UTF-8, not JSON, nested
  too deep, missing fields) is a finding at that line.
- `EnvelopeSource` recomputes the chain of envelopes already in memory (the simulator's).

Errors that make a source unreadable as a whole (no such file, no store there) raise
`SourceError`; damage inside a readable log is a finding, not an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import blake2b
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgpack
from msgpack import Unpacker

from saleday.events import (
    ZERO_HASH,
    CorruptRecordError,
    Envelope,
    EventLogError,
    EventStore,
    StoredCommit,
    event_hash,
    open_store,
    verify_commits,
)
from saleday.events.chain import HASH_SIZE
from saleday.events.codec import decode_commit, gc_paused
from saleday.events.store import redact

BATCH = 256
"""Events per batch handed to the audit: small batches stay in the CPU cache while they are
verified and folded (20,000 were a third slower than 256 here)."""

MANIFEST = "manifest.json"
BYTES_TAG = "$bytes"
"""How an export writes a bytes value: `{"$bytes": "<hex>"}` (JSON has no bytes)."""

_new = tuple.__new__
_FIELDS = 11
_ROW = 9
_stream, _version, _data = itemgetter(0), itemgetter(1), itemgetter(8)


class SourceError(EventLogError):
    """A log source that cannot be read at all: exit status 2 for the CLI."""


@dataclass(frozen=True, slots=True)
class ChainFinding:
    """Where a stream's log stops being verifiable, and why."""

    rule: str
    stream: str
    version: int | None
    message: str


Item = tuple[str, list[Envelope]] | ChainFinding


class LogSource:
    """What the audit iterates: verified batches and chain findings; then `heads`."""

    name: str = "log"
    verified_by: str = ""
    rows_ok: bool = False
    """May batches hold an envelope's first nine fields as plain tuples (no hashes)? All
    the audit's rules read only those; views need envelopes, so `run_audit` says."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, bytes]] = {}

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds open."""


def log_digest(heads: dict[str, tuple[int, bytes]]) -> str:
    """BLAKE2b-256 (hex) of msgpack `[[stream, last_version, head_hash], ...]`, by stream.

    Streams are sorted by their UTF-8 bytes; `head_hash` is the raw 32 bytes. Two logs
    with the same digest have the same streams, lengths and (by the chain) contents.
    """
    rows = [[s, v, h] for s, (v, h) in sorted(heads.items(), key=lambda kv: kv[0].encode())]
    return blake2b(msgpack.packb(rows, use_bin_type=True), digest_size=32).hexdigest()


# --- a store -------------------------------------------------------------------------


class StoreSource(LogSource):
    """Every stream of a store, verified over the stored bytes and decoded once."""

    verified_by = "the stored bytes (the rule of events.verify_commits)"

    def __init__(self, url: str, *, streams: Iterable[str] | None = None) -> None:
        super().__init__()
        self.name = redact(url)
        self._last_cid: dict[str, str] = {}
        try:
            self.store = open_existing(url)
            try:
                # The commits first: a stream committed meanwhile then has its head too.
                self._logged = self.store.logged_streams()
                self._listed: dict[str, int] | None = self.store.streams()
            except BaseException:
                self.store.close()
                raise
        except EventLogError as exc:
            raise SourceError(str(exc)) from exc
        if streams is not None:
            self._streams = list(streams)
            self._listed = None  # the caller chose the streams: no listing to check
        else:
            self._streams = sorted(set(self._logged) | set(self._listed))

    def __iter__(self) -> Iterator[Item]:
        for stream in self._streams:
            yield from self._stream(stream)

    def _stream(self, stream: str) -> Iterator[Item]:
        """The stream up to its head as it was when the audit began (a live store keeps
        growing; what is appended meanwhile is left to the next audit)."""
        version, head_hash = 0, ZERO_HASH
        try:
            head = self.store.head(stream)
            end = max(head.version, self._logged.get(stream, 0))
            chunk: list = []
            size = 0
            for commit in self.store.read_commits(stream):
                if commit.first_version > end:
                    break
                chunk.append(commit)
                size += commit.last_version - commit.first_version + 1
                if size >= BATCH:
                    version, head_hash, broken = yield from self._checked(stream, chunk, version, head_hash)
                    if broken:
                        return
                    chunk, size = [], 0
            if chunk:
                version, head_hash, broken = yield from self._checked(stream, chunk, version, head_hash)
                if broken:
                    return
        except CorruptRecordError as exc:  # raised while reading, before verification
            self.heads[stream] = (version, head_hash)
            yield ChainFinding("log.chain", stream, exc.version, exc.reason)
            return
        except EventLogError as exc:
            raise SourceError(str(exc)) from exc
        self.heads[stream] = (version, head_hash)
        if self._listed is not None and stream not in self._listed:
            yield ChainFinding("log.chain", stream, None,
                               f"the stream holds events up to version {version} but the store's "
                               "list of streams does not name it ("
                               + (f"its head says version {head.version}" if head.version else
                                  "it has no head record")
                               + "): whatever lists streams by their heads would not see it")
        elif (head.version, head.hash) != (version, head_hash):
            yield ChainFinding("log.chain", stream, version + 1 if version < head.version else version,
                               f"the stream's recorded head (version {head.version}, hash "
                               f"{head.hash.hex()[:16]}…) is not its last event (version "
                               f"{version}): " + ("events are missing from the end"
                                                  if version < head.version else
                                                  "the head or the last event was altered"))

    def _checked(self, stream: str, chunk: list, version: int, head_hash: bytes):
        """Verify and decode `chunk`, yield its envelopes; return (version, hash, broken)."""
        out: list = []
        twice: list[ChainFinding] = []
        rows_ok = self.rows_ok
        with gc_paused():
            for commit in chunk:
                done = _verified(stream, commit, version, head_hash, rows_ok)
                if done is None:  # let the reference check say exactly where and why
                    try:
                        verify_commits(stream, [commit], version, head_hash)
                        envs = decode_commit(*commit)
                        done = envs, envs[-1].hash
                    except CorruptRecordError as exc:
                        if out:
                            yield stream, out
                        yield from twice
                        self.heads[stream] = (version, head_hash)
                        yield ChainFinding("log.chain", stream, exc.version, exc.reason)
                        return version, head_hash, True
                rows = done[0]
                # A command's events are one run, which the audit checks; only the store
                # shows where commits meet, so a run that spans two commits is caught here.
                if out and rows[0][5] == out[-1][5] or not out and rows[0][5] == self._last_cid.get(stream):
                    twice.append(ChainFinding(
                        "log.commands", stream, commit.first_version,
                        f"command {rows[0][5]!r} recorded again: its effects are in the commit "
                        f"before this one too"))
                out += rows
                version, head_hash = commit.last_version, done[1]
        self._last_cid[stream] = out[-1][5]
        yield stream, out
        yield from twice
        return version, head_hash, False

    def close(self) -> None:
        self.store.close()


def _verified(stream: str, commit: StoredCommit, version: int, head_hash: bytes,
              rows_ok: bool = False) -> tuple[list, bytes] | None:
    """The commit's envelopes and last hash if it verifies over its stored bytes, else None.

    The rule of `events.verify_commits` (each hash = BLAKE2b-256(previous hash + the
    event's stored bytes), versions gapless, each event in its place) in one pass that
    also keeps the decoded events, so the audit unpacks each event once. With `rows_ok`
    they are returned as decoded rows (an envelope's first nine fields), saving the
    envelopes.
    Anything amiss returns None and the caller asks `verify_commits` where and why.
    """
    first, last, body = commit.first_version, commit.last_version, commit.body
    n = last - first + 1
    if first != version + 1 or commit.prev_hash != head_hash or n < 1 \
            or len(commit.hashes) != n * HASH_SIZE:
        return None
    try:
        unpacker = Unpacker(use_list=False, raw=False, max_buffer_size=len(body) + 1)
        unpacker.feed(body)
        if unpacker.read_array_header() != n:
            return None
        unpack, tell = unpacker.unpack, unpacker.tell
        pos = tell()
        h = head_hash
        hashes: list[bytes] = []
        if rows_ok:
            rows = []
            for _ in range(n):
                rows.append(unpack())
                end = tell()
                h = blake2b(h + body[pos:end], digest_size=HASH_SIZE).digest()
                hashes.append(h)
                pos = end
        else:
            rows = []
            for _ in range(n):
                row = unpack()
                end = tell()
                prev = h
                h = blake2b(h + body[pos:end], digest_size=HASH_SIZE).digest()
                hashes.append(h)
                rows.append(_new(Envelope, row + (prev, h)))
                pos = end
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types on bad bytes
        return None
    if (pos != len(body) or b"".join(hashes) != commit.hashes
            or list(map(_version, rows)) != list(range(first, last + 1))
            or set(map(_stream, rows)) != {stream}
            or set(map(len, rows)) != ({_ROW, _FIELDS} & {len(rows[0])})
            or set(map(type, map(_data, rows))) != {dict}):
        return None
    return rows, h


def open_existing(url: str) -> EventStore:
    """Open the log at `url` read-only: it must exist, and nothing is created or written
    (opening a missing log for writing would quietly create an empty one, which would then
    audit as a clean one). Raises `StoreUnavailable` (an `EventLogError`) otherwise."""
    return open_store(url, read_only=True)


def data_dir_url(path: str | Path) -> str:
    """The store URL of a saleday data dir (`<dir>/events.db`), which must exist."""
    db = Path(path) / "events.db"
    if not db.is_file():
        raise SourceError(f"no event log in data dir {str(path)!r} (expected {db})")
    return f"sqlite:///{db}"


# --- envelopes in memory -------------------------------------------------------------


class _Recompute:
    """Per-stream chain state, recomputing each hash from the fields."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, bytes]] = {}
        self.broken: set[str] = set()

    def check(self, envs: list[Envelope]) -> tuple[list[Envelope], ChainFinding | None]:
        """The verified prefix of one stream's `envs`, and the break after it, if any."""
        stream = envs[0].stream
        v, h = self.heads.get(stream, (0, ZERO_HASH))
        for i, env in enumerate(envs):
            v += 1
            problem = None
            if env.version != v:
                problem = (f"expected version {v} of this stream, found version {env.version}"
                           + (" (an event is missing or out of order)" if env.version > v
                              else " (out of order or repeated)"))
            elif env.prev_hash != h:
                problem = "prev_hash is not the previous event's hash"
            else:
                try:
                    if event_hash(h, env) != env.hash:
                        problem = "hash does not match the event's content"
                except CorruptRecordError as exc:
                    problem = exc.reason
            if problem is not None:
                self.heads[stream] = (v - 1, h)
                self.broken.add(stream)
                return envs[:i], ChainFinding("log.chain", stream, v, problem)
            h = env.hash
        self.heads[stream] = (v, h)
        return envs, None


class EnvelopeSource(LogSource):
    """Envelopes already in memory (any interleaving of streams, each in version order);
    every hash is recomputed from the fields."""

    verified_by = "recomputed from the fields (docs/LOG_FORMAT.md)"

    def __init__(self, envelopes: Iterable[Envelope], name: str = "envelopes") -> None:
        super().__init__()
        self.name = name
        self._envelopes = envelopes

    def __iter__(self) -> Iterator[Item]:
        chain = _Recompute()
        self.heads = chain.heads
        run: list[Envelope] = []
        for env in self._envelopes:
            if run and (env.stream != run[0].stream or len(run) >= BATCH):
                yield from _checked_run(chain, run)
                run = []
            if env.stream not in chain.broken:
                run.append(env)
        if run:
            yield from _checked_run(chain, run)


def _checked_run(chain: _Recompute, run: list[Envelope]) -> Iterator[Item]:
    if run[0].stream in chain.broken:
        return
    good, finding = chain.check(run)
    if good:
        yield run[0].stream, good
    if finding is not None:
        yield finding


# --- a JSONL export ------------------------------------------------------------------

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
        chain = _Recompute()
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
                        yield from _checked_run(chain, run)
                        run = []
                    if stream is not None:
                        chain.broken.add(stream)
                    yield ChainFinding("log.chain", stream or "", version,
                                       f"line {n} is not a complete event"
                                       f"{' (the file is truncated)' if not line.endswith(chr(10)) else ''}: {exc}")
                    continue
                self.events += 1
                if run and (env.stream != run[0].stream or len(run) >= BATCH):
                    yield from _checked_run(chain, run)
                    run = []
                if env.stream not in chain.broken:
                    run.append(env)
            if run:
                yield from _checked_run(chain, run)
        if self.lines == 0 and self.manifest is None:
            raise SourceError(f"{self.name} is empty (and has no manifest saying the log is)")
        if self.manifest is not None:
            yield from self._against_manifest(chain)

    def _against_manifest(self, chain: _Recompute) -> Iterator[ChainFinding]:
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

    def _against_manifest_heads(self, chain: _Recompute) -> Iterator[ChainFinding]:
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


def open_source(*, store: str | None = None, data: str | Path | None = None,
                log: str | Path | None = None, manifest: str | Path | None = None) -> LogSource:
    """The one source the options name (exactly one of them)."""
    given = [x for x in (store, data, log) if x is not None]
    if len(given) != 1:
        raise SourceError("name exactly one log: --store URL, --data DIR or --log FILE")
    if store is not None:
        return StoreSource(store)
    if data is not None:
        return StoreSource(data_dir_url(data))
    return JsonlSource(log, manifest=manifest)  # type: ignore[arg-type]
