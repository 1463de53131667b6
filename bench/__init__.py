"""Benchmark scripts; each writes its own table into BENCHMARKS.md."""
