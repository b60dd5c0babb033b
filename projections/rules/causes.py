"""The log's causation ids: each names an event of the log recorded before the one it caused.

A `causation_id` is `stream@version` (`events.event_ref`): the fact a reaction follows
(a red-packet split behind a share coupon) or the event that set the deadline an expiry
ends (the `StockReserved` behind a `ReservationExpired`). The cause may sit in a stream
the audit reads later, so each stream's event times are kept (8 bytes an event) and the
references are checked at the end: the cause exists, and it came earlier (a lower
version of the same stream, or an event time no later than the effect's). Event times of
two streams come from two shards' clocks: `clock_skew_ms` is how far apart those may be
(0 by default; the swarm's `clock_skew` class runs its audit with the skew it drew).
"""

from __future__ import annotations

from array import array

from saleday.events import Envelope, parse_event_ref
from saleday.projections.rules.common import RulesBase

_MISSING = -1


class CausationRules(RulesBase):
    """log.causation: every causation id names an earlier event of the log."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, array] = {}
        """stream -> event time (ms) by version - 1 (`_MISSING` where a version is absent)."""
        self.caused: list[tuple[str, int, int, str]] = []
        """(stream, version, event time, causation id) of every event that names a cause."""
        self.clock_skew_ms = 0
        """How far two shards' clocks may differ: a cause in another stream may carry an
        event time up to this much later than its effect's."""

    def causes_batch(self, stream: str, envs: list[Envelope]) -> None:
        """Keep a batch's event times, and the causes its events name."""
        times = self.times.get(stream)
        if times is None:
            times = self.times[stream] = array("q")
        first = envs[0][1]
        if first != len(times) + 1 or envs[-1][1] != first + len(envs) - 1:
            for env in envs:  # a gap or a repeat (log.chain reports it): place each by version
                version = env[1]
                if type(version) is int and 0 < version:
                    if version > len(times):
                        times.extend([_MISSING] * (version - len(times)))
                    times[version - 1] = env[4]
        else:
            times.extend([env[4] for env in envs])
        self.caused.extend((stream, env[1], env[4], env[7]) for env in envs if env[7])

    def _causes_at_end(self) -> None:
        self._count("log.causation", len(self.caused))
        times = self.times
        for stream, version, at, causation in self.caused:
            ref = parse_event_ref(causation) if type(causation) is str else None
            if ref is None:
                self.fail("log.causation", stream, version,
                          f"causation id {causation!r:.80} does not name an event (stream@version)")
                continue
            cause_stream, cause_version = ref
            known = times.get(cause_stream)
            cause_at = (known[cause_version - 1]
                        if known is not None and 0 < cause_version <= len(known) else _MISSING)
            if cause_at == _MISSING:
                self.fail("log.causation", stream, version,
                          f"causation id {causation!r:.80} names no event of the log")
            elif (cause_version >= version if cause_stream == stream
                  else cause_at > at + self.clock_skew_ms):
                self.fail("log.causation", stream, version,
                          f"caused by {causation}, which was recorded after it")
