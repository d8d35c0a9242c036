"""lit_vir: a Lightning experiment framework for the Vision Reservoir and the ViT variants it is compared with."""

import os

# PyTorch's OpenMP threads spin while they wait for each other ("active" waiting). On a machine whose cores are
# busy with other work, a spinning thread burns the time slice its peer needs, and a 35-second CPU run can take
# ten minutes. Passive waiting (sleep at the barrier) costs little on an idle machine and removes that cliff.
# It must be set before torch loads its OpenMP runtime, which is why it lives here, above every import of torch;
# set OMP_WAIT_POLICY yourself to override it. Measured in docs/benchmarks.md ("Threads on a busy machine").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def __getattr__(name: str):
    """`lit_vir.load_model(folder)`: imported on first use, so `import lit_vir` stays light (and Lightning-free)."""
    if name == "load_model":
        from lit_vir.export.portable import load_model

        return load_model
    raise AttributeError(f"module 'lit_vir' has no attribute {name!r}")
