"""Benchmarks: `python -m pipeline.bench <name> [options]`; each prints one JSON object as its last line."""
