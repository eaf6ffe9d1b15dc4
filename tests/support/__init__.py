"""Helpers the tests and the benchmarks share (the one place bench/ may import from tests/)."""
