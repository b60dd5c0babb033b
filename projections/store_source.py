"""Auditing a store, or a saleday data dir (which is a SQLite store at `<dir>/events.db`).

`StoreSource` opens the store read-only (nothing is created or written), lists the streams
from the commits themselves as well as from the store's heads (a stream whose head was
deleted is audited, and reported), and has `ChainVerifier.read_commit` check the chain over
the stored bytes (the rule of `events.verify_commits`, what `saleday log verify` does) in
the same pass that decodes each event. A stream whose recorded head is not its last
verified event, and a command whose events straddle two commits, are findings too.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from pathlib import Path

from saleday.events import ChainVerifier, CorruptRecordError, EventLogError, EventStore, open_store
from saleday.events.codec import gc_paused
from saleday.events.store import redact
from saleday.projections.source import BATCH, ChainFinding, Item, LogSource, SourceError


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
        chain = ChainVerifier(stream)
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
                    if (yield from self._checked(chain, chunk)):
                        return
                    chunk, size = [], 0
            if chunk and (yield from self._checked(chain, chunk)):
                return
        except CorruptRecordError as exc:  # raised while reading, before verification
            self.heads[stream] = (chain.version, chain.head_hash)
            yield ChainFinding("log.chain", stream, exc.version, exc.reason)
            return
        except EventLogError as exc:
            raise SourceError(str(exc)) from exc
        version, head_hash = chain.version, chain.head_hash
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

    def _checked(self, chain: ChainVerifier, chunk: list) -> Generator[Item, None, bool]:
        """Verify and decode `chunk`, yield its envelopes; return whether the chain broke."""
        stream = chain.stream
        out: list = []
        twice: list[ChainFinding] = []
        rows_ok = self.rows_ok
        with gc_paused():
            for commit in chunk:
                try:
                    rows = chain.read_commit(commit, rows_ok)
                except CorruptRecordError as exc:
                    if out:
                        yield stream, out
                    yield from twice
                    self.heads[stream] = (chain.version, chain.head_hash)
                    yield ChainFinding("log.chain", stream, exc.version, exc.reason)
                    return True
                # A command's events are one run, which the audit checks; only the store
                # shows where commits meet, so a run that spans two commits is caught here.
                if out and rows[0][5] == out[-1][5] or not out and rows[0][5] == self._last_cid.get(stream):
                    twice.append(ChainFinding(
                        "log.commands", stream, commit.first_version,
                        f"command {rows[0][5]!r} recorded again: its effects are in the commit "
                        f"before this one too"))
                out += rows
        self._last_cid[stream] = out[-1][5]
        yield stream, out
        yield from twice
        return False

    def close(self) -> None:
        self.store.close()


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
