"""A real server for the tests that need one: the app over in-process shards on a SQLite
log with its projections, served by uvicorn in a thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.http import HttpSettings, create_app
from saleday.http.views import ViewReader
from saleday.projections.checkpoint import open_checkpoints
from tests.http.conftest import KINDS, now_ms


@contextmanager
def running_app(data: Path, settings: HttpSettings) -> Iterator[str]:
    """Serve the app at http://127.0.0.1:<port> until the block ends; yield the URL."""
    store = open_store(f"sqlite:///{data}/events.db")
    shards = LocalShards(store, KINDS, autoflush=True, clock=now_ms)
    views = ViewReader(store, open_checkpoints(f"sqlite:///{data}/projections.db"))
    app = create_app(shards, settings=settings, views=views)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        views.close()
