"""The engine of `lit-vir sweep`: the spec and its trials, search spaces, Optuna studies and storage, workers on this
machine or a SLURM array, status and report (docs/sweeps.md)."""
