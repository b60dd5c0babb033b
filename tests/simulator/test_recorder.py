"""The Recorder counts every command by type and by bucket of simulated time: replies,
refusals by the rules (by code), Busy and unavailable, and latencies."""

from __future__ import annotations

import asyncio

from saleday.actors.host import Accepted, Busy, Unavailable
from saleday.actors.sku import ReserveStock, SoldOut
from saleday.simulator.driver import Recorder


class Answers:
    """A gateway that answers the replies given, in order."""

    def __init__(self, replies) -> None:
        self.replies = list(replies)

    async def submit(self, command, **ids):
        return self.replies.pop(0)


def test_each_reply_is_counted_under_its_type_and_bucket():
    """Accepted, refused, Busy and unavailable each land in the type's and bucket's counts."""
    recorder = Recorder(Answers([Accepted(), SoldOut(sku="a", requested=1, available=0),
                                 Busy(shard="sku-0"), Unavailable(reason="down")]),
                        lambda: 0.0, bucket_s=60.0)
    command = ReserveStock(reservation_id="r", user="u", sku="a", qty=1, now=0, deadline=1)

    async def play():
        for _ in range(4):
            await recorder.submit(command)

    asyncio.run(play())
    stats = recorder.kinds["ReserveStock"]
    assert (stats.count, stats.busy, stats.unavailable) == (4, 1, 1)
    assert dict(stats.rejections) == {"sold_out": 1} and len(stats.latencies) == 2
    bucket = recorder.buckets[0]
    assert (bucket.offered, bucket.served, bucket.rejected, bucket.busy, bucket.errors) == \
        (4, 2, 1, 1, 1)
