"""The training engine: the epoch loop, checkpoints and model selection (training.py), optimisers and schedules, and the one scoring loop."""
