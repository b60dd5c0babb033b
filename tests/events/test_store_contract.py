"""One contract for every event store backend: SQLite and Redis Streams.

`StoreContract` holds the behaviour every backend must show; `TestSqliteStore` and
`TestRedisStore` bind it to a backend through the `store_url` fixture and the
`corrupt_commit` hook (the only backend-specific thing: how to damage a stored record).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from hashlib import blake2b

import msgpack
import pytest

from saleday.events import (
    ZERO_HASH,
    ChainVerifier,
    ConcurrencyError,
    CorruptRecordError,
    DuplicateCommandError,
    FencedError,
    HashChainBroken,
    InvalidAppend,
    InvalidEventData,
    InvalidStoreUrl,
    InvalidStreamName,
    NewEvent,
    Snapshot,
    SnapshotError,
    StoreUnavailable,
    Tail,
    open_store,
    verify_commits,
)
from tests.helpers import (
    RedisServer,
    append_own_stream,
    delete_prefix,
    ev,
    prefix_of,
    race_same_stream,
    redis_client,
    verify,
    with_query,
)

SPAWN = multiprocessing.get_context("spawn")
POOL_TIMEOUT = 120  # a child that dies on import would otherwise hang Pool.map forever


def marked(stream: str, versions: range) -> list[NewEvent]:
    """Events whose payload carries a marker unique to their future version."""
    return [ev(v, command_id=f"{stream}-cmd-{v}", data={"marker": f"m{v:04d}-payload", "v": v})
            for v in versions]


class StoreContract:
    """The behaviour every `EventStore` backend must have."""

    url: str

    # -- hooks ------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _contract_store(self, store_url: str):
        self.url = store_url
        self._opened: list = []
        self.store = self.create_store()
        yield
        for store in self._opened:
            store.close()

    def create_store(self):
        store = open_store(self.url)
        self._opened.append(store)
        return store

    def reopen_store(self, store):
        store.close()
        return self.create_store()

    def corrupt_commit(self, stream: str, last_version: int,
                       mutate: Callable[[bytes], bytes]) -> None:
        """Replace the stored body of the commit ending at `last_version` by `mutate(body)`."""
        raise NotImplementedError

    # -- order and versions -----------------------------------------------------------

    def test_versions_are_gapless_from_one_in_append_order(self):
        """Events get versions 1, 2, 3, ... in the order they were appended, across commits."""
        s = self.store
        r1 = s.append("orders-1", [ev(1), ev(2)], 0)
        r2 = s.append("orders-1", [ev(3)], 2)
        r3 = s.append("orders-1", [ev(4), ev(5), ev(6)], 3)
        assert (r1.first_version, r1.last_version, r1.duplicate) == (1, 2, False)
        assert (r2.first_version, r2.last_version) == (3, 3)
        assert (r3.first_version, r3.last_version) == (4, 6)
        envs = s.read("orders-1")
        assert [e.version for e in envs] == [1, 2, 3, 4, 5, 6]
        assert [e.data["i"] for e in envs] == [1, 2, 3, 4, 5, 6]
        assert all(e.stream == "orders-1" for e in envs)
        assert r3.head_hash == envs[-1].hash == s.head("orders-1").hash

    def test_envelope_carries_every_field_of_the_new_event(self):
        """A read envelope holds the type, schema version, ids, time and payload that were appended."""
        new = NewEvent(type="inventory.stock_reserved", data={"sku": "A-1", "qty": 3, "tags": ["x", "y"]},
                       command_id="cmd-A", recorded_at=1234, schema_version=2,
                       correlation_id="corr-1", causation_id="cause-1")
        self.store.append("sku-A", [new], 0)
        (env,) = self.store.read("sku-A")
        assert (env.stream, env.version, env.type, env.schema_version, env.recorded_at,
                env.command_id, env.correlation_id, env.causation_id) == (
            "sku-A", 1, "inventory.stock_reserved", 2, 1234, "cmd-A", "corr-1", "cause-1")
        assert env.data == {"qty": 3, "sku": "A-1", "tags": ("x", "y")}
        assert env.prev_hash == ZERO_HASH and len(env.hash) == 32

    def test_read_from_version_and_limit(self):
        """read() starts at from_version (even inside a commit) and returns at most limit events."""
        s = self.store
        s.append("s", [ev(i) for i in range(1, 5)], 0)
        s.append("s", [ev(i) for i in range(5, 9)], 4)
        assert [e.version for e in s.read("s", 3)] == [3, 4, 5, 6, 7, 8]
        assert [e.version for e in s.read("s", 3, 4)] == [3, 4, 5, 6]
        assert [e.version for e in s.read("s", 6, 1)] == [6]
        assert [e.version for e in s.read("s", 1, 100)] == list(range(1, 9))
        assert s.read("s", 1, 0) == []
        assert s.read("s", 9) == []
        assert s.read("s", 1000, 5) == []

    def test_read_of_unknown_stream_is_empty(self):
        """Reading a stream that was never written returns an empty list."""
        assert self.store.read("never-written") == []

    def test_head_of_new_stream_is_version_zero_with_zero_hash(self):
        """The head of a stream that was never written is version 0, 32 zero bytes, epoch 0."""
        head = self.store.head("never-written")
        assert (head.stream, head.version, head.hash, head.epoch) == ("never-written", 0, bytes(32), 0)

    def test_streams_lists_streams_holding_events(self):
        """streams() names every stream that holds events with its last version, and no other."""
        s = self.store
        assert s.streams() == {}
        s.append("a", [ev(1), ev(2)], 0)
        s.append("b", [ev(1)], 0)
        s.acquire_epoch("only-an-epoch")
        with pytest.raises(InvalidEventData):
            s.append("only-a-failed-append", [ev(1, data={"f": 1.5})], 0)
        assert s.streams() == {"a": 2, "b": 1}

    # -- optimistic concurrency -------------------------------------------------------

    def test_stale_expected_version_is_refused_with_the_actual_version(self):
        """A commit whose expected version is stale is refused with the actual version."""
        s = self.store
        s.append("s", [ev(1), ev(2)], 0)
        with pytest.raises(ConcurrencyError) as info:
            s.append("s", [ev(3)], 1)
        assert (info.value.stream, info.value.expected, info.value.actual) == ("s", 1, 2)
        with pytest.raises(ConcurrencyError) as info:
            s.append("s", [ev(3)], 7)
        assert info.value.actual == 2
        assert s.head("s").version == 2

    def test_expected_zero_on_an_existing_stream_is_refused(self):
        """expected_version=0 means 'the stream must be new' and is refused once it holds events."""
        s = self.store
        s.append("s", [ev(1)], 0)
        with pytest.raises(ConcurrencyError) as info:
            s.append("s", [ev(2)], 0)
        assert info.value.actual == 1
        assert [e.version for e in s.read("s")] == [1]

    def test_expected_none_appends_at_the_end(self):
        """expected_version=None appends after whatever the stream holds."""
        s = self.store
        assert s.append("s", [ev(1)], None).first_version == 1
        assert s.append("s", [ev(2), ev(3)], None).last_version == 3
        verify(s, "s")

    def test_two_store_objects_interleave_appends_without_breaking_the_chain(self):
        """Writers on separate store objects see each other's commits: stale caches never fork the chain."""
        a, b = self.store, self.create_store()
        a.append("s", [ev(1)], 0)
        b.append("s", [ev(2)], None)
        assert a.append("s", [ev(3)], None).first_version == 3
        assert b.append("s", [ev(4)], 3).first_version == 4
        with pytest.raises(ConcurrencyError) as info:
            a.append("s", [ev(5)], 3)
        assert info.value.actual == 4
        assert a.append("s", [ev(5)], 4).first_version == 5
        assert [e.version for e in verify(b, "s")] == [1, 2, 3, 4, 5]

    # -- all or nothing ---------------------------------------------------------------

    @pytest.mark.parametrize("bad", [
        pytest.param({"price": 9.99}, id="float"),
        pytest.param({"nested": {"deep": [1, 2.5]}}, id="nested-float"),
        pytest.param({1: "int key"}, id="non-str-key"),
        pytest.param({"k": {"a": 1, 2: "b"}}, id="nested-non-str-key"),
        pytest.param({"obj": object()}, id="object"),
        pytest.param({"big": 2 ** 70}, id="int-overflow"),
        pytest.param({"s": {1, 2}}, id="set"),
    ])
    def test_a_batch_with_one_invalid_event_writes_nothing(self, bad):
        """A commit with one non-msgpack-native payload is refused whole; the head does not move."""
        s = self.store
        s.append("s", [ev(1)], 0)
        before = s.head("s")
        batch = [ev(2), ev(3, data=bad), ev(4)]
        with pytest.raises(InvalidEventData):
            s.append("s", batch, 1)
        with pytest.raises(InvalidEventData):
            s.append("s", batch, None)
        assert s.head("s") == before
        assert [e.version for e in s.read("s")] == [1]
        # the good events' command ids were not recorded: appending them now is not a duplicate
        result = s.append("s", [ev(2), ev(4)], 1)
        assert (result.first_version, result.last_version, result.duplicate) == (2, 3, False)

    def test_a_batch_with_a_malformed_event_writes_nothing(self):
        """A commit with a malformed event (no command id, negative time) is refused whole."""
        s = self.store
        s.append("s", [ev(1)], 0)
        before = s.head("s")
        for bad in (NewEvent(type="t.x", data={}, command_id="", recorded_at=1),
                    NewEvent(type="t.x", data={}, command_id="c", recorded_at=-1),
                    NewEvent(type="", data={}, command_id="c", recorded_at=1),
                    NewEvent(type="t.x", data={}, command_id="c", recorded_at=1, schema_version=0)):
            with pytest.raises(InvalidAppend):
                s.append("s", [ev(2), bad], 1)
        with pytest.raises(InvalidAppend):
            s.append("s", [ev(2), {"type": "t.x"}], 1)
        assert s.head("s") == before
        assert len(s.read("s")) == 1

    # -- idempotent retries -----------------------------------------------------------

    @pytest.mark.parametrize("retry_expected", ["stale", "none", "current"])
    def test_retrying_a_recorded_commit_returns_the_recorded_result(self, retry_expected):
        """Re-appending an already recorded commit returns its versions with duplicate=True and writes nothing."""
        s = self.store
        first = s.append("s", [ev(1), ev(2)], 0)
        s.append("s", [ev(3)], 2)
        before = s.head("s")
        expected = {"stale": 0, "none": None, "current": 3}[retry_expected]
        again = s.append("s", [ev(1), ev(2)], expected)
        assert again.duplicate is True
        assert (again.stream, again.first_version, again.last_version, again.head_hash) == (
            "s", first.first_version, first.last_version, first.head_hash)
        assert s.head("s") == before
        assert [e.command_id for e in s.read("s")] == ["cmd-1", "cmd-2", "cmd-3"]

    def test_retry_of_the_last_commit_from_a_fresh_store_object_is_a_duplicate(self):
        """A retry through another store object (e.g. after a writer restart) is still recognised."""
        self.store.append("s", [ev(1)], 0)
        result = self.create_store().append("s", [ev(1)], 0)
        assert result.duplicate and (result.first_version, result.last_version) == (1, 1)
        assert self.store.head("s").version == 1

    @pytest.mark.parametrize("expected", [1, None, 0])
    def test_mixing_a_recorded_command_id_with_new_ones_is_refused(self, expected):
        """A commit mixing a recorded command id with new ones raises DuplicateCommandError and writes nothing."""
        s = self.store
        s.append("s", [ev(1)], 0)
        with pytest.raises(DuplicateCommandError) as info:
            s.append("s", [ev(2), ev(1), ev(3)], expected)
        assert info.value.stream == "s"
        assert info.value.command_ids == ["cmd-1"]
        assert s.head("s").version == 1
        assert s.append("s", [ev(2), ev(3)], 1).first_version == 2

    def test_command_ids_spanning_two_recorded_commits_are_refused(self):
        """A commit whose ids were all recorded, but in different commits, is refused rather than answered."""
        s = self.store
        s.append("s", [ev(1)], 0)
        s.append("s", [ev(2)], 1)
        with pytest.raises(DuplicateCommandError) as info:
            s.append("s", [ev(1), ev(2)], None)
        assert info.value.command_ids == ["cmd-1", "cmd-2"]
        assert s.head("s").version == 2

    def test_events_sharing_a_command_id_in_one_commit_are_recorded(self):
        """Several events of one commit may share a command id; a retry of that commit is a duplicate."""
        s = self.store
        batch = [ev(i, command_id="one-command") for i in range(3)]
        result = s.append("s", batch, 0)
        assert (result.first_version, result.last_version, result.duplicate) == (1, 3, False)
        assert [e.command_id for e in s.read("s")] == ["one-command"] * 3
        again = s.append("s", batch, 0)
        assert again.duplicate and (again.first_version, again.last_version) == (1, 3)

    def test_a_command_id_with_a_nul_character_is_refused(self):
        """Command ids are identifiers: one containing NUL is refused before anything is written."""
        s = self.store
        with pytest.raises(InvalidAppend):
            s.append("s", [ev(1, command_id="order-7\x00a")], 0)
        assert s.head("s").version == 0

    def test_recorded_names_the_commit_of_each_known_command_id(self):
        """The store says which command ids it holds, and the last version of their commit."""
        s = self.store
        s.append("s", [ev(1, command_id="c1"), ev(2, command_id="c2")], 0)
        s.append("s", [ev(3, command_id="c3")], 2)
        assert s.recorded("s", ["c1", "c3", "nope"]) == {"c1": 2, "c3": 3}
        assert s.recorded("s", []) == {} and s.recorded("other", ["c1"]) == {}

    def test_command_ids_are_scoped_to_their_stream(self):
        """The same command id in two different streams is two different commands."""
        s = self.store
        assert not s.append("a", [ev(1)], 0).duplicate
        assert not s.append("b", [ev(1)], 0).duplicate
        assert s.streams() == {"a": 1, "b": 1}

    # -- fencing ----------------------------------------------------------------------

    def test_acquire_epoch_returns_increasing_epochs(self):
        """Each acquire_epoch() returns the next epoch of the stream, starting at 1."""
        s = self.store
        assert [s.acquire_epoch("s") for _ in range(3)] == [1, 2, 3]
        assert s.acquire_epoch("other") == 1
        assert s.head("s").epoch == 3 and s.head("s").version == 0
        s.append("s", [ev(1)], 0, epoch=3)
        assert s.acquire_epoch("s") == 4

    def test_a_writer_of_an_older_epoch_is_fenced(self):
        """Once a newer epoch is taken, an append with an older epoch raises FencedError and writes nothing."""
        s = self.store
        old = s.acquire_epoch("s")
        s.append("s", [ev(1)], 0, epoch=old)
        new = s.acquire_epoch("s")
        with pytest.raises(FencedError) as info:
            s.append("s", [ev(2)], 1, epoch=old)
        assert (info.value.stream, info.value.epoch, info.value.current_epoch) == ("s", old, new)
        with pytest.raises(FencedError):
            s.append("s", [ev(2)], None, epoch=old)
        assert s.head("s").version == 1
        assert s.append("s", [ev(2)], 1, epoch=new).first_version == 2
        assert s.append("s", [ev(3)], 2).first_version == 3  # no epoch: not fenced
        assert s.head("s").epoch == new

    def test_a_higher_epoch_raises_the_streams_epoch(self):
        """An append with an epoch above the stream's raises the stream's epoch and fences older writers."""
        s = self.store
        s.append("s", [ev(1)], 0)
        assert s.head("s").epoch == 0
        s.append("s", [ev(2)], 1, epoch=5)
        assert s.head("s").epoch == 5
        with pytest.raises(FencedError) as info:
            s.append("s", [ev(3)], 2, epoch=4)
        assert info.value.current_epoch == 5
        s.append("s", [ev(3)], 2)  # an append without epoch leaves it alone
        assert s.head("s").epoch == 5
        assert s.acquire_epoch("s") == 6

    # -- hash chain -------------------------------------------------------------------

    def test_chain_of_a_read_stream_verifies(self):
        """The envelopes of a stream, read back, form an intact hash chain from the zero hash."""
        s = self.store
        for c in range(10):
            s.append("s", [ev(3 * c + j) for j in range(3)], None)
        envs = s.read("s")
        verifier = ChainVerifier("s")
        verifier.feed(envs[:7])
        verifier.feed(envs[7:])
        assert verifier.version == 30 and verifier.head_hash == s.head("s").hash
        assert all(b.prev_hash == a.hash for a, b in zip(envs, envs[1:]))

    def test_first_hash_follows_the_documented_rule(self):
        """Version 1's hash is blake2b(32 zero bytes + msgpack of the preimage with sorted keys), 32 bytes."""
        data = {"zeta": [3, {"y": None, "b": b"\x00\x01"}], "alpha": True, "mid": "€uro"}
        new = NewEvent(type="sale.placed", data=data, command_id="c-1", recorded_at=99,
                       schema_version=3, correlation_id="k", causation_id="q")
        result = self.store.append("sale-1", [new], 0)
        sorted_data = {"alpha": True, "mid": "€uro", "zeta": [3, {"b": b"\x00\x01", "y": None}]}
        preimage = msgpack.packb(["sale-1", 1, "sale.placed", 3, 99, "c-1", "k", "q", sorted_data],
                                 use_bin_type=True)
        expected = blake2b(bytes(32) + preimage, digest_size=32).digest()
        (env,) = self.store.read("sale-1")
        assert env.hash == expected == result.head_hash == self.store.head("sale-1").hash
        second = self.store.append("sale-1", [ev(2)], 1)
        preimage2 = msgpack.packb(["sale-1", 2, "test.happened", 1, 1_700_000_000_002, "cmd-2", "",
                                   "", {"i": 2}], use_bin_type=True)
        assert second.head_hash == blake2b(expected + preimage2, digest_size=32).digest()

    # -- concurrency ------------------------------------------------------------------

    def test_reads_during_writes_are_gapless_prefixes(self):
        """While one thread appends, every read from another thread is a gapless, chained prefix."""
        s = self.store
        done = threading.Event()
        errors: list[BaseException] = []

        def writer():
            try:
                for c in range(150):
                    s.append("s", [ev(10 * c + j, command_id=f"c{c}-{j}") for j in range(1 + c % 3)],
                             None)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        reads = 0
        seen = 0
        while not done.is_set() or reads == 0:
            envs = s.read("s")
            assert [e.version for e in envs] == list(range(1, len(envs) + 1))
            ChainVerifier("s").feed(envs)
            assert len(envs) >= seen
            seen = len(envs)
            reads += 1
        thread.join()
        assert not errors
        assert reads >= 1
        assert len(verify(s, "s")) == sum(1 + c % 3 for c in range(150))

    def test_threads_on_different_streams_share_one_store(self):
        """Threads appending to their own streams through one store object all succeed, gapless."""
        s = self.store
        errors: list[BaseException] = []

        def work(n):
            try:
                for c in range(40):
                    s.append(f"thread-{n}", [ev(2 * c), ev(2 * c + 1)], 2 * c)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert s.streams() == {f"thread-{n}": 80 for n in range(4)}
        for n in range(4):
            assert [e.version for e in verify(s, f"thread-{n}")] == list(range(1, 81))

    def test_threads_racing_on_one_stream_record_every_command_once(self):
        """Threads racing on one stream with expected-version retries leave a gapless chain, each command once."""
        s = self.store
        errors: list[BaseException] = []

        def work(n):
            try:
                for c in range(30):
                    while True:
                        try:
                            s.append("hot", [ev(c, command_id=f"t{n}-{c}")], s.head("hot").version)
                            break
                        except ConcurrencyError:
                            pass
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        envs = verify(s, "hot")
        assert Counter(e.command_id for e in envs) == Counter(f"t{n}-{c}" for n in range(3) for c in range(30))

    def test_processes_on_different_streams(self):
        """Processes that each open the store from its URL and append to their own stream all succeed."""
        streams = [f"proc-{n}" for n in range(3)]
        with SPAWN.Pool(3) as pool:
            heads = pool.starmap_async(append_own_stream,
                                       [(self.url, st, 25) for st in streams]).get(POOL_TIMEOUT)
        assert heads == [50, 50, 50]
        s = self.store
        assert s.streams() == {st: 50 for st in streams}
        for st in streams:
            envs = verify(s, st)
            assert [e.command_id for e in envs] == [f"{st}-{c}-{x}" for c in range(25) for x in "ab"]

    def test_processes_racing_on_one_stream_record_every_command_once(self):
        """Two processes racing on one stream with expected-version retries leave a gapless chain, each command once."""
        start_at = time.time() + 1.5
        with SPAWN.Pool(2) as pool:
            conflicts = pool.starmap_async(race_same_stream, [(self.url, "contended", w, 40, start_at)
                                                              for w in ("w1", "w2")]).get(POOL_TIMEOUT)
        envs = verify(self.store, "contended")
        assert [e.version for e in envs] == list(range(1, 81))
        assert Counter(e.command_id for e in envs) == Counter(
            f"{w}-{c}" for w in ("w1", "w2") for c in range(40))
        for w in ("w1", "w2"):  # each writer's own commands stay in its order
            assert [e.data["c"] for e in envs if e.data["writer"] == w] == list(range(40))
        assert len(conflicts) == 2  # how many conflicts a run sees varies; correctness may not

    def test_a_partly_consumed_commit_iterator_does_not_block_appends(self):
        """A read_commits() iterator left half-way does not make the same thread's appends fail."""
        s, other = self.store, self.create_store()
        for i in range(1, 4):
            s.append("s", [ev(i)], None)
        commits = s.read_commits("s")
        assert next(commits).last_version == 1
        other.append("s", [ev(4)], 3)
        assert s.append("s", [ev(5)], None).first_version == 5
        assert [e.version for e in verify(other, "s")] == [1, 2, 3, 4, 5]

    def test_a_failed_read_does_not_block_later_appends(self):
        """After read() raised CorruptRecordError, with the error still held, the same thread can still append."""
        self._two_commits()
        self.corrupt_commit("s", 3, lambda body: body.replace(b"m0002-payload", b"\xff" * 13))
        with pytest.raises(CorruptRecordError) as info:  # `info` keeps the traceback alive
            self.store.read("s")
        assert info.value.version == 2
        self.create_store().append("t", [ev(1)], 0)
        assert self.store.append("t", [ev(2)], 1).first_version == 2

    def test_verify_commits_checks_the_stored_bytes(self):
        """verify_commits() over read_commits() returns the head version and hash of an intact stream."""
        s = self.store
        for c in range(4):
            s.append("s", [ev(2 * c), ev(2 * c + 1)], None)
        head = s.head("s")
        assert verify_commits("s", s.read_commits("s")) == (head.version, head.hash)
        assert [c.last_version for c in s.read_commits("s", 4)] == [4, 6, 8]
        assert list(s.read_commits("s", 9)) == []

    # -- tailing ----------------------------------------------------------------------

    def _three_streams(self):
        s = self.store
        s.append("tail-a", [ev(1), ev(2)], 0)
        s.append("tail-b", [ev(1)], 0)
        s.append("tail-c", [ev(1), ev(2), ev(3)], 0)
        s.append("tail-a", [ev(3), ev(4), ev(5)], 2)
        s.append("tail-b", [ev(2), ev(3)], 1)
        return {"tail-a": 5, "tail-b": 3, "tail-c": 3}

    def test_tail_from_nothing_returns_every_stream_in_stream_order(self):
        """A Tail from empty positions returns every event of every stream, each stream in version order."""
        heads = self._three_streams()
        tail = Tail(self.store, {})
        batch = tail.poll()
        assert len(batch) == sum(heads.values())
        for stream, last in heads.items():
            assert [e.version for e in batch if e.stream == stream] == list(range(1, last + 1))
        assert tail.positions == heads
        assert tail.poll() == []

    def test_tail_positions_advance_and_new_appends_show_up_on_the_next_poll(self):
        """After catching up, a poll returns just the events appended since, and positions follow."""
        self._three_streams()
        tail = Tail(self.store, {"tail-a": 4})
        first = tail.poll()
        assert [(e.stream, e.version) for e in first if e.stream == "tail-a"] == [("tail-a", 5)]
        self.store.append("tail-b", [ev(4)], 3)
        self.store.append("tail-d", [ev(1)], 0)
        assert sorted((e.stream, e.version) for e in tail.poll()) == [("tail-b", 4), ("tail-d", 1)]
        assert tail.positions == {"tail-a": 5, "tail-b": 4, "tail-c": 3, "tail-d": 1}
        assert tail.poll() == []

    def test_tail_lag_reports_unreturned_events_per_stream(self):
        """lag() counts the recorded but not yet returned events of each stream that is behind."""
        self._three_streams()
        tail = Tail(self.store, {"tail-a": 2, "tail-c": 3})
        assert tail.lag() == {"tail-a": 3, "tail-b": 3}
        tail.poll()
        assert tail.lag() == {}
        self.store.append("tail-c", [ev(4), ev(5)], 3)
        assert tail.lag() == {"tail-c": 2}

    def test_tail_batches_are_bounded_and_starve_no_stream(self):
        """With a small batch_size every poll returns at most that many events and all streams get through."""
        heads = self._three_streams()
        tail = Tail(self.store, batch_size=2)
        seen = []
        for _ in range(20):
            batch = tail.poll()
            assert len(batch) <= 2
            seen.extend(batch)
            if not batch:
                break
        assert sorted((e.stream, e.version) for e in seen) == sorted(
            (s, v) for s, last in heads.items() for v in range(1, last + 1))
        for stream in heads:
            assert [e.version for e in seen if e.stream == stream] == list(range(1, heads[stream] + 1))

    def test_tail_follow_yields_backlog_then_live_events_and_stops_when_idle(self):
        """follow() yields the backlog, then events appended meanwhile, and ends after idle_timeout."""
        heads = self._three_streams()
        tail = Tail(self.store)
        yielded = threading.Condition()
        got = []

        def late_writer():
            # Each live event is appended once follow() has yielded the backlog and every
            # live event before it: waits on what was yielded, not on a fixed time.
            for i in range(4, 9):
                with yielded:
                    yielded.wait_for(lambda: len(got) >= sum(heads.values()) + i - 4, timeout=30)
                self.store.append("tail-c", [ev(i)], None)

        writer = threading.Thread(target=late_writer)
        started = time.monotonic()
        writer.start()
        for batch in tail.follow(poll_interval=0.01, idle_timeout=0.5):
            assert batch
            with yielded:
                got.extend(batch)
                yielded.notify_all()
        elapsed = time.monotonic() - started
        writer.join()
        assert [e.version for e in got if e.stream == "tail-c"] == list(range(1, 9))
        assert len(got) == sum(heads.values()) + 5
        assert elapsed < 10

    def test_tail_follow_stops_when_the_stop_event_is_set(self):
        """follow(stop=...) returns promptly once the stop event is set, even without idle_timeout."""
        self._three_streams()
        stop = threading.Event()
        timer = threading.Timer(0.2, stop.set)
        timer.start()
        started = time.monotonic()
        batches = list(Tail(self.store).follow(poll_interval=0.02, stop=stop))
        assert time.monotonic() - started < 5
        assert sum(len(b) for b in batches) == 11

    def test_tail_with_include_only_sees_its_streams(self):
        """A Tail with include= returns, positions and lags only the streams the filter accepts."""
        self._three_streams()
        self.store.append("orders-1", [ev(1)], 0)
        tail = Tail(self.store, include=lambda name: name.startswith("tail-") and name != "tail-b")
        assert tail.lag() == {"tail-a": 5, "tail-c": 3}
        batch = tail.poll()
        assert {e.stream for e in batch} == {"tail-a", "tail-c"}
        assert tail.positions == {"tail-a": 5, "tail-c": 3}
        self.store.append("tail-b", [ev(4)], 3)
        assert tail.poll() == []

    # -- reopening and size -----------------------------------------------------------

    def test_reopened_store_has_everything_and_continues_the_chain(self):
        """After close and reopen every commit, epoch and snapshot is there and appends continue the chain."""
        s = self.store
        for c in range(5):
            s.append("s", [ev(2 * c), ev(2 * c + 1)], None)
        s.append("t", [ev(1)], 0)
        epoch = s.acquire_epoch("s")
        s.save_snapshot(Snapshot(stream="s", version=6, recorded_at=7, data=b"state@6"))
        head = s.head("s")
        s = self.reopen_store(s)
        assert s.head("s") == head and s.streams() == {"s": 10, "t": 1}
        assert s.load_snapshot("s") == Snapshot(stream="s", version=6, recorded_at=7, data=b"state@6")
        assert s.append("s", [ev(0)], 10).duplicate  # the dedup record survived too
        assert s.append("s", [ev(10)], 10, epoch=epoch).first_version == 11
        with pytest.raises(FencedError):
            s.append("s", [ev(11)], 11, epoch=epoch - 1)
        assert [e.version for e in verify(s, "s")] == list(range(1, 12))

    @pytest.mark.slow
    def test_a_stream_of_100k_events_round_trips(self):
        """100,000 events appended in commits of 1,000 read back complete, in order, with an intact chain."""
        s = self.store
        started = time.monotonic()
        for c in range(100):
            batch = [NewEvent(type="load.tick", data={"n": c * 1000 + j}, command_id=f"c{c}",
                              recorded_at=c) for j in range(1000)]
            s.append("big", batch, c * 1000)
        envs = s.read("big")
        assert len(envs) == 100_000
        assert envs[-1].version == 100_000
        assert all(e.data["n"] == e.version - 1 for e in envs)
        ChainVerifier("big").feed(envs)
        assert envs[-1].hash == s.head("big").hash
        assert [e.version for e in s.read("big", 54_321, 3)] == [54_321, 54_322, 54_323]
        assert time.monotonic() - started < 30

    # -- corrupted records ------------------------------------------------------------

    def _two_commits(self, stream="s"):
        self.store.append(stream, marked(stream, range(1, 4)), 0)
        self.store.append(stream, marked(stream, range(4, 7)), 3)

    # -- read-only opening (auditors, exports, views) ----------------------------------

    def test_a_read_only_open_reads_the_log_and_refuses_every_write(self):
        """Opened read-only, a store reads every stream, head and event, and refuses an
        append, an epoch and a snapshot with StoreUnavailable, writing nothing."""
        self._two_commits()
        ro = open_store(self.url, read_only=True)
        self._opened.append(ro)
        assert ro.streams() == {"s": 6} and ro.logged_streams() == {"s": 6}
        assert ro.read("s") == self.store.read("s") and ro.head("s") == self.store.head("s")
        for write in (lambda: ro.append("s", [ev(99)], None), lambda: ro.acquire_epoch("s"),
                      lambda: ro.save_snapshot(Snapshot(stream="s", version=6, recorded_at=1,
                                                        data=b"x"))):
            with pytest.raises(StoreUnavailable, match="read-only"):
                write()
        assert self.store.head("s") == ro.head("s") and self.store.load_snapshot("s") is None

    def test_logged_streams_come_from_the_commits(self):
        """`logged_streams` names each stream with commits and its last version; a stream
        that only took an epoch has no commits and is not in it."""
        self._two_commits()
        self.store.append("t", [ev(1, command_id="t-1")], 0)
        self.store.acquire_epoch("u")
        assert self.store.logged_streams() == {"s": 6, "t": 1}

    def test_flipped_bytes_in_a_stored_body_name_the_commit(self):
        """Bytes flipped in place in a stored commit body raise CorruptRecordError naming stream and version."""
        self._two_commits()

        def flip(body):
            i = body.index(b"m0004-payload")
            return body[:i] + bytes(b ^ 0xC0 for b in body[i:i + 3]) + body[i + 3:]

        self.corrupt_commit("s", 6, flip)
        with pytest.raises(CorruptRecordError) as info:
            self.store.read("s")
        assert (info.value.stream, info.value.version) == ("s", 4)

    def test_an_undecodable_record_names_its_stream_and_version(self):
        """A body whose bytes no longer decode raises CorruptRecordError naming the broken event's version."""
        self._two_commits()
        self.corrupt_commit("s", 6, lambda body: body.replace(b"m0005-payload", b"\xff" * 13))
        with pytest.raises(CorruptRecordError) as info:
            self.store.read("s")
        assert (info.value.stream, info.value.version) == ("s", 5)
        assert "'s'" in str(info.value) and "5" in str(info.value)
        assert [e.version for e in self.store.read("s", 1, 3)] == [1, 2, 3]  # before the damage

    def test_a_truncated_record_names_its_stream_and_version(self):
        """A body cut short inside an event raises CorruptRecordError naming that event's version."""
        self._two_commits()
        self.corrupt_commit("s", 6, lambda body: body[:body.index(b"m0005-payload") + 4])
        with pytest.raises(CorruptRecordError) as info:
            self.store.read("s", 4)
        assert (info.value.stream, info.value.version) == ("s", 5)

    def test_a_record_carrying_another_version_is_corrupt(self):
        """A record whose body claims a different version than its position raises CorruptRecordError."""
        self._two_commits()

        def renumber(body):
            rows = msgpack.unpackb(body)
            rows[1][1] = 42
            return msgpack.packb(rows, use_bin_type=True)

        self.corrupt_commit("s", 6, renumber)
        with pytest.raises(CorruptRecordError) as info:
            self.store.read("s")
        assert (info.value.stream, info.value.version) == ("s", 5)

    def test_an_altered_payload_that_still_decodes_breaks_the_chain_at_its_version(self):
        """A payload rewritten into other valid data reads fine but ChainVerifier raises HashChainBroken there."""
        self._two_commits()

        def tamper(body):
            rows = msgpack.unpackb(body)
            assert rows[1][8]["v"] == 5
            rows[1][8]["v"] = 500
            return msgpack.packb(rows, use_bin_type=True)

        self.corrupt_commit("s", 6, tamper)
        envs = self.store.read("s")
        assert envs[4].data["v"] == 500
        with pytest.raises(HashChainBroken) as info:
            ChainVerifier("s").feed(envs)
        assert (info.value.stream, info.value.version) == ("s", 5)
        with pytest.raises(HashChainBroken) as info:
            verify_commits("s", self.store.read_commits("s"))
        assert (info.value.stream, info.value.version) == ("s", 5)

    def test_a_one_byte_flip_into_a_float_is_reported_as_corruption(self):
        """A one-byte flip that turns a stored int array into a float is reported as a corrupt record."""
        self.store.append("s", [ev(1, data={"xs": [1, 2, 3, 4]})], 0)
        self.corrupt_commit("s", 1, lambda body: body.replace(b"\x94\x01\x02\x03\x04", b"\xca\x01\x02\x03\x04"))
        with pytest.raises(CorruptRecordError) as info:
            verify(self.store, "s")
        assert (info.value.stream, info.value.version) == ("s", 1)
        with pytest.raises(CorruptRecordError) as info:
            verify_commits("s", self.store.read_commits("s"))
        assert (info.value.stream, info.value.version) == ("s", 1)

    # -- snapshots --------------------------------------------------------------------

    def test_snapshot_save_and_load(self):
        """A saved snapshot loads back unchanged; a stream without one loads None."""
        s = self.store
        s.append("s", [ev(1), ev(2), ev(3)], 0)
        assert s.load_snapshot("s") is None
        snap = Snapshot(stream="s", version=2, recorded_at=1234, data=b"\x00state\xff")
        s.save_snapshot(snap)
        assert s.load_snapshot("s") == snap
        newer = Snapshot(stream="s", version=3, recorded_at=1300, data=b"state3")
        s.save_snapshot(newer)
        assert s.load_snapshot("s") == newer

    @pytest.mark.parametrize("version", [4, 100, 0, -1])
    def test_a_snapshot_outside_the_stream_is_refused(self, version):
        """A snapshot beyond the stream's head (or below version 1) raises SnapshotError and is not kept."""
        s = self.store
        s.append("s", [ev(1), ev(2), ev(3)], 0)
        with pytest.raises(SnapshotError):
            s.save_snapshot(Snapshot(stream="s", version=version, recorded_at=1, data=b"x"))
        with pytest.raises(SnapshotError):
            s.save_snapshot(Snapshot(stream="empty", version=1, recorded_at=1, data=b"x"))
        assert s.load_snapshot("s") is None and s.load_snapshot("empty") is None

    def test_an_older_snapshot_does_not_replace_a_newer_one(self):
        """Saving a snapshot older than the kept one leaves the newer one in place."""
        s = self.store
        s.append("s", [ev(i) for i in range(5)], 0)
        newer = Snapshot(stream="s", version=4, recorded_at=2, data=b"four")
        s.save_snapshot(newer)
        s.save_snapshot(Snapshot(stream="s", version=2, recorded_at=3, data=b"two"))
        assert s.load_snapshot("s") == newer

    # -- bad input --------------------------------------------------------------------

    @pytest.mark.parametrize("name", ["", "a{b}", "{tag}", "-leading-dash", "has space", "tab\t",
                                      "x" * 201, "naïve", "a/b", 123, None, b"bytes"])
    def test_invalid_stream_names_are_refused(self, name):
        """Stream names with braces, bad characters, bad length or a non-str type raise InvalidStreamName."""
        s = self.store
        with pytest.raises(InvalidStreamName):
            s.append(name, [ev(1)], 0)
        with pytest.raises(InvalidStreamName):
            s.read(name)
        with pytest.raises(InvalidStreamName):
            s.head(name)
        with pytest.raises(InvalidStreamName):
            s.acquire_epoch(name)
        with pytest.raises(InvalidStreamName):
            s.load_snapshot(name)
        assert s.streams() == {}

    def test_a_zero_limit_read_still_checks_the_stream_name(self):
        """read() refuses an invalid stream name even when asked for zero events."""
        with pytest.raises(InvalidStreamName):
            self.store.read("bad{name}", 1, 0)

    def test_the_longest_and_oddest_valid_names_are_accepted(self):
        """A 200-char name and names using every allowed punctuation character are valid streams."""
        s = self.store
        for name in ("x" * 200, "0-a_b.c:d|e", "Order:42|sku-7"):
            s.append(name, [ev(1)], 0)
            assert s.read(name)[0].stream == name
        assert len(s.streams()) == 3

    def test_an_empty_commit_is_refused(self):
        """A commit without events raises InvalidAppend and records nothing."""
        with pytest.raises(InvalidAppend):
            self.store.append("s", [], 0)
        with pytest.raises(InvalidAppend):
            self.store.append("s", [], None)
        assert self.store.head("s").version == 0 and self.store.streams() == {}

    @pytest.mark.parametrize("expected", [-1, -100, 1.0, "1", True])
    def test_a_malformed_expected_version_is_refused(self, expected):
        """An expected version that is negative or not an int raises InvalidAppend and records nothing."""
        with pytest.raises(InvalidAppend):
            self.store.append("s", [ev(1)], expected)
        assert self.store.head("s").version == 0

    @pytest.mark.parametrize("from_version, limit", [(0, None), (-1, None), (1, -1), ("1", None)])
    def test_a_malformed_read_is_refused(self, from_version, limit):
        """A read from a version below 1 or with a negative limit raises InvalidAppend."""
        with pytest.raises(InvalidAppend):
            self.store.read("s", from_version, limit)


