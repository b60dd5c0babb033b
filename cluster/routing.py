"""Routing: a stable hash of an entity id onto partitions, and partitions onto shards.

The map is data (a `ShardMap` value, serialisable), so a partition can later move to
another shard by changing the map. The hash is CRC-32 of the id's UTF-8 bytes: stable
across processes and machines (unlike Python's `hash`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any


def partition_of(entity_id: str, partitions: int) -> int:
    """The partition an entity id falls in, the same in every process."""
    return zlib.crc32(entity_id.encode()) % partitions


@dataclass(frozen=True, slots=True)
class ShardMap:
    """Which shard of one entity kind holds each partition."""

    kind: str
    partitions: int
    owners: tuple[int, ...]
    """`owners[p]` is the shard index that holds partition `p`."""

    def __post_init__(self) -> None:
        if self.partitions < 1 or len(self.owners) != self.partitions:
            raise ValueError(f"{self.kind}: need one owner per partition ({self.partitions})")
        if min(self.owners) < 0:
            raise ValueError(f"{self.kind}: shard indexes are >= 0")

    @classmethod
    def uniform(cls, kind: str, shards: int, partitions: int = 64) -> ShardMap:
        """Spread `partitions` round-robin over `shards` shards."""
        if shards < 1 or shards > partitions:
            raise ValueError(f"{kind}: shards must be between 1 and {partitions}")
        return cls(kind, partitions, tuple(p % shards for p in range(partitions)))

    @property
    def shards(self) -> int:
        return max(self.owners) + 1

    def shard_of(self, entity_id: str) -> int:
        return self.owners[zlib.crc32(entity_id.encode()) % self.partitions]

    def stream(self, shard: int) -> str:
        """The event stream a shard owns, e.g. `sku-003`."""
        return f"{self.kind}-{shard:03d}"

    def moved(self, partition: int, shard: int) -> ShardMap:
        """The same map with one partition given to another shard."""
        owners = list(self.owners)
        owners[partition] = shard
        return ShardMap(self.kind, self.partitions, tuple(owners))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "partitions": self.partitions, "owners": list(self.owners)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardMap:
        return cls(data["kind"], int(data["partitions"]), tuple(int(o) for o in data["owners"]))
