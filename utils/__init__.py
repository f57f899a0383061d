"""Configuration, metrics, optimisers and small I/O helpers shared by the scripts."""
