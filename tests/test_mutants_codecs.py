"""Tests written to kill surviving mutants of `fedbench.compress` (see docs/testing.md)."""
