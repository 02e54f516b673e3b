"""Tests written to kill surviving mutants of `fedbench.partition` (see docs/testing.md)."""
