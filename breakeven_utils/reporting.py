"""Writing notebook results: figures, tables, the claims table and the manifest.

Every notebook writes into ``<output_root>/<section>/`` (``01_break_even`` ->
``break_even``) with stable names, so ``make reproduce`` overwrites the same
files and git shows what changed. All writes are atomic (temporary file in
the target directory + ``os.replace``): an interrupted run never leaves a
half-written PNG, table or manifest behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = [
    "section_name", "notebook_paths", "output_dir", "save_figure", "save_table", "to_markdown",
    "Claim", "claims_table", "VERDICTS", "git_commit", "write_manifest",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


# notebooks whose figure folder has a shorter name than the notebook
SECTION_DIRS = {"walk_with_sgd": "walk", "sharpest_directions_nsgd": "nsgd"}


def section_name(notebook_name: str) -> str:
    """'01_break_even' / 'notebooks/01_break_even.ipynb' -> 'break_even';
    '04_walk_with_sgd' -> 'walk' and '05_sharpest_directions_nsgd' -> 'nsgd'
    (:data:`SECTION_DIRS`)."""
    stem = Path(str(notebook_name)).name
    if stem.endswith(".ipynb"):
        stem = stem[: -len(".ipynb")]
    section = re.sub(r"^\d+[_\-]", "", stem)
    if not section or not _NAME_RE.match(section):
        raise ValueError(f"cannot derive a section name from notebook name {notebook_name!r}")
    return SECTION_DIRS.get(section, section)


def output_dir(notebook_name: str, root: str | os.PathLike = "figures") -> Path:
    """Create and return ``root/<section>`` for a notebook (e.g. figures/break_even)."""
    path = Path(root) / section_name(notebook_name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_output_root(profile: str) -> str:
    """Output root, relative to the notebooks folder, for a profile: ``../figures``, or
    ``../runs/smoke_figures`` for ``smoke`` so that tests never overwrite the committed
    figures (the notebooks and ``scripts/reproduce.py`` share this rule)."""
    return "../runs/smoke_figures" if profile == "smoke" else "../figures"


def notebook_paths(notebook_name: str, profile: str, output_root=None, run_store=None):
    """Resolve a notebook's parameters cell: ``(out_dir, output_root, run_store)``.

    Relative to the notebooks folder (where papermill and nbval run them):
    ``output_root`` defaults to ``../figures``, except for the ``smoke`` profile,
    whose outputs go to ``../runs/smoke_figures`` so that tests never overwrite
    the committed figures; ``run_store`` defaults to ``$BREAKEVEN_RUNS``, else
    ``../runs``.
    """
    if output_root is None:
        output_root = default_output_root(profile)
    if run_store is None:
        run_store = os.environ.get("BREAKEVEN_RUNS", "../runs")
    return output_dir(notebook_name, output_root), output_root, run_store


def _check_name(name: str, suffixes: tuple[str, ...]) -> str:
    name = str(name)
    for suf in suffixes:  # tolerate 'fig1.png' -> 'fig1'
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    if not _NAME_RE.match(name):
        raise ValueError(f"file name {name!r} must be a plain name (letters, digits, _ . -), no directories")
    return name


def _atomic_write(path: Path, write) -> Path:
    """Call write(tmp_path) then os.replace(tmp_path, path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_figure(fig, name: str, outdir: str | os.PathLike, *, pdf: bool = True,
                dpi: int = 150) -> list[Path]:
    """Write ``outdir/name.png`` (and ``name.pdf``) atomically; returns the paths.

    Uses bbox_inches='tight' so the provenance footer added by
    plotting.annotate (below the axes) is included. PDF metadata carries no
    creation date, so unchanged figures give identical PDF files.
    """
    name = _check_name(name, (".png", ".pdf"))
    outdir = Path(outdir)
    paths = [outdir / f"{name}.png"]
    _atomic_write(paths[0], lambda tmp: fig.savefig(
        tmp, format="png", dpi=dpi, bbox_inches="tight", pil_kwargs={"optimize": True}))
    if pdf:
        paths.append(outdir / f"{name}.pdf")
        _atomic_write(paths[1], lambda tmp: fig.savefig(
            tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None}))
    return paths


def _fmt_cell(v, float_format: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        s = float_format.format(v)
    else:
        s = str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, *, float_format: str = "{:.4g}", index: bool = False) -> str:
    """Small GitHub-flavoured Markdown table renderer (no `tabulate` dependency)."""
    if index:
        df = df.reset_index()
    header = [_fmt_cell(c, float_format) for c in df.columns]
    rows = [[_fmt_cell(v, float_format) for v in row] for row in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns] if len(df.columns) else []
    widths = [max([len(header[j]), 3] + [len(r[j]) for r in rows]) for j in range(len(header))]

    def line(cells):
        out = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "| " + " | ".join(out) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w
                            for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(header), sep] + [line(r) for r in rows]) + "\n"


