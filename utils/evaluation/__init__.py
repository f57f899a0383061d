"""Evaluation: the official metrics as pure array maths (metrics.py), score files, calibration and plots."""
