"""Build notebooks/NN_*.ipynb from scripts/notebook_sources/NN_*.py and (with
--execute, the default) run them at the `smoke` profile with papermill, so the
committed notebooks carry the smoke outputs that `make test` checks with nbval.

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
SOURCES = ROOT / "scripts" / "notebook_sources"
NOTEBOOKS = ROOT / "notebooks"


def parse(text: str) -> nbformat.NotebookNode:
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
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--no-execute", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("BREAKEVEN_PROGRESS", "text")  # no widget views in committed outputs
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.names:
        sources = [p for p in sources if p.stem in args.names]
        if not sources:
            sys.exit(f"no notebook source named {args.names}")
    for src in sources:
        target = NOTEBOOKS / f"{src.stem}.ipynb"
        nbformat.write(parse(src.read_text()), target)
        if not args.no_execute:
            import papermill as pm

            pm.execute_notebook(str(target), str(target), parameters={"profile": "smoke"},
                                cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)
            nb = nbformat.read(target, as_version=4)
            # papermill's injected cell repeats the parameters cell's profile = "smoke"; kept, it
            # would reset a reader's profile = "cpu" on "Run All" in JupyterLab: drop it
            nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
            for cell in nb.cells:  # papermill's execution metadata changes every run: drop it
                cell.metadata.pop("papermill", None)
                cell.metadata.pop("execution", None)
                if cell.get("outputs"):  # keep committed outputs small: no progress bars or warnings
                    cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
            nb.metadata.pop("papermill", None)
            for i, cell in enumerate(nb.cells):  # papermill's injected cell gets a random id
                cell["id"] = f"cell-{i:02d}"
            nbformat.write(nb, target)
        print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
