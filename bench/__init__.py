"""Benchmarks: speed is measured here, never asserted in tests. `make bench` runs them all."""
