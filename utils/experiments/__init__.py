"""Experiment management: seed sweeps, results tables, what produced each number, and the benchmark."""
