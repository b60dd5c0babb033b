"""Routing: a stable hash of an entity id onto partitions, and partitions onto shards.

The map is data (a `ShardMap` value, serialisable), so a partition can later move to
another shard by changing the map. The hash is CRC-32 of the id's UTF-8 bytes: stable
across processes and machines (unlike Python's `hash`). Every `str` routes (a lone
surrogate is hashed as its `surrogatepass` bytes; what cannot be recorded is refused by
the shard, alone); anything else (`None`, bytes, ...) raises `UnroutableEntity`, which the
gateways answer as an `InvalidCommand`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any


class UnroutableEntity(TypeError):
    """An entity id that is not a `str`, so no shard can be chosen for it."""

    def __init__(self, entity_id: object) -> None:
        self.entity_id = entity_id
        super().__init__(f"an entity id must be a str, not {type(entity_id).__name__} "
                         f"{entity_id!r:.80}")


def _key(entity_id: Any) -> bytes:
    """The bytes an entity id is hashed by (the slow path of a str that is not plain UTF-8)."""
    if type(entity_id) is not str:
        raise UnroutableEntity(entity_id)
    return entity_id.encode("utf-8", "surrogatepass")


def partition_of(entity_id: str, partitions: int) -> int:
    """The partition an entity id falls in, the same in every process."""
    try:
        return zlib.crc32(entity_id.encode()) % partitions
    except (AttributeError, UnicodeEncodeError):
        return zlib.crc32(_key(entity_id)) % partitions


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
        """The shard holding `entity_id`; `UnroutableEntity` if it is not a str."""
        try:
            return self.owners[zlib.crc32(entity_id.encode()) % self.partitions]
        except (AttributeError, UnicodeEncodeError):
            return self.owners[zlib.crc32(_key(entity_id)) % self.partitions]

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
