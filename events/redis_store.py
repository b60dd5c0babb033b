"""The cluster event store: Redis Streams, one stream key per event stream.

Keys of one event stream share the hash tag `{<stream>}` so a commit's script touches
one Redis Cluster slot:

    <prefix>:{<stream>}:log    a Redis stream; one entry per commit, id `<last_version>-0`,
                               fields f (first version), p (prev hash), h (hashes), b (body)
    <prefix>:{<stream>}:meta   hash: version, hash (head hash), epoch
    <prefix>:{<stream>}:cmd    hash: command id -> last version of the commit that holds it
    <prefix>:{<stream>}:snap   hash: version, recorded_at, data
    <prefix>:streams           set of stream names (added before a stream's first append)

An append is one Lua script: it checks the writer epoch, the command-id dedup record,
and that the stream is still at the version and head hash the client sealed against,
then XADDs the commit and updates the head and the dedup record. Redis runs a script
atomically, so a commit is all or nothing. Hashes are computed by the client (Redis has
no blake2b), which is why the script checks the head hash too.

Durability on one server is the server's: with `appendonly yes` and `appendfsync always`
an acknowledged commit survives a Redis crash; with `everysec` up to a second of commits
can be lost on an OS crash. Across a failover, `wait_replicas=N` in the URL acknowledges
a commit only once `WAIT N wait_timeout_ms` (on the append's own connection) counts N
replicas; fewer is `ReplicationShortfall`. docs/STORES.md says more.

Opened `read_only` (auditors, exports, views, `status`), the store pings the server at
once (so a wrong password is an error, not an empty log), requires keys under its
prefix, and never writes: no key is created, appends and snapshots raise
`StoreUnavailable`. `logged_streams()` finds streams by their `:log` keys (SCAN), not by
the index set, so a stream dropped from the index is still audited.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions

from saleday.events.chain import seal
from saleday.events.envelope import (
    ZERO_HASH,
    AppendResult,
    NewEvent,
    Snapshot,
    StoredCommit,
    StreamHead,
)
from saleday.events.errors import (
    ConcurrencyError,
    CorruptRecordError,
    DuplicateCommandError,
    FencedError,
    InvalidStoreUrl,
    InvalidStreamName,
    ReplicationShortfall,
    SnapshotError,
    StoreUnavailable,
)
from saleday.events.store import StoreBase, check_expected, check_stream, redact

_APPEND = """
local meta, log, cmds = KEYS[1], KEYS[2], KEYS[3]
local base, prev, epoch = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local head = redis.call('HMGET', meta, 'version', 'hash', 'epoch')
local version = tonumber(head[1]) or 0
local current_epoch = tonumber(head[3]) or 0
if epoch >= 0 and epoch < current_epoch then
  return {'fenced', current_epoch}
