"""The notebooks run top to bottom on the stores shipped in experiments/ (so they cannot rot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from abq_helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"results_store", "calibration_diagnostics"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    book = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), (
        "commit notebooks with outputs stripped")
    client = nbclient.NotebookClient(book, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    shown = [o for c in book.cells for o in c.get("outputs", [])
             if o.output_type in ("display_data", "execute_result")]
    assert any("image/png" in o.get("data", {}) for o in shown), "no figure was drawn"