class TestSqliteStore(StoreContract):
    """The contract on the SQLite backend."""

    @pytest.fixture
    def store_url(self, tmp_path):
        self.db_path = tmp_path / "events.db"
        return f"sqlite:///{self.db_path}"

    def corrupt_commit(self, stream, last_version, mutate):
        conn = sqlite3.connect(self.db_path)
        try:
            (body,) = conn.execute("SELECT body FROM commits WHERE stream = ? AND last_version = ?",
                                   (stream, last_version)).fetchone()
            with conn:
                conn.execute("UPDATE commits SET body = ? WHERE stream = ? AND last_version = ?",
                             (mutate(bytes(body)), stream, last_version))
        finally:
            conn.close()

    def test_a_commit_with_malformed_hashes_is_corrupt(self):
        """A commit row whose hashes column has the wrong length raises CorruptRecordError at its first version."""
        self._two_commits()
        conn = sqlite3.connect(self.db_path)
        with conn:
            conn.execute("UPDATE commits SET hashes = substr(hashes, 1, 40) WHERE last_version = 6")
        conn.close()
        with pytest.raises(CorruptRecordError) as info:
            self.store.read("s")
        assert (info.value.stream, info.value.version) == ("s", 4)

    def test_three_slashes_name_a_relative_path_and_four_an_absolute_one(self, tmp_path, monkeypatch):
        """`sqlite:///data/events.db` is relative to the working directory (as in SQLAlchemy),
        `sqlite:////abs/events.db` absolute; both name the same log here."""
        from saleday.events import NewEvent

        monkeypatch.chdir(tmp_path)
        relative = open_store("sqlite:///data/events.db")
        relative.append("s", [NewEvent(type="t.e", data={}, command_id="c1", recorded_at=1)], 0)
        relative.close()
        assert (tmp_path / "data" / "events.db").is_file()
        absolute = open_store(f"sqlite:///{tmp_path / 'data' / 'events.db'}")
        assert absolute.head("s").version == 1
        absolute.close()
        with pytest.raises(InvalidStoreUrl):
            open_store("sqlite:///")

    def test_a_read_only_open_of_no_file_creates_nothing(self, tmp_path):
        """Read-only, a path with no log is StoreUnavailable and nothing is created there."""
        with pytest.raises(StoreUnavailable, match="no event log"):
            open_store(f"sqlite:///{tmp_path}/none/events.db", read_only=True)
        assert not (tmp_path / "none").exists()

    def test_an_unwritable_location_is_store_unavailable(self, tmp_path):
        """Opening a store where no file can be created raises StoreUnavailable, not a raw OSError."""
        blocker = tmp_path / "file"
        blocker.write_bytes(b"")
        with pytest.raises(StoreUnavailable):
            open_store(f"sqlite:///{blocker}/sub/events.db")


