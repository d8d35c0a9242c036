"""Robustness: metrics over corrupted test sets, and perturbations of a trained model's parameters."""
