"""Where an audit reads a log from: what a log source is, and envelopes in hand.

A source yields, stream by stream and in version order, `(stream, envelopes)` batches of
events whose hash chain it has checked (with `events.ChainVerifier`, the one verifier),
and a `ChainFinding` where a stream stops being checkable (a gap, a broken link, a record
that cannot be read). Events after a break are not yielded: nothing vouches for them.
After iteration, `heads` holds each stream's last verified version and hash, from which
the log digest is computed.

The kinds, one module each:
- `StoreSource` (projections/store_source.py): a store or a data dir, verified over the
  stored bytes;
- `JsonlSource` (projections/jsonl_source.py): a JSONL export, every hash recomputed, and
  checked against the export's manifest;
- `EnvelopeSource` (here): envelopes already in memory (the simulator's), every hash
  recomputed.
`open_source` opens the one a command line names.

Errors that make a source unreadable as a whole (no such file, no store there) raise
`SourceError`; damage inside a readable log is a finding, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

import msgpack

from saleday.events import ChainVerifier, Envelope, EventLogError

BATCH = 256
"""Events per batch handed to the audit: small batches stay in the CPU cache while they are
verified and folded (20,000 were a third slower than 256 here)."""

MANIFEST = "manifest.json"
BYTES_TAG = "$bytes"
"""How an export writes a bytes value: `{"$bytes": "<hex>"}` (JSON has no bytes)."""


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


# --- envelopes in memory -------------------------------------------------------------


class RecomputedChains:
    """Each stream's `ChainVerifier` over decoded fields, for sources that recompute every
    hash; `heads` follows what each stream verified to, `broken` the streams that broke."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, bytes]] = {}
        self.broken: set[str] = set()
        self._chains: dict[str, ChainVerifier] = {}

    def check(self, envs: list[Envelope]) -> tuple[list[Envelope], ChainFinding | None]:
        """The verified prefix of one stream's `envs`, and the break after it, if any."""
        stream = envs[0].stream
        chain = self._chains.get(stream)
        if chain is None:
            chain = self._chains[stream] = ChainVerifier(stream)
        good, broken = chain.check(envs)
        self.heads[stream] = (chain.version, chain.head_hash)
        if broken is None:
            return envs, None
        self.broken.add(stream)
        return envs[:good], ChainFinding("log.chain", stream, broken.version, broken.reason)


class EnvelopeSource(LogSource):
    """Envelopes already in memory (any interleaving of streams, each in version order);
    every hash is recomputed from the fields."""

    verified_by = "recomputed from the fields (docs/LOG_FORMAT.md)"

    def __init__(self, envelopes: Iterable[Envelope], name: str = "envelopes") -> None:
        super().__init__()
        self.name = name
        self._envelopes = envelopes

    def __iter__(self) -> Iterator[Item]:
        chain = RecomputedChains()
        self.heads = chain.heads
        run: list[Envelope] = []
        for env in self._envelopes:
            if run and (env.stream != run[0].stream or len(run) >= BATCH):
                yield from checked_run(chain, run)
                run = []
            if env.stream not in chain.broken:
                run.append(env)
        if run:
            yield from checked_run(chain, run)


def checked_run(chain: RecomputedChains, run: list[Envelope]) -> Iterator[Item]:
    """The verified prefix of one stream's `run` as a batch, then the break after it, if any."""
    if run[0].stream in chain.broken:
        return
    good, finding = chain.check(run)
    if good:
        yield run[0].stream, good
    if finding is not None:
        yield finding


def open_source(*, store: str | None = None, data: str | Path | None = None,
                log: str | Path | None = None, manifest: str | Path | None = None) -> LogSource:
    """The one source the options name (exactly one of them)."""
    from saleday.projections.jsonl_source import JsonlSource  # the kinds import this module
    from saleday.projections.store_source import StoreSource, data_dir_url

    given = [x for x in (store, data, log) if x is not None]
    if len(given) != 1:
        raise SourceError("name exactly one log: --store URL, --data DIR or --log FILE")
    if store is not None:
        return StoreSource(store)
    if data is not None:
        return StoreSource(data_dir_url(data))
    return JsonlSource(log, manifest=manifest)  # type: ignore[arg-type]
