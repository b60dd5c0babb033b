"""Headless Chromium driven over the Chrome DevTools protocol (a websocket), for the tests.

    with Browser.start(tmp_path) as browser:
        page = browser.page()
        page.navigate("http://127.0.0.1:8000/")
        page.evaluate("document.title")
        page.screenshot(path)
        page.errors           # console errors, uncaught exceptions, failed loads

Chromium is Debian's (`/usr/bin/chromium`); `find_chromium()` says where, or None. The
browser is a process of its own session, stopped by its pid when the block ends.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab: commands go out over its DevTools socket, events are kept as they come."""

    def __init__(self, ws_url: str) -> None:
        self._socket = connect(ws_url, max_size=None, open_timeout=10)
        self.ws = self._socket.__enter__()
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.errors: list[str] = []
        self.console: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")

    def viewport(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _read(self) -> None:
        try:
            for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._event(msg.get("method", ""), msg.get("params", {}))
        except Exception:  # noqa: BLE001 - the socket closed: the browser is going away
            pass

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params['type']}: {text}")
            if params["type"] in ("error", "assert"):
                self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.errors.append(f"exception: {d.get('exception', {}).get('description', d['text'])}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            e = params["entry"]
            self.errors.append(f"log ({e['source']}): {e['text']} {e.get('url', '')}")

    def call(self, method: str, timeout_s: float = 20, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while n not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to {method} in {timeout_s} s")
                self._cond.wait(left)
            reply = self._replies.pop(n)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']['text']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 15) -> Any:
        """The value of `expression` once it is truthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} stayed {value!r} for {timeout_s} s")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> bytes:
        """A PNG of what the viewport shows."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        self._socket.__exit__(None, None, None)


class Browser:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    @contextmanager
    def start(cls, workdir: Path, *, width: int = 1920, height: int = 1080) -> Iterator[Browser]:
        chromium = find_chromium()
        if chromium is None:
            raise FileNotFoundError("chromium is not installed")
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        log = open(workdir / "chromium.log", "wb")
        process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            port = _devtools_port(profile, process)
            yield cls(process, port)
        finally:
            _stop(process)
            log.close()

    def page(self) -> Page:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise RuntimeError(f"chromium has no page: {targets}")
        return Page(pages[0]["webSocketDebuggerUrl"])


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        if marker.exists():
            first = marker.read_text().splitlines()[:1]
            if first and first[0].isdigit():
                return int(first[0])
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port in 30 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser by its pid; its own session's helpers go with it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    try:   # renderer and zygote helpers are in the session the browser leads
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
