"""The analyst notebooks run from top to bottom on a fresh embedded store, so they never rot.
They are committed without outputs; this executes them in memory."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.settings import Settings

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.skipif(bool(os.environ.get("OPSGRAPH_URI")), reason="they create demo data")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    monkeypatch.setenv("OPSGRAPH_HOME", str(tmp_path))
    try:
        NotebookClient(
            book,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        EmbeddedServer(Settings(home=tmp_path)).stop()
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
