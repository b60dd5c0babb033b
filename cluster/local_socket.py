"""A shard's batches over a Unix socket, for a gateway on the same node.

A Ray actor call costs ~0.35 ms of CPU in the caller and ~0.33 ms in the actor here
(`saleday bench` profiles, Dec 1): at a quiet sale's small batches that is most of an HTTP
order's CPU (three hops, a call each). The same batch over a Unix socket to a thread of
the shard's process costs ~0.05 ms a side. So every shard actor also listens on a Unix
socket in a directory only its user can enter, and a gateway on the same node sends its
batches there; Ray stays the control plane (placement, restarts, names, ticks, status,
promotion) and the fallback: a gateway on another node, a socket it cannot open, or any
trouble on one (a closed connection, a timeout, an error frame) sends the batch through
Ray as before, with the same command ids, and the shard's dedup record answers a batch
that both paths delivered. No port is opened.

Queries (`Gateway.query`: the states of some entities) travel the same way, for the same
reason: through Ray each was a call, plus the states' unpickling in Ray's own machinery.

Frames: a request is `kind:u8 | len:u32le | body`, kind 0 a wire batch of commands, kind 1
a query (a msgpack array of entity ids); a reply is `status:u8 | len:u32le | body` (status
0: the wire replies, or the states pickled; 1: the shard raised or does not answer that
kind, body is the error's text). Pickle crosses only this socket, which no other user can
open, between processes of one node that Ray already trusts with pickles.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pickle
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import structlog

log = structlog.get_logger("saleday.local_socket")

_FRAME = struct.Struct("<BI")   # kind or status, then the body's length
BATCH, QUERY = 0, 1


class SocketTrouble(Exception):
    """The socket could not carry a batch (closed, timed out, or the shard raised): the
    caller sends the batch through Ray instead."""


# -- the shard's side ----------------------------------------------------------------------------

def socket_dir() -> Path:
    """This user's directory for shard sockets (mode 0700, owned by us), created if missing."""
    path = Path(tempfile.gettempdir()) / f"saleday-shards-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return Path(tempfile.mkdtemp(prefix="saleday-shards-"))
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or stat.S_IMODE(info.st_mode) & 0o077):
        return Path(tempfile.mkdtemp(prefix="saleday-shards-"))   # not ours, or open to others
    return path


def _sweep_stale(directory: Path) -> None:
    """Remove sockets left by shard processes that are gone (killed without cleaning up)."""
    for sock in directory.glob("*.sock"):
        pid = sock.stem.partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                sock.unlink()
            except OSError:
                pass


def query_request(entity_ids: list[Any]) -> bytes | None:
    """A query frame's body for `entity_ids`, or None if some id cannot travel this way (not
    a str, or a str msgpack cannot encode): such a query goes through Ray, as it always did."""
    if not all(type(e) is str for e in entity_ids):
        return None
    try:
        return msgpack.packb(entity_ids)
    except (ValueError, TypeError, UnicodeEncodeError):
        return None


def query_answerer(states_of: Callable[[list[str]], list[Any]]) -> Callable[[bytes], bytes]:
    """A shard's answer to a query frame: a msgpack array of entity ids in, their states
    (`states_of`) pickled out."""
    def answer(request: bytes) -> bytes:
        ids = msgpack.unpackb(request)
        if type(ids) is not list or not all(type(i) is str for i in ids):
            raise ValueError("a query is an array of entity ids")
        return pickle.dumps(states_of(ids), protocol=5)
    return answer


class ShardSocket:
    """Serves `handle(batch) -> replies` (and `query(ids) -> states`, when given) on a Unix
    socket: a thread accepts, a thread per connection reads a request, answers it, and
    reads the next (a gateway pipelines up to its `max_in_flight` batches and its queries;
    they are answered in order)."""

    def __init__(self, handle: Callable[[bytes], bytes], name: str,
                 query: Callable[[bytes], bytes] | None = None) -> None:
        self._answer: dict[int, Callable[[bytes], bytes]] = {BATCH: handle}
        if query is not None:
            self._answer[QUERY] = query
        directory = socket_dir()
        _sweep_stale(directory)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40]
        self.path = str(directory / f"{os.getpid()}-{safe}.sock")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        os.chmod(self.path, 0o600)
        self._server.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"socket-{safe}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="socket-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            stream = conn.makefile("rb", buffering=1 << 16)
            while True:
                head = stream.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    return
                kind, size = _FRAME.unpack(head)
                request = stream.read(size)
                if len(request) < size:
                    return
                try:
                    answer = self._answer.get(kind)
                    if answer is None:
                        raise ValueError(f"requests of kind {kind} are not served here")
                    status, body = 0, answer(request)
                except Exception as exc:  # noqa: BLE001 - told to the gateway, which uses Ray
                    status, body = 1, f"{type(exc).__name__}: {exc}".encode()[:2000]
                try:
                    conn.sendall(_FRAME.pack(status, len(body)) + body)
                except OSError:
                    return

    def close(self) -> None:
        self._closed = True
        try:
            self._server.close()
        finally:
            try:
                os.unlink(self.path)
            except OSError:
                pass


# -- the gateway's side ----------------------------------------------------------------------------

class SocketLink:
    """One connection to a shard's socket; batches are pipelined and answered in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._read_replies())

    @classmethod
    async def open(cls, path: str) -> SocketLink:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
        return cls(reader, writer)

    async def call(self, batch: bytes, timeout_s: float, kind: int = BATCH) -> bytes:
        """The shard's answer to `batch` (a wire batch, or with `kind=QUERY` a query)."""
        if self.closed:
            raise SocketTrouble("the connection is closed")
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._writer.write(_FRAME.pack(kind, len(batch)) + batch)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            self.close("a call timed out")   # its reply may still come: never pair it wrongly
            raise SocketTrouble(f"no reply within {timeout_s} s") from None

    async def query(self, request: bytes, timeout_s: float) -> list[Any]:
        """The states of the entities a query names (`query_request`), as the shard's
        `states_of` gives them."""
        return pickle.loads(await self.call(request, timeout_s, QUERY))

    async def _read_replies(self) -> None:
        reason = "the shard closed the connection"
        try:
            while True:
                status, size = _FRAME.unpack(await self._reader.readexactly(_FRAME.size))
                body = await self._reader.readexactly(size)
                fut = self._waiting.popleft()
                if fut.done():
                    continue
                if status == 0:
                    fut.set_result(body)
                else:
                    fut.set_exception(SocketTrouble(body.decode(errors="replace")))
        except asyncio.IncompleteReadError:
            pass
        except (OSError, IndexError) as exc:   # IndexError: a reply nobody waited for
            reason = f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            reason = "closed"
        self.close(reason)

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(SocketTrouble(reason))
        self._writer.close()
        if self._task is not asyncio.current_task():
            self._task.cancel()


async def link_to(handle: Any, *, timeout_s: float = 5.0) -> SocketLink | None:
    """A link to the shard actor `handle`'s socket if it runs on this node and the socket
    opens; None otherwise (the gateway then uses Ray for it)."""
    from saleday.cluster import ray_api

    try:
        where = await asyncio.wait_for(handle.local_socket.remote(), timeout_s)
        if not where or where.get("node") != ray_api.node_id():
            return None
        return await asyncio.wait_for(SocketLink.open(where["path"]), timeout_s)
    except Exception as exc:  # noqa: BLE001 - Ray is the way then
        log.info("local_socket_unused", error=f"{type(exc).__name__}: {exc}"[:300])
        return None
