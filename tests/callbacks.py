"""A callback used by tests that drive the real CLI in a subprocess (importable there via PYTHONPATH)."""

import lightning as L


class AnnounceStep(L.Callback):
    """Print a marker line once training reaches `step`, so a test can act mid-epoch without sleeping."""

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            print(f"lit_vir-test: reached step {self.step}", flush=True)
