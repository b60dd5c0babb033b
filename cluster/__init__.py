"""How it runs: the `saleday` CLI, logging set-up and benchmarks (routing, the gateway and
Ray wiring arrive with the inventory shards)."""
