"""The event log on a Redis the tests own: an ACL user limited to what the store needs, TLS
with client certificates, restarts under `appendfsync always` and `everysec`, and a Redis
that stops answering for a while. After each fault every acknowledged reservation is in
the log (or, for `everysec` after a simulated OS crash, exactly the unsynced ones are
gone and the shard says so), the chain is intact, nothing is oversold, and no password
appears in a reply, an error or a log line."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from saleday.actors.host import Accepted, Busy, Request, ShardHost, Unavailable
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock, sku_decider
from saleday.bench.reserve import stock_from_log
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.cluster.settings import SaledaySettings
from saleday.events import StoreUnavailable, open_store, verify_commits
from tests.helpers import (
    RedisServer,
    assert_audit_passes,
    free_port,
    now_ms,
    redis_server_executable,
)

pytestmark = pytest.mark.redis
T0 = 1_762_790_400_000
PASSWORD = "s3cret-Pa55-do-not-log"
# What the store needs, and nothing else: its scripts (EVALSHA, SCRIPT LOAD) and the
# commands they and the reads run, on its own key prefix only (the readers — the audit —
# enumerate streams from the log's keys: EXISTS, SCAN, XREVRANGE).
STORE_ACL = ("on", f">{PASSWORD}", "resetkeys", "~sale:*", "resetchannels", "-@all", "+ping",
             "+evalsha", "+script|load", "+hget", "+hmget", "+hset", "+hincrby", "+sadd",
             "+smembers", "+xadd", "+xrange", "+xrevrange", "+exists", "+scan")


def add_store_user(port: int, **tls) -> str:
    """Create the `saleday` ACL user on the server; return its store URL."""
    admin = redis.Redis(port=port, **tls)
    try:
        admin.execute_command("ACL", "SETUSER", "saleday", *STORE_ACL)
    finally:
        admin.close()
    return f"redis://saleday:{PASSWORD}@127.0.0.1:{port}/0?prefix=sale"


def sale_commands(skus: list[str], stock: int) -> list:
    return [c for sku in skus for c in (
        AddStock(sku=sku, qty=stock, now=T0),
        ConfigureSale(sku=sku, tiers=((0, 9900),), per_user_limit=0, start=T0,
                      end=T0 + 10 * 365 * 86_400_000, now=T0))]


def reserve(i: int, skus: list[str]) -> tuple[str, ReserveStock]:
    now = now_ms()
    return f"reserve-{i}", ReserveStock(reservation_id=f"r-{i}", user=f"u-{i % 89}",
                                        sku=skus[i % len(skus)], qty=1, now=now,
                                        deadline=now + 900_000)


def audit(url: str) -> dict[str, int]:
    """Check the log on its own: intact chains, each reservation recorded once, no SKU
    holding more than was stocked. Return reservation id -> its version."""
    store = open_store(url)
    try:
        reserved: dict[str, int] = {}
        for stream in store.streams():
            verify_commits(stream, store.read_commits(stream))
            for env in store.read(stream):
                if env.type == "inventory.stock_reserved":
                    rid = env.data["reservation_id"]
                    assert rid not in reserved, f"{rid} recorded twice"
                    reserved[rid] = env.version
    finally:
        store.close()
    added, held = stock_from_log(url)
    oversold = {s: held[s] - added.get(s, 0) for s in held if held[s] > added.get(s, 0)}
    assert not oversold, oversold
    assert_audit_passes(url)
    return reserved


# -- ACL and TLS (no Ray) ---------------------------------------------------------------


def test_an_acl_user_limited_to_the_store_runs_a_shard_and_touches_nothing_else(tmp_path, capfd):
    """A shard serves, snapshots and recovers as an ACL user allowed only the store's
    commands on its prefix; anything else is refused; no password reaches a log line."""
    from saleday.cluster import logs

    logs.configure("debug")
    with RedisServer(tmp_path) as server:
        url = add_store_user(server.port)
        host = ShardHost(decider=sku_decider, store=open_store(url), stream="sku-000",
                         snapshot_every=2)
        replies = host.handle([Request(f"c{i}", c) for i, c in enumerate(sale_commands(["a"], 5))])
        assert all(isinstance(r, Accepted) for r in replies)
        host.save_snapshot()
        again = ShardHost(decider=sku_decider, store=open_store(url), stream="sku-000")
        assert again.version == 2 and again.snapshot_version == 2
        user = redis.Redis.from_url(url.split("?")[0])
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.set("other-app:key", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.flushall()
        user.close()
    assert PASSWORD not in capfd.readouterr().err


def test_a_wrong_password_is_a_readable_error_that_does_not_show_it(tmp_path):
    """AUTH failure raises StoreUnavailable naming the redacted URL, never the password."""
    with RedisServer(tmp_path) as server:
        add_store_user(server.port)
        wrong = f"redis://saleday:not-{PASSWORD}@127.0.0.1:{server.port}/0?prefix=sale"
        with pytest.raises(StoreUnavailable) as caught:
            open_store(wrong).streams()
    text = str(caught.value) + repr(caught.value)
    assert "saleday:***@127.0.0.1" in text and PASSWORD not in text


def make_certs(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS tests need the openssl command to make certificates")
    d = directory

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=saleday-test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return {n: d / f for n, f in (("ca", "ca.pem"), ("server_cert", "server.pem"),
                                  ("server_key", "server.key"), ("client_cert", "client.pem"),
                                  ("client_key", "client.key"))}


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks only TLS and requires client certificates."""
    certs = make_certs(tmp_path)
    port = free_port()
    with open(tmp_path / "redis.log", "wb") as log:
        proc = subprocess.Popen(
            [redis_server_executable(), "--port", "0", "--tls-port", str(port), "--bind",
             "127.0.0.1", "--tls-cert-file", str(certs["server_cert"]), "--tls-key-file",
             str(certs["server_key"]), "--tls-ca-cert-file", str(certs["ca"]),
             "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)],
            stdout=log, stderr=subprocess.STDOUT)
    tls = {"ssl": True, "ssl_ca_certs": str(certs["ca"]), "ssl_certfile": str(certs["client_cert"]),
           "ssl_keyfile": str(certs["client_key"])}
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            text = (tmp_path / "redis.log").read_text(errors="replace")
            pytest.skip(f"this redis-server cannot serve TLS: {text[-300:]}")
        try:
            if redis.Redis(port=port, socket_timeout=1, **tls).ping():
                break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    yield port, certs, tls
    proc.terminate()
    proc.wait(10)


def test_tls_with_client_certificates_from_settings(tls_redis, monkeypatch):
    """SALEDAY_* settings with an ACL user and CA, cert and key files give a rediss:// store
    that a shard uses; without the client certificate, or in plain text, it is refused."""
    port, certs, tls = tls_redis
    add_store_user(port, **tls)
    monkeypatch.setenv("SALEDAY_STORE_URL", f"redis://127.0.0.1:{port}/0?prefix=sale")
    monkeypatch.setenv("SALEDAY_REDIS_USERNAME", "saleday")
    monkeypatch.setenv("SALEDAY_REDIS_PASSWORD", PASSWORD)
    monkeypatch.setenv("SALEDAY_REDIS_TLS_CA", str(certs["ca"]))
    monkeypatch.setenv("SALEDAY_REDIS_TLS_CERT", str(certs["client_cert"]))
    monkeypatch.setenv("SALEDAY_REDIS_TLS_KEY", str(certs["client_key"]))
    url = SaledaySettings().resolved_store_url()
    assert url.startswith("rediss://")
    host = ShardHost(decider=sku_decider, store=open_store(url), stream="sku-000")
    replies = host.handle([Request(f"c{i}", c) for i, c in enumerate(sale_commands(["a"], 5))])
    assert all(isinstance(r, Accepted) for r in replies)
    assert open_store(url).streams() == {"sku-000": 2}

    monkeypatch.delenv("SALEDAY_REDIS_TLS_CERT")
    monkeypatch.delenv("SALEDAY_REDIS_TLS_KEY")
    no_client_cert = SaledaySettings().resolved_store_url()
    plain = f"redis://saleday:{PASSWORD}@127.0.0.1:{port}/0?prefix=sale&socket_timeout=2"
    for refused in (no_client_cert, plain):
        with pytest.raises(StoreUnavailable) as caught:
            open_store(refused).streams()
        assert PASSWORD not in str(caught.value)


# -- restarts and pauses under a running sale (Ray) ------------------------------------------


def assert_password_not_in_ray_logs() -> None:
    """No file of this Ray session (the shards' logs among them) holds the password, and
    the shards did log the outage there (so the search looked in the right place)."""
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    seen_outage = False
    for path in logs.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data, f"the password is in {path}"
            seen_outage = seen_outage or b"append_unavailable" in data
    assert seen_outage, f"no shard logged the outage under {logs}"


def run(coro):
    return asyncio.run(coro)


async def submit_all(rt: Runtime, items: list[tuple[str, object]]) -> dict[str, object]:
    """Submit every (command id, command) at once through a gateway; id -> reply."""
    gateway = rt.gateway()
    try:
        replies = await asyncio.gather(*(gateway.submit(c, command_id=cid) for cid, c in items))
    finally:
        await gateway.close()
    return {cid: r for (cid, _), r in zip(items, replies)}


async def settle(rt: Runtime, items: dict[str, object], replies: dict[str, object],
                 give_up_s: float = 30.0) -> None:
    """Retry, with the same command ids, every command answered Unavailable or Busy."""
    deadline = time.monotonic() + give_up_s
    while True:
        open_ = [(cid, items[cid]) for cid, r in replies.items() if isinstance(r, (Unavailable, Busy))]
        if not open_:
            return
        assert time.monotonic() < deadline, f"{len(open_)} commands still unanswered"
        replies.update(await submit_all(rt, open_))
        await asyncio.sleep(0.1)


def accepted_ids(items: dict[str, object], replies: dict[str, object]) -> set[str]:
    return {items[cid].reservation_id for cid, r in replies.items() if isinstance(r, Accepted)}


def start(url: str, **config) -> Runtime:
    return Runtime(RuntimeConfig(store_url=url, shards={"sku": 1}, tick_s=0, **config)).start()


def open_sale(rt: Runtime, skus: list[str], stock: int) -> None:
    setup = [(f"setup-{i}", c) for i, c in enumerate(sale_commands(skus, stock))]
    assert all(isinstance(r, Accepted) for r in run(submit_all(rt, setup)).values())


@pytest.mark.ray
@pytest.mark.slow
def test_redis_killed_mid_sale_with_appendfsync_always_keeps_every_acknowledged_reservation(
        ray_instance, tmp_path):
    """SIGKILL of an `appendfsync always` Redis while batches are in flight: after it
    restarts, every acknowledged reservation is in the log, once, and nothing is oversold."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    url = server.url + "?prefix=sale&socket_timeout=2&connect_timeout=0.5"
    rt = start(url)
    try:
        skus = [f"sku-{i}" for i in range(8)]
        open_sale(rt, skus, 25)
        items = dict(reserve(i, skus) for i in range(400))

        async def sale() -> tuple[dict[str, object], int]:
            loop = asyncio.get_running_loop()
            killed, refused_seen = threading.Event(), threading.Event()

            def crash_and_restart() -> None:
                # A head start for the next wave's batch, hoping to catch it in flight: the
                # gateway shows no in-flight batch without reaching into its private lanes.
                time.sleep(0.003)
                server.kill()
                killed.set()
                refused_seen.wait(60)  # Redis stays down until the sale has felt it
                server.start()

            ids = list(items)
            replies: dict[str, object] = {}
            restarted = None
            for n, at in enumerate(range(0, len(ids), 20)):
                if n == 5:
                    restarted = loop.run_in_executor(None, crash_and_restart)
                replies.update(await submit_all(rt, [(c, items[c]) for c in ids[at:at + 20]]))
                if any(isinstance(r, Unavailable) for r in replies.values()):
                    refused_seen.set()
                if n == 5:
                    await loop.run_in_executor(None, killed.wait)
            await restarted
            refused = sum(isinstance(r, Unavailable) for r in replies.values())
            await settle(rt, items, replies)
            return replies, refused

        replies, refused_while_down = run(sale())
        assert refused_while_down > 0  # the crash hit the sale: some commands were refused
        assert {type(r).__name__ for r in replies.values()} <= {"Accepted", "SoldOut"}
        in_log = audit(url)
        assert accepted_ids(items, replies) == set(in_log)
        assert len(in_log) == 8 * 25  # demand was 2x supply: every unit is held
        shard = rt.status()[0]
        assert shard["version"] == open_store(url).head("sku-000").version
    finally:
        rt.stop(kill_shards=True)
        server.stop()


@pytest.mark.ray
@pytest.mark.slow
def test_appendfsync_everysec_loses_only_unsynced_writes_and_the_shard_does_not_fork(
        ray_instance, tmp_path):
    """With `everysec`, a Redis process kill loses nothing (the writes are in the OS page
    cache); an OS crash loses what was not yet fsynced, simulated here by restarting Redis
    from a copy of its AOF taken earlier. The live shard finds the log behind it, exits,
    and Ray restarts it from the log as it is: the lost acknowledgements are exactly those
    after the copy, the chain continues from the surviving head, nothing is oversold."""
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "everysec")
    url = server.url + "?prefix=sale&socket_timeout=2&connect_timeout=0.5"
    rt = start(url, retry_for_s=30)
    try:
        skus = [f"sku-{i}" for i in range(4)]
        open_sale(rt, skus, 100)
        items = dict(reserve(i, skus) for i in range(300))
        ids = list(items)
        first = run(submit_all(rt, [(c, items[c]) for c in ids[:100]]))
        assert all(isinstance(r, Accepted) for r in first.values())
        # A wall clock that must really pass: everysec fsyncs once a second, and Redis's INFO
        # shows no fsynced offset to wait on instead.
        time.sleep(1.2)  # everysec has fsynced all of it
        synced = tmp_path / "synced"
        shutil.copytree(tmp_path / "redis" / "appendonlydir", synced)
        synced_version = open_store(url).head("sku-000").version
        second = run(submit_all(rt, [(c, items[c]) for c in ids[100:200]]))
        assert all(isinstance(r, Accepted) for r in second.values())

        # A process crash: the AOF in the page cache survives; nothing is lost.
        server.kill()
        server.start()
        assert accepted_ids(items, {**first, **second}) == set(audit(url))

        # An OS crash before the next fsync: the disk holds only the synced AOF.
        server.kill()
        shutil.rmtree(tmp_path / "redis" / "appendonlydir")
        shutil.copytree(synced, tmp_path / "redis" / "appendonlydir")
        server.start()
        assert open_store(url).head("sku-000").version == synced_version
        third = run(submit_all(rt, [(c, items[c]) for c in ids[200:]]))
        assert all(isinstance(r, Accepted) for r in third.values()), \
            {type(r).__name__ for r in third.values()}
        in_log = audit(url)
        lost = accepted_ids(items, second) - set(in_log)
        assert lost == accepted_ids(items, second)  # exactly the acks after the synced point
        assert accepted_ids(items, {**first, **third}) == set(in_log)
        assert min(in_log[items[c].reservation_id] for c in ids[200:]) == synced_version + 1
        shard = rt.status()[0]
        assert shard["version"] == open_store(url).head("sku-000").version
        assert shard["epoch"] >= 2  # a new incarnation took over
    finally:
        rt.stop(kill_shards=True)
        server.stop()


@pytest.mark.ray
@pytest.mark.slow
def test_an_unreachable_redis_gives_typed_errors_and_the_sale_resumes(ray_instance, tmp_path):
    """While Redis is stopped (SIGSTOP) the gateway answers Unavailable or Busy, never a
    crash and never a password; after SIGCONT the same command ids settle, the shard agrees
    with the log, and every acknowledged reservation is recorded once."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    url = add_store_user(server.port) + "&socket_timeout=0.5&connect_timeout=0.5"
    rt = start(url, max_batch=8, max_in_flight=1, call_timeout_s=20)
    try:
        skus = [f"sku-{i}" for i in range(5)]
        open_sale(rt, skus, 40)
        items = dict(reserve(i, skus) for i in range(300))
        ids = list(items)
        replies = run(submit_all(rt, [(c, items[c]) for c in ids[:16]]))
        assert all(isinstance(r, Accepted) for r in replies.values())
        server.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            paused = run(submit_all(rt, [(c, items[c]) for c in ids[16:]]))
            answered_in = time.monotonic() - started
        finally:
            server.proc.send_signal(signal.SIGCONT)
        kinds = {type(r).__name__ for r in paused.values()}
        assert kinds <= {"Unavailable", "Busy"} and "Unavailable" in kinds and "Busy" in kinds, kinds
        assert answered_in < 15
        for reply in paused.values():
            assert PASSWORD not in repr(reply)
            if isinstance(reply, Unavailable):
                assert "unavailable" in reply.reason and "saleday:***@" in reply.reason
        replies.update(paused)
        run(settle(rt, items, replies))
        assert_password_not_in_ray_logs()
        in_log = audit(url)
        assert accepted_ids(items, replies) == set(in_log)
        assert len(in_log) == 5 * 40
        shard = rt.status()[0]
        assert shard["version"] == open_store(url).head("sku-000").version
    finally:
        rt.stop(kill_shards=True)
        server.stop()
