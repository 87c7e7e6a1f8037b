"""Where a notebook writes and what it records: the output folders of a notebook,
and ``manifest.json`` (profile, data, seeds, wall time, package version, git commit
of every notebook run), written atomically."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

from breakeven_utils import __version__
from breakeven_utils.core.io import atomic_write_text
from breakeven_utils.store.runs import code_fingerprint

__all__ = ["project_root", "in_project", "code_label", "default_output_root", "default_run_store",
           "output_dir", "notebook_paths", "shown_path", "git_commit", "git_dirty", "write_manifest"]


def project_root() -> Path | None:
    """The checkout this package runs from (the folder with ``pyproject.toml`` and
    ``notebooks/`` above ``breakeven_utils/``), or None for an installed copy."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def in_project(rel: str) -> str:
    """``rel`` inside the project (:func:`project_root`); outside a checkout, relative to the
    notebooks folder (``../rel``)."""
    root = project_root()
    return str(root / rel) if root is not None else str(Path("..") / rel)


def default_output_root(profile: str) -> str:
    """Output root for a profile: ``figures/`` of the project, or ``runs/smoke_figures/`` for
    ``smoke`` so that tests never overwrite the committed figures (the notebooks and
    ``scripts/reproduce.py`` share this rule). Resolved from the project, not the working
    directory, so papermill run from anywhere writes inside the repository (outside a
    checkout: relative to the notebooks folder, ``../figures``)."""
    return in_project("runs/smoke_figures" if profile == "smoke" else "figures")


def default_run_store() -> str:
    """``$BREAKEVEN_RUNS``, else the project's ``runs/`` (resolved as :func:`default_output_root`)."""
    return os.environ.get("BREAKEVEN_RUNS") or in_project("runs")


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a notebook prints it: relative to the project when inside it (no machine's
    absolute path in a committed notebook), else absolute."""
    p, root = Path(path).resolve(), project_root()
    if root is not None and p.is_relative_to(root):
        return str(p.relative_to(root)) or "."
    return str(p)


def output_dir(folder: str, root: str | os.PathLike = "figures") -> Path:
    """Create and return ``root/<folder>`` (e.g. figures/break_even)."""
    path = Path(root) / folder
    path.mkdir(parents=True, exist_ok=True)
    return path


def notebook_paths(folder: str, profile: str, output_root=None, run_store=None):
    """Resolve a notebook's parameters cell: ``(out_dir, output_root, run_store)``, the
    defaults from :func:`default_output_root` and :func:`default_run_store`; explicit
    relative paths are taken relative to the working directory."""
    if output_root is None:
        output_root = default_output_root(profile)
    if run_store is None:
        run_store = default_run_store()
    return output_dir(folder, output_root), output_root, run_store


def _git(repo_dir, *args: str) -> str | None:
    """stdout of ``git <args>`` in ``repo_dir`` (default: the repo holding this package), or
    None when git is missing, fails or times out."""
    repo_dir = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(repo_dir: str | os.PathLike | None = None) -> str:
    """`git rev-parse HEAD` of the project (default: the repo holding this package), else 'unknown'."""
    commit = _git(repo_dir, "rev-parse", "HEAD")
    return commit if commit and re.fullmatch(r"[0-9a-f]{40,64}", commit) else "unknown"


#: what ``make reproduce`` writes: changes there are outputs, not other code
OUTPUT_PATHS = ("figures", "notebooks", "tests/notebooks")


def git_dirty(repo_dir: str | os.PathLike | None = None) -> bool | None:
    """Whether the checkout's tracked files other than the outputs (:data:`OUTPUT_PATHS`)
    differ from its commit (None outside git): a figure drawn while ``make reproduce``
    rewrites figures/ and notebooks/ still names its code as the commit."""
    root = _git(repo_dir, "rev-parse", "--show-toplevel")
    if root is None:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":(exclude){p}" for p in OUTPUT_PATHS))
    return None if status is None else bool(status)


def code_label() -> str:
    """The code that draws a figure, as its footer says it: the short git commit, with
    "+changes" when tracked files differ from it; outside git, the run code's fingerprint
    (``store.runs.code_fingerprint``)."""
    commit = git_commit()
    if commit == "unknown":
        return f"code {code_fingerprint()}"
    return f"code {commit[:7]}" + ("+changes" if git_dirty() else "")


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
    ``version`` (breakeven_utils.__version__), ``git_commit``, ``git_dirty`` (uncommitted
    changes when it ran), ``code`` (``store.runs.code_fingerprint``: the code that computes
    runs) and ``timestamp`` (UTC, ISO 8601). Returns the whole manifest.
    """
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
        "git_dirty": git_dirty(),
        "code": code_fingerprint(),
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
    atomic_write_text(path, text)
    return manifest
