"""Figures of the documentation site that are not written by a `lit-vir` command itself, as PNG under docs/images/.

    python scripts/docs_figures.py                 # every figure below
    python scripts/docs_figures.py alpha-sweep     # one of them
    python scripts/docs_figures.py alpha-sweep --execute   # run the notebook first (minutes at N 1000)

alpha-sweep: the λ and memory-capacity sweep over the spectral radius α of notebooks/reservoir_dynamics.ipynb, as
its saved outputs hold it (one execution at the reference N = 1000, checked by tests/test_notebook.py), or after
running the notebook again with --execute (LIT_VIR_NOTEBOOK_NODES sets N).

The other figures of the site are written by the commands that make them and committed under docs/measurements/
(`lit-vir compare`'s compare.png, the corruption report's corruption_heatmap.png, `lit-vir perturb`'s
perturbation.png), and the screenshots by scripts/docs_screenshots.py.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "reservoir_dynamics.ipynb"
IMAGES = REPO / "docs" / "images"
SWEEP_CELL = "largest Lyapunov exponent"  # a line of the code cell that draws the α sweep


def alpha_sweep(execute: bool) -> Path:
    """The first PNG that the notebook's α-sweep cell displays, written to docs/images/alpha-sweep.png."""
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if execute:
        from nbclient import NotebookClient

        resources = {"metadata": {"path": str(NOTEBOOK.parent)}}
        NotebookClient(notebook, timeout=3600, kernel_name="python3", resources=resources).execute()
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and SWEEP_CELL in cell.source]
    if len(cells) != 1:
        raise SystemExit(f"{NOTEBOOK}: expected one code cell drawing '{SWEEP_CELL}', found {len(cells)}")
    pictures = [output.data["image/png"] for output in cells[0].outputs if "image/png" in output.get("data", {})]
    if not pictures:
        raise SystemExit(f"{NOTEBOOK}: the α-sweep cell has no saved figure; run with --execute")
    path = IMAGES / "alpha-sweep.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(base64.b64decode(pictures[0]))
    temporary.replace(path)
    return path


FIGURES = {"alpha-sweep": alpha_sweep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", nargs="*", help=f"which of {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--execute", action="store_true", help="run the notebook before taking its figure")
    arguments = parser.parse_args()
    unknown = sorted(set(arguments.figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figures {unknown}; choose from {', '.join(FIGURES)}")
    for name in arguments.figures or FIGURES:
        print(f"wrote {FIGURES[name](arguments.execute).relative_to(REPO)}")


if __name__ == "__main__":
    main()