end
local n = #ARGV - 8
local hits, at, mixed = 0, false, false
for i = 9, #ARGV, 500 do
  local found = redis.call('HMGET', cmds, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  for j = 1, #found do
    local v = found[j]
    if v then
      hits = hits + 1
      if at and at ~= v then mixed = true end
      at = v
    end
  end
end
if hits > 0 then
  if hits == n and not mixed then
    local entry = redis.call('XRANGE', log, at .. '-0', at .. '-0')[1]
    local fields = entry[2]
    local first, hashes
    for k = 1, #fields, 2 do
      if fields[k] == 'f' then first = fields[k + 1] end
      if fields[k] == 'h' then hashes = fields[k + 1] end
    end
    return {'dup', first, at, string.sub(hashes, -32)}
  end
  return {'partial'}
end
if version ~= base or (head[2] or string.rep('\\0', 32)) ~= prev then
  return {'conflict', version}
end
redis.call('XADD', log, ARGV[5] .. '-0', 'f', ARGV[4], 'p', prev, 'h', ARGV[7], 'b', ARGV[8])
redis.call('HSET', meta, 'version', ARGV[5], 'hash', ARGV[6], 'epoch', math.max(epoch, current_epoch))
for i = 9, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    args[#args + 1] = ARGV[j]
    args[#args + 1] = ARGV[5]
  end
  redis.call('HSET', cmds, unpack(args))
end
return {'ok'}
"""

_SAVE_SNAPSHOT = """
local version = tonumber(ARGV[1])
local head = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
if version < 1 or version > head then
  return {'outside', head}
end
local kept = tonumber(redis.call('HGET', KEYS[2], 'version')) or 0
if version >= kept then
  redis.call('HSET', KEYS[2], 'version', ARGV[1], 'recorded_at', ARGV[2], 'data', ARGV[3])
end
return {'ok'}
"""

_READ_PAGE = 64  # commits per XRANGE call


def _is_stream(name: str) -> bool:
    try:
        check_stream(name)
    except InvalidStreamName:
        return False
    return True


def _glob(text: str) -> str:
    """`text` with the characters special to a Redis MATCH pattern escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """The options of a Redis store URL that saleday reads itself (the rest are redis-py's)."""

    prefix: str = "saleday"
    connect_timeout: float = 2.0
    socket_timeout: float = 10.0
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000


def store_options(url: str) -> tuple[StoreOptions, dict[str, str]]:
    """Saleday's options of a Redis store URL, and the query options left for redis-py."""
    opts = dict(parse_qsl(urlsplit(url).query))
    try:
        ours = StoreOptions(prefix=opts.pop("prefix", "saleday"),
                            connect_timeout=float(opts.pop("connect_timeout", 2.0)),
                            socket_timeout=float(opts.pop("socket_timeout", 10.0)),
                            wait_replicas=int(opts.pop("wait_replicas", 0)),
                            wait_timeout_ms=int(opts.pop("wait_timeout_ms", 1000)))
    except ValueError as exc:
        raise InvalidStoreUrl(f"{redact(url)}: timeouts must be numbers of seconds, "
                              "wait_replicas and wait_timeout_ms whole numbers") from exc
    if not ours.prefix or "{" in ours.prefix or "}" in ours.prefix:
        raise InvalidStoreUrl(f"{redact(url)}: prefix must be non-empty, without braces")
    if ours.wait_replicas < 0 or ours.wait_timeout_ms < 1:
        raise InvalidStoreUrl(f"{redact(url)}: wait_replicas must be >= 0, wait_timeout_ms >= 1")
    return ours, opts


def client_from_url(url: str) -> tuple[redis.Redis, str]:
    """A redis-py client and the key prefix for a store URL (our options taken out)."""
    client, ours = _client(url)
    return client, ours.prefix


def _client(url: str) -> tuple[redis.Redis, StoreOptions]:
    parts = urlsplit(url)
    ours, opts = store_options(url)
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(opts), parts.fragment))
    try:
        client = redis.Redis.from_url(clean, socket_connect_timeout=ours.connect_timeout,
                                      socket_timeout=ours.socket_timeout, decode_responses=False)
    except ValueError as exc:
        raise InvalidStoreUrl(f"{redact(url)}: {exc}") from exc
    return client, ours


_ANY_RETRIES = 16


class RedisEventStore(StoreBase):
    """An `EventStore` on Redis Streams."""

    def __init__(self, client: redis.Redis, *, prefix: str = "saleday", url: str = "redis://",
                 read_only: bool = False, wait_replicas: int = 0,
                 wait_timeout_ms: int = 1000) -> None:
        self._r = client
        self.prefix = prefix
        self.url = redact(url)
        self.read_only = read_only
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._append = client.register_script(_APPEND)
        self._save_snapshot = client.register_script(_SAVE_SNAPSHOT)
        self._heads: dict[str, tuple[int, bytes]] = {}
        self._indexed: set[str] = set()
        if read_only:
            try:
                self._check_exists()
            except BaseException:
                client.close()
                raise

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> RedisEventStore:
        client, ours = _client(url)
        return cls(client, prefix=ours.prefix, url=url, read_only=read_only,
                   wait_replicas=ours.wait_replicas, wait_timeout_ms=ours.wait_timeout_ms)

    def _check_exists(self) -> None:
        """Raise `StoreUnavailable` unless the server answers and holds keys under the prefix."""
        with self._errors():
            self._r.ping()
            found = self._r.exists(f"{self.prefix}:streams") or next(
                iter(self._r.scan_iter(match=f"{_glob(self.prefix)}:*", count=1000)), None)
        if not found:
            raise StoreUnavailable(self.url, f"no event log under prefix {self.prefix!r} there "
                                             "(a reader never creates one)")

    # -- keys and errors --------------------------------------------------------------

    def _keys(self, stream: str) -> tuple[str, str, str, str]:
        tag = f"{self.prefix}:{{{stream}}}"
        return f"{tag}:meta", f"{tag}:log", f"{tag}:cmd", f"{tag}:snap"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._r.close()


    def master_of(self, stream: str) -> str:
        """`host:port` of the server that holds `stream` (one server: the URL's)."""
        check_stream(stream)
        kw = self._r.connection_pool.connection_kwargs
        return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"

    def ping(self) -> None:
        """Raise `StoreUnavailable` unless the server answers."""
        with self._errors():
            self._r.ping()

    # -- writing ----------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int | None,
               *, epoch: int | None = None) -> AppendResult:
        self._writable()
        check_stream(stream)
        check_expected(stream, expected_version, epoch)
        events = list(events)
        keys = self._keys(stream)
        with self._errors():
            if stream not in self._indexed:
                # The index may name a stream before it holds events, never the reverse.
                self._r.sadd(f"{self.prefix}:streams", stream)
                self._indexed.add(stream)
            head = self._heads.get(stream)
            if head is None:
                head = self._fetch_head(stream)
            for _ in range(_ANY_RETRIES):
                base, prev = head
                if expected_version is not None and expected_version != base:
                    # Seal against the caller's version: if the commit is a retry the
                    # script answers from its dedup record, else it reports the conflict.
                    base, prev = expected_version, ZERO_HASH
                sealed = seal(stream, base, prev, events)
                args = [base, prev, -1 if epoch is None else epoch, sealed.first_version,
                        sealed.last_version, sealed.head_hash, sealed.hashes, sealed.body,
                        *sealed.command_ids]
                reply, acked = self._run_append(stream, keys, args)
                status = reply[0]
                if status == b"ok":
                    self._heads[stream] = (sealed.last_version, sealed.head_hash)
                    self._check_replicas(stream, sealed.last_version, acked)
                    return AppendResult(stream=stream, first_version=sealed.first_version,
                                        last_version=sealed.last_version,
                                        head_hash=sealed.head_hash)
                if status == b"dup":
                    if self.wait_replicas:
                        # Our connection may not have written the recorded commit: wait for
                        # the master's whole stream up to now (a no-op write, then WAIT).
                        self._check_replicas(stream, int(reply[2]), self._touch_and_wait(
                            stream, keys[0]))
                    return AppendResult(stream=stream, first_version=int(reply[1]),
                                        last_version=int(reply[2]), head_hash=reply[3],
                                        duplicate=True)
                if status == b"fenced":
                    raise FencedError(stream, epoch or 0, int(reply[1]))
                if status == b"partial":
                    found = self._r.hmget(keys[2], sealed.command_ids)
                    raise DuplicateCommandError(stream, sorted(
                        cid for cid, v in zip(sealed.command_ids, found) if v is not None))
                actual = int(reply[1])
                if expected_version is not None and actual != expected_version:
                    self._heads.pop(stream, None)
                    raise ConcurrencyError(stream, expected_version, actual)
                head = self._fetch_head(stream)  # our cached head was stale; seal again
        raise ConcurrencyError(stream, expected_version, head[0])

    # -- acknowledged by replicas (WAIT) --------------------------------------------------

    def _node(self, stream: str) -> redis.Redis:
        """The client of the master that holds `stream` (one server here; per slot on a
        cluster). WAIT counts the writes of its own connection, so it and the append
        must go down one connection: one pipeline on this client."""
        return self._r

    def _run_append(self, stream: str, keys: tuple[str, ...], args: list) -> tuple[list, int]:
        """The append script's reply and, with `wait_replicas`, how many replicas WAIT
        counted (on the same connection, right after the script)."""
        if not self.wait_replicas:
            return self._append(keys=keys[:3], args=args), 0
        node = self._node(stream)
        for attempt in range(2):
            # EVALSHA itself, not the Script in the pipeline: redis-py would ask SCRIPT
            # EXISTS first, one more round trip on every commit.
            pipe = node.pipeline(transaction=False)
            pipe.evalsha(self._append.sha, 3, *keys[:3], *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                reply, acked = self._pipelined(pipe)
                return reply, int(acked)
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                node.script_load(_APPEND)  # a new or restarted master: nothing ran
        raise AssertionError("unreachable")

    def _touch_and_wait(self, stream: str, meta: str) -> int:
        pipe = self._node(stream).pipeline(transaction=False)
        pipe.hincrby(meta, "epoch", 0)  # writes nothing new, but moves this connection's offset
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        return int(self._pipelined(pipe)[1])

    def _pipelined(self, pipe) -> list:  # type: ignore[no-untyped-def]
        return pipe.execute()

    def _check_replicas(self, stream: str, last_version: int, acked: int) -> None:
        if acked < self.wait_replicas:
            self._heads.pop(stream, None)  # a failover may drop it: ask the log next time
            raise ReplicationShortfall(self.url, stream, last_version, acked,
                                       self.wait_replicas, self.wait_timeout_ms)

    def _fetch_head(self, stream: str) -> tuple[int, bytes]:
        version, hash_ = self._r.hmget(self._keys(stream)[0], "version", "hash")
        head = (int(version or 0), hash_ or ZERO_HASH)
        self._heads[stream] = head
        return head

    def recorded(self, stream: str, command_ids: Sequence[str]) -> dict[str, int]:
        check_stream(stream)
        ids = list(command_ids)
        if not ids:
            return {}
        with self._errors():
            found = self._r.hmget(self._keys(stream)[2], ids)
        return {cid: int(v) for cid, v in zip(ids, found) if v is not None}

    def acquire_epoch(self, stream: str) -> int:
        self._writable()
        check_stream(stream)
        with self._errors():
            return int(self._r.hincrby(self._keys(stream)[0], "epoch", 1))

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._writable()
        check_stream(snapshot.stream)
        meta, _, _, snap = self._keys(snapshot.stream)
        with self._errors():
            reply = self._save_snapshot(keys=[meta, snap], args=[
                snapshot.version, snapshot.recorded_at, snapshot.data])
        if reply[0] != b"ok":
            raise SnapshotError(f"stream {snapshot.stream!r}: snapshot at version "
                                f"{snapshot.version} is outside the stream (at {int(reply[1])})")

    # -- reading ----------------------------------------------------------------------

    def head(self, stream: str) -> StreamHead:
        check_stream(stream)
        with self._errors():
            version, hash_, epoch = self._r.hmget(self._keys(stream)[0], "version", "hash", "epoch")
        return StreamHead(stream=stream, version=int(version or 0), hash=hash_ or ZERO_HASH,
                          epoch=int(epoch or 0))

    def streams(self) -> dict[str, int]:
        with self._errors():
            names = sorted(n.decode() for n in self._r.smembers(f"{self.prefix}:streams"))
            pipe = self._r.pipeline(transaction=False)
            for name in names:
                pipe.hget(self._keys(name)[0], "version")
            versions = pipe.execute()
        return {n: int(v) for n, v in zip(names, versions) if v is not None and int(v) > 0}

    def logged_streams(self) -> dict[str, int]:
        head, tail = f"{self.prefix}:{{", "}:log"
        with self._errors():
            names = sorted({name for key in self._r.scan_iter(
                match=f"{_glob(self.prefix)}:{{*}}:log", count=1000)
                if _is_stream(name := key.decode(errors='replace')[len(head):-len(tail)])})
            pipe = self._r.pipeline(transaction=False)
            for name in names:
                pipe.xrevrange(self._keys(name)[1], "+", "-", count=1)
            lasts = pipe.execute()
        return {n: int(last[0][0].split(b"-", 1)[0]) for n, last in zip(names, lasts) if last}

    def _commits(self, stream: str, from_version: int) -> Iterator[StoredCommit]:
        log = self._keys(stream)[1]
        start = f"{from_version}-0"
        while True:
            with self._errors():
                page = self._r.xrange(log, start, "+", count=_READ_PAGE)
            for entry_id, fields in page:
                last = int(entry_id.split(b"-", 1)[0])
                try:
                    yield StoredCommit(stream, int(fields[b"f"]), last, fields[b"p"], fields[b"h"],
                                       fields[b"b"])
                except (KeyError, ValueError) as exc:
                    raise CorruptRecordError(stream, last, f"commit entry malformed: {exc!r}") from None
            if len(page) < _READ_PAGE:
                return
            start = f"({page[-1][0].decode()}"

    def load_snapshot(self, stream: str) -> Snapshot | None:
        check_stream(stream)
        with self._errors():
            version, recorded_at, data = self._r.hmget(self._keys(stream)[3], "version",
                                                       "recorded_at", "data")
        if version is None:
            return None
        return Snapshot(stream=stream, version=int(version), recorded_at=int(recorded_at), data=data)
