"""Lightning callbacks of lit_vir: logging and monitoring that belong to a run, not to a model."""
