"""The committed notebooks. ``notebooks/`` as a reader opens them in JupyterLab: the outputs of
the run that drew the committed ``figures/`` (real data), "Run All" runs the profile of the
``parameters`` cell (no papermill cell after it resets it), no machine's paths, no warnings.
``tests/notebooks/``: the smoke copies nbval re-executes. Both are the build of their sources."""
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from build_notebooks import cells_of, parse  # noqa: E402

SOURCES = sorted((ROOT / "scripts" / "notebook_sources").glob("[0-9][0-9]_*.py"))
MANIFEST = json.loads((ROOT / "figures" / "manifest.json").read_text())["notebooks"]


def tags(cell) -> list:
    return cell.metadata.get("tags", [])


def outputs_text(nb) -> str:
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_reader_copy_shows_the_committed_run_and_keeps_the_profile_on_run_all(src):
    path = ROOT / "notebooks" / f"{src.stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert cells_of(nb) == cells_of(parse(src.read_text())), \
        f"{path.name} is not the build of its source: make reproduce NOTEBOOKS={src.stem}"
    t = [tags(c) for c in nb.cells]
    assert sum("parameters" in x for x in t) == 1, "exactly one parameters cell"
    assert not any("injected-parameters" in x for x in t), \
        "papermill's injected cell would reset the reader's profile (reporting.published folds it)"
    params = next(c for c, x in zip(nb.cells, t) if "parameters" in x)
    profile = re.search(r'^profile = "(\w+)"', params.source, re.M).group(1)
    assert profile == MANIFEST[src.stem]["profile"] != "smoke", "the outputs are the committed figures' run"
    later = [c.source for c in nb.cells[t.index(["parameters"]) + 1:] if c.cell_type == "code"]
    assert not any(re.search(r"^profile\s*=", s, re.M) for s in later), "a later cell assigns profile"
    images = sum("image/png" in o.get("data", {})
                 for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 3, "the reader copy carries the figures"
    text = outputs_text(nb)
    assert f"at profile '{profile}'" in text and "synthetic" not in text.lower()
    assert "Warning" not in text and "Traceback" not in text
    raw = path.read_text()
    assert str(ROOT) not in raw and not re.search(r'"/(home|work|root|tmp|Users)/', raw), "a machine's path"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_smoke_copy_for_nbval_is_the_build_of_its_source(src):
    nb = nbformat.read(ROOT / "tests" / "notebooks" / f"{src.stem}.ipynb", as_version=4)
    assert cells_of(nb) == cells_of(parse(src.read_text())), \
        f"tests/notebooks/{src.stem}.ipynb is stale: python scripts/build_notebooks.py {src.stem}"
    assert "smoke-copy-note" in tags(nb.cells[0]) and "Smoke copy for the tests" in nb.cells[0].source
    injected = [c for c in nb.cells if "injected-parameters" in tags(c)]
    assert len(injected) == 1 and re.search(r'^profile = "smoke"', injected[0].source, re.M)
    assert any(c.outputs for c in nb.cells if c.cell_type == "code"), "executed (nbval compares outputs)"
