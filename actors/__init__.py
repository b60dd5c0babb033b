"""Who decides: the decider contract, one pure decider per entity kind, and the generic
shard host that runs many entities of one kind on one event stream."""
