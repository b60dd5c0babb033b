"""Reading the projections: each view caught up with the log from its checkpoint, then read.

`ViewReader(store, checkpoints)` keeps one `projections.runner.Projection` per view (the
checkpoints `saleday view` uses: `projections.db` next to a SQLite log, or the log's own
Redis), and catches it up in a worker thread before each read, one read at a time. A
checkpoint another process moved meanwhile is reloaded and caught up again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import structlog

from saleday.http.problems import ApiProblem

log = structlog.get_logger("saleday.http.views")


class ViewReader:
    """The projections' views over one log, caught up on each read."""

    def __init__(self, store: Any, checkpoints: Any) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self._projections: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, store_url: str, checkpoint_url: str | None = None) -> ViewReader:
        from saleday.cli.views import checkpoint_url_for
        from saleday.events import open_store
        from saleday.projections.checkpoint import open_checkpoints

        return cls(open_store(store_url),
                   open_checkpoints(checkpoint_url or checkpoint_url_for(store_url)))

    async def read(self, name: str) -> Any:
        """The view `name`, caught up with the log."""
        return await self.summarize(name, lambda view: view)

    async def summarize(self, name: str, summary: Callable[[Any], Any]) -> Any:
        """`summary(view)` of the view `name` caught up with the log, computed while no other
        read can fold into the view."""
        try:
            return await asyncio.to_thread(self._caught_up, name, summary)
        except Exception as exc:  # noqa: BLE001 - a read that fails is a 503, logged
            log.warning("view_unavailable", view=name, error=f"{type(exc).__name__}: {exc}"[:300])
            raise ApiProblem(503, "views_unavailable", f"the {name} view could not be read",
                             headers={"Retry-After": "5"}) from None

    def _caught_up(self, name: str, summary: Callable[[Any], Any]) -> Any:
        from saleday.projections.runner import Projection

        with self._lock:
            proj = self._projections.get(name)
            if proj is None:
                proj = self._projections[name] = Projection(_view_class(name)(), self.store,
                                                            self.checkpoints)
            for attempt in range(3):
                try:
                    proj.catch_up()
                    break
                except Exception:
                    if attempt == 2:
                        raise
            return summary(proj.view)

    def close(self) -> None:
        self.checkpoints.close()
        self.store.close()


def _view_class(name: str) -> Any:
    """The four views by name, the experiments view, and the window views."""
    from saleday.projections.views import view_class
    from saleday.projections.views.experiments import ExperimentsView
    from saleday.projections.views.windows import WINDOW_VIEWS

    return {"experiments": ExperimentsView, **WINDOW_VIEWS}.get(name) or view_class(name)