def save_table(df: pd.DataFrame, name: str, outdir: str | os.PathLike, *,
               float_format: str = "{:.4g}") -> list[Path]:
    """Write ``outdir/name.csv`` (full precision) and ``outdir/name.md`` atomically."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"save_table needs a pandas DataFrame, got {type(df).__name__}")
    name = _check_name(name, (".csv", ".md"))
    outdir = Path(outdir)
    keep_index = not isinstance(df.index, pd.RangeIndex) or df.index.name is not None
    csv_path = _atomic_write(outdir / f"{name}.csv",
                             lambda tmp: df.to_csv(tmp, index=keep_index, lineterminator="\n"))
    md = to_markdown(df, float_format=float_format, index=keep_index)
    md_path = _atomic_write(outdir / f"{name}.md",
                            lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    return [csv_path, md_path]


VERDICTS = ("holds", "does not hold", "not testable at this scale")


@dataclass(frozen=True)
class Claim:
    """One row of a notebook's claims table: a paper claim checked on measured numbers.

    verdict: 'holds' / 'does not hold' / 'not testable at this scale', or a
    bool (True -> holds, False -> does not hold) or None (-> not testable;
    then reason is required). measured: a string or a mapping of numbers.
    """
    claim: str
    measured: Any
    criterion: str
    verdict: Any
    reason: str = ""

    def __post_init__(self):
        v = self.verdict
        if v is None:
            v = VERDICTS[2]
        elif isinstance(v, (bool, np.bool_)):
            v = VERDICTS[0] if bool(v) else VERDICTS[1]
        if v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS} or a bool/None, got {self.verdict!r}")
        if v == VERDICTS[2] and not str(self.reason).strip():
            raise ValueError(f"claim {self.claim!r}: 'not testable at this scale' needs a reason")
        object.__setattr__(self, "verdict", v)

    def row(self) -> dict[str, str]:
        verdict = self.verdict + (f" ({self.reason})" if self.reason else "")
        return {"claim": self.claim, "measured": _fmt_measured(self.measured),
                "criterion": self.criterion, "verdict": verdict}


def _fmt_measured(m) -> str:
    if isinstance(m, Mapping):
        return ", ".join(f"{k} = {_fmt_number(v)}" for k, v in m.items())
    return _fmt_number(m)


def _fmt_number(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return f"{float(v):.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_number(x) for x in v) + "]"
    return str(v)


def claims_table(rows: Iterable[Claim | Mapping | tuple]) -> pd.DataFrame:
    """Claims table with columns claim, measured, criterion, verdict.

    rows: Claim objects, dicts with Claim's fields, or tuples in Claim's field
    order. The reason of a verdict is appended to it in parentheses.
    """
    claims = []
    for r in rows:
        if isinstance(r, Claim):
            claims.append(r)
        elif isinstance(r, Mapping):
            claims.append(Claim(**r))
        elif isinstance(r, tuple):
            claims.append(Claim(*r))
        else:
            raise ValueError(f"claims_table rows must be Claim, dict or tuple, got {type(r).__name__}")
    return pd.DataFrame([c.row() for c in claims], columns=["claim", "measured", "criterion", "verdict"])


def git_commit(repo_dir: str | os.PathLike | None = None) -> str:
    """`git rev-parse HEAD` of the project (default: the repo holding this package), else 'unknown'."""
    repo_dir = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else "unknown"


def _jsonable(v):
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:  # numpy/torch scalar
        return _jsonable(v.item())
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON has no NaN/inf
    return v


def write_manifest(path: str | os.PathLike, entries: Mapping[str, Mapping[str, Any]]) -> dict:
    """Merge per-notebook entries into the manifest JSON at ``path`` (atomically).

    entries: {notebook_name: {"profile": ..., "data": <data label>, "seeds": [...],
    "wall_time_s": ..., ...}}. Keys of an existing entry are updated, not
    dropped, so the notebook (data label, seeds) and scripts/reproduce.py
    (wall time, status) can each contribute. Every entry written gets
    ``version`` (breakeven_utils.__version__), ``git_commit`` and ``timestamp``
    (UTC, ISO 8601). Returns the whole manifest.
    """
    from . import __version__

    if not isinstance(entries, Mapping):
        raise ValueError("entries must be a mapping {notebook_name: {key: value}}")
    path = Path(path)
    manifest: dict = {"notebooks": {}}
    if path.exists():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from e
        manifest.setdefault("notebooks", {})
    stamp = {
        "version": __version__,
        "git_commit": git_commit(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    for name, entry in entries.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"manifest entry for {name!r} must be a mapping, got {type(entry).__name__}")
        merged = dict(manifest["notebooks"].get(str(name), {}))
        merged.update(_jsonable(entry))
        merged.update(stamp)
        manifest["notebooks"][str(name)] = merged
    manifest["notebooks"] = dict(sorted(manifest["notebooks"].items()))
    text = json.dumps(_jsonable(manifest), indent=2, allow_nan=False) + "\n"
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return manifest