class TestMemoryStore(StoreContract):
    """The contract on the in-memory backend (the in-process simulator's)."""

    @pytest.fixture
    def store_url(self):
        import uuid

        from saleday.events.memory_store import drop

        name = f"t-{uuid.uuid4().hex}"
        yield f"memory://{name}"
        drop(name)

    def corrupt_commit(self, stream, last_version, mutate):
        from saleday.events.memory_store import _LOGS

        log = _LOGS[self.store.name]
        s = log.streams[stream]
        i = s.lasts.index(last_version)
        s.commits[i] = s.commits[i]._replace(body=mutate(bytes(s.commits[i].body)))

    # A memory log lives in one process: the contract's multi-process cases do not apply;
    # threads racing on one stream are covered by the thread cases above.
    test_processes_on_different_streams = None
    test_processes_racing_on_one_stream_record_every_command_once = None

    def test_a_read_only_open_of_a_name_this_process_has_not_written_fails(self):
        """Read-only, a memory:// name with no log in this process is StoreUnavailable saying
        the memory store lives in its own process (and no empty log is made for it)."""
        from saleday.events.memory_store import _LOGS

        with pytest.raises(StoreUnavailable, match="only lives in the process"):
            open_store(self.url + "-elsewhere", read_only=True)
        assert self.store.name + "-elsewhere" not in _LOGS

    def test_every_open_in_a_process_sees_the_same_log(self):
        """Two opens of one memory:// name share the log; another name is another log."""
        from saleday.events import NewEvent

        self.store.append("s", [NewEvent(type="t.e", data={}, command_id="c1", recorded_at=1)], 0)
        again = open_store(self.url)
        assert again.head("s").version == 1
        assert open_store(self.url + "-other").streams() == {}


