"""Build the notebooks from their sources, scripts/notebook_sources/NN_*.py:

- ``tests/notebooks/NN_*.ipynb``: executed at the ``smoke`` profile with papermill (synthetic
  data, seconds), the copies ``make test`` re-executes with nbval. They open with a note that
  says so and keep papermill's injected cell (``profile = "smoke"``) after the ``parameters``
  cell.
- ``notebooks/NN_*.ipynb``, the copies a reader opens, carry the outputs of the run that drew
  the committed ``figures/`` (``make reproduce`` writes them: ``reporting.published``). Where
  a source's cells changed, this script writes the new cells there without outputs and says
  so: ``make reproduce`` (from the run store, minutes) fills them again.

    python scripts/build_notebooks.py [NAME ...] [--no-execute]

Source format: cells separated by "# %%" lines ("# %% [markdown]" for markdown,
whose lines are "# "-prefixed; "# %% tags=parameters" for papermill's cell).
"""
import argparse
import os
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from breakeven_utils.reporting.published import (  # noqa: E402
    INJECTED_TAG,
    PARAMETERS_TAG,
    without_run_metadata,
)

SOURCES = ROOT / "scripts" / "notebook_sources"
NOTEBOOKS = ROOT / "notebooks"
SMOKE_COPIES = ROOT / "tests" / "notebooks"
#: the tag of the note a smoke copy opens with (not part of the source)
SMOKE_NOTE_TAG = "smoke-copy-note"
SMOKE_NOTE = ("**Smoke copy for the tests** (`make test` re-executes it with nbval): synthetic data and tiny "
              "models, no result of the papers' (every verdict is *not testable* at `smoke`). The results "
              "on real data are in `notebooks/`.")


def parse(text: str) -> nbformat.NotebookNode:
    """The notebook of a source file (no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(chunks[1::2], chunks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            cell = nbformat.v4.new_code_cell(body)
            if "tags=parameters" in header:
                cell.metadata["tags"] = [PARAMETERS_TAG]
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def cells_of(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(type, source) of every cell but the ``parameters`` cell (its values are the run's) and
    papermill's injected cell: what must equal the source's build."""
    return [(c.cell_type, c.source) for c in nb.cells
            if not {PARAMETERS_TAG, INJECTED_TAG, SMOKE_NOTE_TAG} & set(c.metadata.get("tags", []))]


def build_smoke_copy(src: Path, execute: bool) -> Path:
    """tests/notebooks/<name>.ipynb from ``src``, executed at ``smoke`` unless ``execute`` is False."""
    SMOKE_COPIES.mkdir(parents=True, exist_ok=True)
    target = SMOKE_COPIES / f"{src.stem}.ipynb"
    nb = parse(src.read_text())
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(SMOKE_NOTE, metadata={"tags": [SMOKE_NOTE_TAG]}))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.write(nb, target)
    if execute:
        import papermill as pm

        pm.execute_notebook(str(target), str(target), parameters={"profile": "smoke"},
                            cwd=str(SMOKE_COPIES), kernel_name="python3", progress_bar=False)
        nb = nbformat.read(target, as_version=4)
        for cell in nb.cells:
            if cell.get("outputs"):  # keep the copies small: no progress bars or warnings
                cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
        nbformat.write(without_run_metadata(nb), target)
    return target


def sync_reader_copy(src: Path) -> bool:
    """Write ``src``'s cells to notebooks/<name>.ipynb, without outputs, when they differ from
    the committed copy's (or it is missing); True if it was written."""
    target = NOTEBOOKS / f"{src.stem}.ipynb"
    built = parse(src.read_text())
    if target.exists() and cells_of(nbformat.read(target, as_version=4)) == cells_of(built):
        return False
    nbformat.write(built, target)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--no-execute", action="store_true", help="write the smoke copies without running them")
    args = ap.parse_args()
    os.environ.setdefault("BREAKEVEN_PROGRESS", "text")  # no widget views in committed outputs
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.names:
        sources = [p for p in sources if p.stem in args.names]
        if not sources:
            sys.exit(f"no notebook source named {args.names}")
    stale = []
    for src in sources:
        target = build_smoke_copy(src, execute=not args.no_execute)
        print(f"wrote {target.relative_to(ROOT)}")
        if sync_reader_copy(src):
            stale.append(src.stem)
            print(f"wrote notebooks/{src.stem}.ipynb without outputs (its cells changed)")
    if stale:
        print("make reproduce NOTEBOOKS='" + " ".join(stale) + "' fills their outputs (from the run store)")


if __name__ == "__main__":
    main()
