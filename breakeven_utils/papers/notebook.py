"""The notebooks' common preamble, one call: ``nb = notebook.start("01_break_even",
profile, output_root, run_store, jobs)`` resolves where the notebook reads runs and
writes figures (``reporting.manifest.notebook_paths``: relative to the notebooks folder,
``smoke`` kept away from the committed figures), how its runs execute (the executor,
device, jobs and threads of ``make reproduce``: ``store.sweeps.sweep_env``), and starts
the clock of its manifest entry. The returned :class:`Notebook` sweeps, loads, saves
figures and tables into the notebook's folder, and writes its manifest entry.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from breakeven_utils.papers.registry import Section, section
from breakeven_utils.reporting.manifest import notebook_paths, write_manifest
from breakeven_utils.reporting.plotting import save_figure
from breakeven_utils.reporting.tables import save_table
from breakeven_utils.store.runs import compute_time, load
from breakeven_utils.store.sweeps import sweep, sweep_env

__all__ = ["Notebook", "start"]


@dataclass
class Notebook:
    """One executing notebook: its section, profile, figure folder ``out``, output root,
    run store, local jobs and start time (``time.time()``)."""

    section: Section
    profile: str
    out: Path
    output_root: str
    run_store: str
    jobs: int | None = None
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

    def save_figure(self, fig, name: str, **kw):
        """``name.png`` / ``.pdf`` in the notebook's figure folder."""
        return save_figure(fig, name, self.out, **kw)

    def save_table(self, df, name: str, **kw):
        """``name.csv`` / ``.md`` in the notebook's figure folder."""
        return save_table(df, name, self.out, **kw)

    def write_manifest(self, entry: dict, runs=None) -> dict:
        """Merge ``entry`` (plus ``notebook_seconds`` and, with ``runs``, their compute time:
        ``store.runs.compute_time``) into ``<output_root>/manifest.json`` under the notebook."""
        entry = {**entry, "notebook_seconds": round(self.seconds, 1)}
        if runs is not None:
            entry.update(compute_time(runs, self.run_store, since=self.t_start))
        return write_manifest(Path(self.output_root) / "manifest.json", {self.section.notebook: entry})


def start(notebook: str, profile: str, output_root=None, run_store=None, jobs=None) -> Notebook:
    """The preamble of every notebook (the values of its ``parameters`` cell in, a
    :class:`Notebook` out); silences torch's forward-mode AD warning about ``torch.jit.script``."""
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")  # torch-internal, forward-mode AD
    sec = section(notebook)
    t_start = time.time()
    out, output_root, run_store = notebook_paths(sec.folder, profile, output_root, run_store)
    return Notebook(sec, profile, out, output_root, run_store, jobs, t_start)
