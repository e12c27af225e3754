"""Experiment drivers: local W&B sweeps and ablation studies."""
