"""The benchmarks every performance figure comes from, each with its baseline in the same run."""
