"""notebooks/reservoir_dynamics.ipynb runs top to bottom, headless, and its saved outputs are a real run at N 1000."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "reservoir_dynamics.ipynb"


def outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def printed(notebook: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in outputs(notebook) if output.output_type == "stream")


def images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for output in outputs(notebook))


def test_notebook_executes_top_to_bottom_at_small_n(monkeypatch):
    monkeypatch.setenv("LIT_VIR_NOTEBOOK_NODES", "60")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny matrices: threads would only hand work back and forth
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    assert "N = 60," in printed(notebook)
    assert images(notebook) >= 7  # topology ×2, spectrum, image, states, λ and MC sweep, MC_k
    assert "sweep of 11 values of α" in printed(notebook)


def test_saved_outputs_come_from_one_execution_at_the_reference_size():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert not [output for output in outputs(notebook) if output.output_type == "error"]
    assert "N = 1000," in printed(notebook)
    assert images(notebook) >= 7
