"""The reactor: follows the log and submits what its facts call for (`flows.reactions`).

It tails the streams of the given kinds from where it last read and submits each fact's
follow-ups through a `Gateway` under their derived ids, riding out load shedding (each
carries the fact's correlation id, and names the fact as its causation id); the
deciders answer a repeat as a duplicate, so the reactor may replay from any position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from saleday.actors.host import Accepted, TransportFailure
from saleday.events import EventStore, Tail, event_ref, registry
from saleday.flows.gateway import Gateway
from saleday.flows.reactions import follow_ups
from saleday.flows.sale_day import follow_until, submit

log = structlog.get_logger("saleday.flows")


class Reactor:
    """Follows the streams of the given kinds and submits what their facts call for."""

    def __init__(self, store: EventStore, gateway: Gateway,
                 kinds: Iterable[str] = ("team", "campaign", "session")) -> None:
        prefixes = tuple(f"{kind}-" for kind in kinds)
        self.tail = Tail(store, include=lambda stream: stream.startswith(prefixes))
        self.gateway = gateway
        self.submitted = 0
        self.retrying: list[tuple] = []

    async def run_once(self) -> int:
        """React to everything recorded since the last call, and retry what a shard could
        not take last time; return the commands submitted."""
        done = 0
        retry, self.retrying = self.retrying, []
        while retry or (batch := await asyncio.to_thread(self.tail.poll)):
            steps = retry or [(cid, command, env) for env in batch
                              for cid, command in follow_ups(env, registry.decode(env))]
            retry = []
            replies = await asyncio.gather(*(
                submit(self.gateway, command, cid, correlation_id=env.correlation_id,
                       causation_id=event_ref(env.stream, env.version))
                for cid, command, env in steps))
            for step, reply in zip(steps, replies):
                if isinstance(reply, TransportFailure):
                    # Not decided (a shard down or shedding): the fact still owes it. The
                    # deciders answer a repeat as a duplicate, so it is tried again.
                    self.retrying.append(step)
                    log.warning("reaction_deferred", command_id=step[0],
                                reply=type(reply).__name__)
                elif not isinstance(reply, Accepted):
                    log.info("reaction_refused", command_id=step[0],
                             reply=getattr(reply, "code", type(reply).__name__))
            done += len(steps)
        self.submitted += done
        return done

    async def run(self, stop: asyncio.Event, *, poll_s: float = 0.05) -> None:
        """React until `stop` is set."""
        await follow_until(self.run_once, stop, poll_s)
