"""How it runs: routing, the gateway-shard wire, the batching gateway (and its in-process
twin, `local.LocalShards`), the shard actor, the runtime that puts them together, settings,
logging set-up, and `ray_api`, the one module that calls Ray."""
