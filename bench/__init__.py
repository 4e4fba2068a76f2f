"""Benchmarks for Herald: `make bench` runs `python -m bench.throughput`."""
