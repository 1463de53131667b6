"""Benchmarks inside the package: the departure zoo, the detection benchmark, and the writer of BENCHMARKS.md
sections."""
