"""The exploration notebook: its jupytext pair agrees, and every cell runs (CI fails when one fails)."""

import jupytext
import nbformat
from nbclient import NotebookClient

from app.settings import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def _sources(notebook) -> list[tuple[str, str]]:
    """Each cell's type and source, the part a review reads."""
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_notebook_and_its_py_twin_agree():
    paired = jupytext.read(NOTEBOOKS / "explore.py")
    stored = nbformat.read(NOTEBOOKS / "explore.ipynb", as_version=4)
    assert _sources(paired) == _sources(stored), "run `jupytext --sync notebooks/explore.py`"
    assert stored.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def test_notebook_runs_every_cell_and_shows_a_map():
    notebook = nbformat.read(NOTEBOOKS / "explore.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # raises on a failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    last = notebook.cells[-1].outputs[-1]["data"]["text/html"]
    assert "leaflet" in last.lower() and "site-marker" in last
