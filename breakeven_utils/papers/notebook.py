"""The notebooks' common preamble, one call: ``nb = notebook.start("01_break_even",
profile, output_root, run_store, jobs)`` resolves where the notebook reads runs and
writes figures (``reporting.manifest.notebook_paths``: resolved from the project, not the
working directory, ``smoke`` kept away from the committed figures; printed), how its runs
execute (the executor, device, jobs and threads of ``make reproduce``: ``store.sweeps.sweep_env``), and starts
the clock of its manifest entry. The returned :class:`Notebook` sweeps, loads, saves
figures and tables into the notebook's folder, and writes its manifest entry.
"""
from __future__ import annotations

import ast
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from IPython import get_ipython

from breakeven_utils.papers.registry import Section, section
from breakeven_utils.reporting.claims import at_profile, save_claims
from breakeven_utils.reporting.manifest import (
    code_label,
    default_output_root,
    in_project,
    notebook_paths,
    shown_path,
    write_manifest,
)
from breakeven_utils.reporting.plotting import provenance, save_figure
from breakeven_utils.reporting.tables import save_table
from breakeven_utils.store.runs import compute_time, load
from breakeven_utils.store.sweeps import sweep, sweep_env

__all__ = ["PARAMETERS", "OVERRIDE_FIGURES", "Notebook", "check_parameters", "injected_names", "start"]

#: the names of every notebook's ``parameters`` cell
PARAMETERS = ("profile", "output_root", "run_store", "jobs", "overrides")

#: where a run with overrides writes when no ``output_root`` is given: never the committed figures/
OVERRIDE_FIGURES = "runs/override_figures"


@dataclass
class Notebook:
    """One executing notebook: its section, profile, figure folder ``out``, output root,
    run store, local jobs, the profile's overrides, the code that runs it (``code_label``)
    and start time (``time.time()``)."""

    section: Section
    profile: str
    out: Path
    output_root: str
    run_store: str
    jobs: int | None = None
    overrides: dict = field(default_factory=dict)
    code: str = ""
    t_start: float = field(default_factory=time.time)

    @property
    def seconds(self) -> float:
        """Wall time since :func:`start`."""
        return time.time() - self.t_start

    def sweep(self, configs, **kw):
        """``store.sweeps.sweep`` of ``configs`` in this notebook's run store, with the
        executor/device/jobs/threads of the environment (``sweep_env``); ``progress``
        defaults to on except at ``smoke``; other keywords pass through."""
        kw.setdefault("progress", self.profile != "smoke")
        return sweep(configs, store=self.run_store, **self.sweep_env(), **kw)

    def sweep_env(self) -> dict:
        """The executor, device, jobs and threads per run this notebook's sweeps use."""
        return sweep_env(self.run_store, jobs=self.jobs, profile=self.profile)

    def load(self, config):
        """A finished run of this notebook's run store (``store.runs.load``)."""
        return load(config, store=self.run_store)

    def provenance(self, data_label: str, seeds) -> str:
        """A figure's footer (``reporting.plotting.provenance``): data, profile with this
        notebook's overrides, seeds, and the code that drew it."""
        return provenance(data_label, self.profile, seeds, overrides=self.overrides, code=self.code)

    def save_figure(self, fig, name: str, **kw):
        """``name.png`` / ``.pdf`` in the notebook's figure folder."""
        return save_figure(fig, name, self.out, **kw)

    def save_table(self, df, name: str, **kw):
        """``name.csv`` / ``.md`` in the notebook's figure folder."""
        return save_table(df, name, self.out, **kw)

    def save_claims(self, claims) -> list:
        """The claims as this profile can state them (``reporting.claims.at_profile``: none is
        decided at ``smoke``), written to the notebook's folder (``claims.csv``/``.md``) and
        returned for display."""
        claims = at_profile(claims, self.profile)
        save_claims(claims, self.out)
        return claims

    def write_manifest(self, entry: dict, runs=None) -> dict:
        """Merge ``entry`` (plus ``notebook_seconds`` and, with ``runs``, their compute time:
        ``store.runs.compute_time``) into ``<output_root>/manifest.json`` under the notebook."""
        entry = {**entry, "overrides": self.overrides, "notebook_seconds": round(self.seconds, 1)}
        if runs is not None:
            entry.update(compute_time(runs, self.run_store, since=self.t_start))
        return write_manifest(Path(self.output_root) / "manifest.json", {self.section.notebook: entry})


def check_parameters(profile, output_root=None, run_store=None, jobs=None, overrides=None) -> None:
    """Raise ``ValueError`` naming the parameter of a notebook's ``parameters`` cell that has
    the wrong type (papermill's ``-p jobs abc`` arrives as the string 'abc'), before any
    compute; the profile's name and the overrides' keys and values are checked by
    ``core.profiles``."""
    if not isinstance(profile, str):
        raise ValueError(f"parameter 'profile': expected a profile name (smoke, cpu, paper), got {profile!r}")
    for name, v in (("output_root", output_root), ("run_store", run_store)):
        if v is not None and not isinstance(v, (str, os.PathLike)):
            raise ValueError(f"parameter {name!r}: expected a path or None, got {type(v).__name__} {v!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"parameter 'jobs': expected a positive integer or None, got {type(jobs).__name__} "
                         f"{jobs!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError("parameter 'overrides': expected a dict of profile keys, e.g. {'seeds': [0, 1]}, "
                         f"got {type(overrides).__name__} {overrides!r}")


def injected_names(history=None) -> list[str]:
    """The names papermill's injected cell assigned in this kernel (its cells start with
    ``# Parameters``), read from IPython's input history (``history``: a list of cell
    sources, default the running kernel's ``In``); [] outside IPython."""
    if history is None:
        shell = get_ipython()
        history = shell.user_ns.get("In", []) if shell is not None else []
    names = []
    for src in history:
        if not str(src).lstrip().startswith("# Parameters"):
            continue
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        names += [t.id for node in tree.body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name)]
    return names


def start(notebook: str, profile: str, output_root=None, run_store=None, jobs=None,
          overrides=None) -> Notebook:
    """The preamble of every notebook (the values of its ``parameters`` cell in, a
    :class:`Notebook` out): checks the parameters and that papermill injected no name the
    cell does not define (``-p profle cpu``); with ``overrides`` and no ``output_root`` the
    figures go to :data:`OVERRIDE_FIGURES`, not the committed ``figures/``. Silences torch's
    forward-mode AD warning about ``torch.jit.script``."""
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")  # torch-internal, forward-mode AD
    unknown = [n for n in dict.fromkeys(injected_names()) if n not in PARAMETERS]
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (papermill -p/-y): the notebook's parameters are "
                         f"{', '.join(PARAMETERS)}")
    check_parameters(profile, output_root, run_store, jobs, overrides)
    overrides = dict(overrides or {})
    sec = section(notebook)
    t_start = time.time()
    if overrides and output_root is None and default_output_root(profile) == in_project("figures"):
        output_root = in_project(OVERRIDE_FIGURES)
    out, output_root, run_store = notebook_paths(sec.folder, profile, output_root, run_store)
    print(f"{notebook} at profile {profile!r}" + (f" with overrides {overrides}" if overrides else "")
          + f": runs read from and stored in {shown_path(run_store)}/, figures and tables written to "
          f"{shown_path(out)}/")
    return Notebook(sec, profile, out, output_root, run_store, jobs, overrides, code_label(), t_start)
