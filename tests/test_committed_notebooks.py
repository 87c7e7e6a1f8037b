"""The committed notebooks as a reader opens them in JupyterLab: "Run All" runs the profile
of the ``parameters`` cell (no papermill cell after it resets it), and they are the build of
their sources."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_run_all_keeps_the_profile_of_the_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum("parameters" in t for t in tags) == 1, "exactly one parameters cell"
    assert not any("injected-parameters" in t for t in tags), \
        "papermill's injected cell would reset the reader's profile: rebuild with scripts/build_notebooks.py"
    params = next(c for c, t in zip(nb.cells, tags) if "parameters" in t)
    assert re.search(r'^profile = "smoke"', params.source, re.M)
    later = [c.source for c in nb.cells[tags.index(["parameters"]) + 1:] if c.cell_type == "code"]
    assert not any(re.search(r"^profile\s*=", s, re.M) for s in later), "a later cell assigns profile"
