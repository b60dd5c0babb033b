"""How it runs: routing, the gateway-shard wire, Ray wiring, the batching gateway, the
runtime that puts them together, the `saleday` CLI, logging set-up and benchmarks."""