@pytest.mark.redis
class TestRedisStore(StoreContract):
    """The contract on the Redis Streams backend."""

    @pytest.fixture
    def store_url(self, redis_store_url):
        return redis_store_url

    def _log_key(self, stream):
        return f"{prefix_of(self.url)}:{{{stream}}}:log"

    def _rewrite_log(self, stream, change):
        """Recreate the stream's log key entry by entry (ids kept), `change(id, fields)` each."""
        client = redis_client(self.url)
        try:
            key = self._log_key(stream)
            entries = client.xrange(key)
            assert entries, f"no log at {key}"
            client.delete(key)
            for entry_id, fields in entries:
                client.xadd(key, change(entry_id, dict(fields)), id=entry_id)
        finally:
            client.close()

    def corrupt_commit(self, stream, last_version, mutate):
        def change(entry_id, fields):
            if entry_id == f"{last_version}-0".encode():
                fields[b"b"] = mutate(fields[b"b"])
            return fields

        self._rewrite_log(stream, change)

    def test_keys_follow_the_documented_layout(self):
        """A commit is one entry `<last_version>-0` of `<prefix>:{<stream>}:log` with fields f, p, h, b."""
        self._two_commits()
        client = redis_client(self.url)
        try:
            entries = client.xrange(self._log_key("s"))
        finally:
            client.close()
        assert [e[0] for e in entries] == [b"3-0", b"6-0"]
        assert set(entries[1][1]) == {b"f", b"p", b"h", b"b"}
        assert entries[1][1][b"f"] == b"4" and len(entries[1][1][b"h"]) == 96

    def test_a_log_entry_missing_its_body_is_corrupt(self):
        """A log entry without its body field raises CorruptRecordError naming stream and last version."""
        self._two_commits()
        self._rewrite_log("s", lambda i, f: {k: v for k, v in f.items() if k != b"b"} if i == b"6-0" else f)
        with pytest.raises(CorruptRecordError) as info:
            self.store.read("s")
        assert (info.value.stream, info.value.version) == ("s", 6)

    def test_a_read_only_open_of_an_empty_prefix_fails_and_creates_no_key(self):
        """Read-only, a prefix that holds no key is StoreUnavailable; no key is created."""
        other_url = with_query(self.url, prefix=prefix_of(self.url) + "-none")
        with pytest.raises(StoreUnavailable, match="no event log under prefix"):
            open_store(other_url, read_only=True)
        client = redis_client(self.url)
        try:
            assert list(client.scan_iter(match=f"{prefix_of(other_url)}*")) == []
        finally:
            client.close()

    def test_a_read_only_open_with_a_wrong_password_fails_at_once(self, tmp_path):
        """Read-only, the server is asked at open: a wrong password is StoreUnavailable
        (redacted), not an empty log."""
        with RedisServer(tmp_path) as server:
            import redis

            admin = redis.Redis(port=server.port)
            admin.config_set("requirepass", "right-one")
            admin.close()
            with pytest.raises(StoreUnavailable) as info:
                open_store(f"redis://default:wrong-one@127.0.0.1:{server.port}/0", read_only=True)
        assert "wrong-one" not in str(info.value) and "default:***@" in str(info.value)

    def test_prefixes_isolate_stores_on_one_server(self):
        """Two stores with different prefixes on one Redis share nothing."""
        other_url = with_query(self.url, prefix=prefix_of(self.url) + "-other")
        other = open_store(other_url)
        try:
            self.store.append("s", [ev(1)], 0)
            assert other.streams() == {} and other.read("s") == []
            assert other.append("s", [ev(1)], 0).duplicate is False
        finally:
            other.close()
            delete_prefix(other_url)


