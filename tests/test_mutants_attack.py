"""Tests written to kill surviving mutants of `fedbench.attack` (see docs/testing.md)."""
