"""Triggers: a rule over an event-time window fires a push through the frequency cap.

The rule the seed article describes, as `BrowseTrigger`: a user who viewed at least
`min_products` distinct products of one category within a 5-minute tumbling window (keyed
by user and category, `projections.windows`), and placed no order since that window
began, gets a coupon push. The push is a `RecordPush` (the session decider's 24-hour
frequency cap: at most `cap` per `window_ms`), so it is delivered as a `PushDelivered`
event or refused as `FrequencyCapped`.

Exactly once per firing: a firing is (rule, user|category, window start); its push id and
command id are derived from it, so a repeat, a replay of the log or a restart of the
runner submits the same command again, which the session answers as a duplicate. The
runner tails the session streams (`events.Tail`), folds the window view, and fires as soon
as a window reaches the threshold (an early firing, as a stream processor fires on count,
rather than waiting for the watermark to close the window).

It also follows what happened next: for each delivered push, whether the user placed an
order after it (`conversions_after_push`), next to the users who fired but were capped.
In the in-process simulator it runs once per round of the virtual clock (`poll`);
elsewhere it would run beside the reactor (not built: no trigger service on Ray yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saleday.actors.host import Accepted
from saleday.actors.session import DAY_MS, FrequencyCapped, RecordPush
from saleday.events import EventStore, Tail
from saleday.projections.windows import TUMBLING, Agg, WindowSpec, window_view


@dataclass(frozen=True)
class BrowseTrigger:
    name: str = "browse-coupon"
    min_products: int = 5
    window_ms: int = 5 * 60_000
    cap: int = 3
    cap_window_ms: int = DAY_MS

    def spec(self) -> WindowSpec:
        return WindowSpec(kind=TUMBLING, size_ms=self.window_ms, key="user+category",
                          where=(("action", "view"),), out_of_orderness_ms=30_000,
                          allowed_lateness_ms=60_000,
                          aggs=(Agg("products", "distinct", "sku"),))


class TriggerRunner:
    """Tails the session streams, folds the rule's window, and submits its pushes."""

    def __init__(self, store: EventStore, rule: BrowseTrigger, submit: Any) -> None:
        self.rule = rule
        self.submit = submit
        """(command, command_id) -> a future of the reply (the gateway's `submit_nowait`)."""
        self.tail = Tail(store, include=lambda stream: stream.startswith("session-"))
        self.view = window_view(f"trigger-{rule.name}", rule.spec())()
        self.ordered_at: dict[str, int] = {}
        """user -> the latest time an order of theirs was placed."""
        self.fired: set[str] = set()
        self.pending: list[tuple[str, Any]] = []
        self.delivered: dict[str, int] = {}
        """user -> when their first trigger push went out."""
        self.capped = 0
        self.pushes_delivered = 0
        self.converted: set[str] = set()

    def poll(self, now_ms: int) -> int:
        """Fold what was recorded since the last poll; submit the firings; return how many."""
        self._collect()
        fired = 0
        while batch := self.tail.poll():
            self.view.apply_batch(batch)
            for env in batch:
                if env.type == "sessions.order_status_changed" and env.data["status"] == "placed":
                    user, at = env.data["user"], env.data["at"]
                    self.ordered_at[user] = max(at, self.ordered_at.get(user, at))
                    pushed = self.delivered.get(user)
                    if pushed is not None and at >= pushed:
                        self.converted.add(user)
            fired += self._fire(now_ms)
        return fired

    def _fire(self, now_ms: int) -> int:
        keys = self.view.dirty["win"]
        fired = 0
        for key in sorted(keys):
            user = key.split("|", 1)[0]
            for start, w in sorted(self.view.t["win"][key].items()):
                firing = f"{self.rule.name}/{key}/{start}"
                if (len(w["products"]) < self.rule.min_products or firing in self.fired
                        or self.ordered_at.get(user, -1) >= w["start"]):
                    continue
                self.fired.add(firing)
                command = RecordPush(user=user, push_id=firing, kind="coupon", now=now_ms,
                                     cap=self.rule.cap, window_ms=self.rule.cap_window_ms)
                self.pending.append((user, self.submit(command, f"trigger/{firing}")))
                fired += 1
        keys.clear()
        self.view.dirty["streams"].clear()
        return fired

    def _collect(self) -> None:
        """Count the replies that came back since the last poll."""
        still = []
        for user, future in self.pending:
            if not future.done():
                still.append((user, future))
                continue
            reply = future.result()
            if isinstance(reply, FrequencyCapped):
                self.capped += 1
            elif isinstance(reply, Accepted) and reply.events:
                self.pushes_delivered += 1
                self.delivered.setdefault(user, reply.events[0].at)
        self.pending = still

    def summary(self) -> dict[str, Any]:
        self._collect()
        return {"rule": self.rule.name, "min_products": self.rule.min_products,
                "firings": len(self.fired), "pushes_delivered": self.pushes_delivered,
                "users_pushed": len(self.delivered),
                "pushes_capped": self.capped, "awaiting_reply": len(self.pending),
                "users_converted_after_push": len(self.converted)}