# -- across backends ------------------------------------------------------------------


@pytest.mark.redis
def test_hashes_are_identical_across_backends(tmp_path, redis_store_url):
    """The same commits produce byte-identical envelopes and hashes on SQLite and Redis."""
    sqlite = open_store(f"sqlite:///{tmp_path}/events.db")
    redis_ = open_store(redis_store_url)
    try:
        for store in (sqlite, redis_):
            store.append("x-1", [ev(1, data={"b": [1, {"z": b"\x01", "a": None}], "a": "é"}),
                                 ev(2, correlation_id="corr")], 0)
            store.append("x-1", [ev(3, data={"neg": -(2 ** 63), "big": 2 ** 64 - 1, "t": True})], 2)
        assert sqlite.read("x-1") == redis_.read("x-1")
        assert sqlite.head("x-1").hash == redis_.head("x-1").hash
        verify(sqlite, "x-1")
    finally:
        sqlite.close()
        redis_.close()


# -- an unreachable Redis -------------------------------------------------------------


@pytest.mark.parametrize("call", [
    pytest.param(lambda s: s.append("s", [ev(1)], 0), id="append"),
    pytest.param(lambda s: s.read("s"), id="read"),
    pytest.param(lambda s: s.head("s"), id="head"),
    pytest.param(lambda s: s.streams(), id="streams"),
    pytest.param(lambda s: s.acquire_epoch("s"), id="acquire_epoch"),
])
def test_an_unreachable_redis_is_store_unavailable_quickly(call):
    """Calls on a Redis store nobody listens to raise StoreUnavailable within seconds."""
    store = open_store("redis://127.0.0.1:1/0?connect_timeout=0.5")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            call(store)
    finally:
        store.close()
    assert time.monotonic() - started < 5


