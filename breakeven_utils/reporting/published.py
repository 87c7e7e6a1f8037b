"""The notebooks a reader opens in ``notebooks/``: an executed notebook (papermill's output)
turned into the committed copy that shows the results of the run that drew the committed
``figures/``.

:func:`reader_copy` keeps every output, folds papermill's injected cell into the
``parameters`` cell (so "Run All" in JupyterLab runs the profile the outputs come from, and
no later cell resets a reader's choice), drops papermill's per-run metadata and the
transient progress bars, and gives the cells stable ids; :func:`publish` writes it.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import nbformat

from breakeven_utils.core.io import atomic_write_text

__all__ = ["INJECTED_TAG", "PARAMETERS_TAG", "fold_parameters", "reader_copy", "without_run_metadata",
           "publish"]

#: papermill's tag on the cell it inserts after the ``parameters`` cell
INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"

#: a line of a text progress bar (``core.console``, tqdm): "label |███▎      | 00:03, ..."
_BAR = re.compile(r"\|[█▏▎▍▌▋▊▉ ]*\|")


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def _assignments(source: str) -> dict[str, ast.Assign]:
    """name -> its top-level ``name = value`` statement in a cell's source."""
    tree = ast.parse(source)
    return {node.targets[0].id: node for node in tree.body if isinstance(node, ast.Assign)
            and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}


def fold_parameters(parameters: str, injected: str) -> str:
    """``parameters`` (a parameters cell's source) with each value that ``injected`` (papermill's
    cell) assigns written in place of the cell's own, comments kept. A name the parameters cell
    does not define raises ``ValueError``: the notebook has no such parameter."""
    own, new = _assignments(parameters), _assignments(injected)
    unknown = sorted(set(new) - set(own))
    if unknown:
        raise ValueError(f"papermill injected {unknown}, which the parameters cell does not define "
                         f"(it defines {sorted(own)})")
    lines = parameters.splitlines()
    # replace from the bottom so earlier offsets stay valid; values may span lines
    for name in sorted(new, key=lambda n: own[n].value.lineno, reverse=True):
        old, value = own[name].value, ast.get_source_segment(injected, new[name].value)
        first, last = lines[old.lineno - 1], lines[old.end_lineno - 1]
        merged = first[:old.col_offset] + value + last[old.end_col_offset:]
        lines[old.lineno - 1:old.end_lineno] = merged.splitlines()
    return "\n".join(lines)


def _terminal_lines(text: str) -> list[str]:
    """``text`` as a terminal shows it: each line is what follows its last carriage return."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


def _merged(outputs: list) -> list:
    """``outputs`` with consecutive streams of one name joined into one."""
    merged: list = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (prev is not None and out.get("output_type") == "stream" == prev.get("output_type")
                and out.get("name") == prev.get("name")):
            prev["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def _streams(outputs: list) -> list:
    """``outputs`` with consecutive streams of one name merged, and stderr as a terminal would
    leave it, without progress bars or lines the cell's stdout already shows (the per-run
    lines of a sweep); a stderr stream left empty is dropped. Other outputs are unchanged."""
    merged = _merged(outputs)
    shown = {line.strip() for o in merged if o.get("name") == "stdout" for line in o["text"].splitlines()}
    kept = []
    for out in merged:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            lines = [ln for ln in _terminal_lines(out["text"])
                     if ln.strip() and not _BAR.search(ln) and ln.strip() not in shown]
            if not lines:
                continue
            out["text"] = "\n".join(lines) + "\n"
        kept.append(out)
    return _merged(kept)


def reader_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The committed copy of an executed notebook ``nb`` (changed in place and returned): the
    injected cell folded into the ``parameters`` cell and removed; papermill's and the
    execution's metadata removed; progress bars dropped; consecutive streams merged; cell ids
    ``cell-00``, ``cell-01``, ... A notebook without exactly one ``parameters`` cell raises."""
    params = [c for c in nb.cells if PARAMETERS_TAG in _tags(c)]
    if len(params) != 1:
        raise ValueError(f"expected one cell tagged {PARAMETERS_TAG!r}, found {len(params)}")
    for cell in [c for c in nb.cells if INJECTED_TAG in _tags(c)]:
        params[0].source = fold_parameters(params[0].source, cell.source)
        nb.cells.remove(cell)
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = _streams(cell.outputs)
    return without_run_metadata(nb)


def without_run_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` (changed in place) without what changes from one execution to the next:
    papermill's and the execution's metadata; cell ids ``cell-00``, ``cell-01``, ... (papermill
    gives its injected cell a random one)."""
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def publish(executed: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write :func:`reader_copy` of the executed notebook at ``executed`` to ``target``
    (atomically); returns ``target``."""
    nb = reader_copy(nbformat.read(str(executed), as_version=4))
    return atomic_write_text(Path(target), nbformat.writes(nb) + "\n")
