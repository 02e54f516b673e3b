"""Hydra configuration: one folder per config group, mirroring the fedbench packages."""