def test_store_unavailable_does_not_leak_the_password():
    """StoreUnavailable from a URL with a password names the store without the password."""
    store = open_store("redis://user:secret@127.0.0.1:1/0?connect_timeout=0.5")
    try:
        assert "secret" not in store.url
        with pytest.raises(StoreUnavailable) as info:
            store.append("s", [ev(1)], 0)
    finally:
        store.close()
    assert "secret" not in str(info.value) and "secret" not in repr(info.value)
    assert "secret" not in info.value.where and "secret" not in info.value.reason
    assert "127.0.0.1" in str(info.value)


# -- a Redis crash --------------------------------------------------------------------


@pytest.mark.redis
class TestRedisCrash:
    """Acknowledged commits survive SIGKILL of a Redis with appendonly + appendfsync always."""

    def test_acknowledged_commits_survive_a_sigkill(self, tmp_path):
        """Every commit acknowledged before a SIGKILL is there after restart, the chain verifies, appends go on."""
        server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
        url = with_query(server.url, prefix="crash", connect_timeout="1", socket_timeout="2")
        acked: list[int] = []
        stop_error: list[BaseException] = []
        try:
            store = open_store(url)

            def writer():
                c = 0
                try:
                    while True:
                        r = store.append("orders-9", [ev(3 * c + j, command_id=f"c{c}-{j}")
                                                      for j in range(3)], None)
                        acked.append(r.last_version)
                        c += 1
                except StoreUnavailable as exc:
                    stop_error.append(exc)

            thread = threading.Thread(target=writer)
            thread.start()
            deadline = time.monotonic() + 20
            while len(acked) < 40 and time.monotonic() < deadline and thread.is_alive():
                time.sleep(0.005)
            server.kill()
            thread.join(30)
            assert not thread.is_alive() and stop_error, "the writer did not notice the crash"
            store.close()
            assert len(acked) >= 40

            server.restart()
            store = open_store(url)
            envs = verify(store, "orders-9")
            head = store.head("orders-9")
            assert head.version >= acked[-1]
            assert head.version == len(envs) and head.version % 3 == 0  # no partial commit
            assert head.hash == envs[-1].hash
            got = {e.version for e in envs}
            assert all(v in got for v in acked)
            r = store.append("orders-9", [ev(10_000, command_id="after-restart")], head.version)
            assert r.first_version == head.version + 1
            verify(store, "orders-9")
            store.close()
        finally:
            server.stop()


class TestEpochInput:
    """Epochs are validated the same way on both backends."""

    @pytest.mark.parametrize("epoch", [-1, "1", 1.0])
    def test_a_malformed_epoch_is_refused(self, tmp_path, epoch):
        """An epoch that is not a non-negative int raises InvalidAppend and records nothing."""
        from saleday.events import NewEvent, open_store

        s = open_store(f"sqlite:///{tmp_path}/events.db")
        with pytest.raises(InvalidAppend):
            s.append("s", [NewEvent(type="t.x", data={}, command_id="c", recorded_at=0)], 0, epoch=epoch)
        assert s.head("s").version == 0
        s.close()


# -- Redis Cluster --------------------------------------------------------------------


@pytest.mark.redis
class TestRedisClusterStore(TestRedisStore):
    """The contract on Redis Cluster (3 masters, 3 replicas), as deployed by default (no
    WAIT): the Redis cases too, as the key layout is the same."""

    @pytest.fixture
    def store_url(self, redis_cluster_store_url):
        return redis_cluster_store_url

    # A plain server with a password: the single-node case, nothing cluster-specific.
    test_a_read_only_open_with_a_wrong_password_fails_at_once = None

