"""Sale-day traffic: scenarios, seeded generators, simulated clock, record/replay, reports."""
