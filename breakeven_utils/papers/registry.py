"""The one registry of paper sections: which notebook, figure folder, paper and
package each has, in notebook order.

Everything that needs the list of sections (the cost plan of ``make plan``, the
order of the claims ledger, the figure folder of a notebook, the notebooks'
common preamble) reads it here; the layers below never name a section. A
section package has the same shape as every other (``settings``, ``runs``,
``analysis``, ``claims``, ``figures``; ``plugins`` where it adds update rules or
metrics to the recorder) and ``runs.run_configs(profile, **overrides)`` lists
every run its notebook launches.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from breakeven_utils.reporting.tables import PLAIN_NAME
from breakeven_utils.store.plan import check_config

__all__ = ["Section", "SECTIONS", "section", "folder_of", "notebook_order", "NotBuilt", "notebook_runs",
           "absences"]


@dataclass(frozen=True)
class Section:
    """One notebook: its name (``01_break_even``), the folder of its figures under the
    output root, the paper it reproduces (a key of ``reporting.claims.PAPER_TITLES``),
    what it covers, and the package that computes it."""

    notebook: str
    folder: str
    paper: str
    title: str
    package: str

    @property
    def runs_module(self) -> str:
        return f"{self.package}.runs"

    @property
    def quotes_module(self) -> str:
        return f"{self.package}.quotes"


SECTIONS: tuple[Section, ...] = (
    Section("01_break_even", "break_even", "break_even",
            "The break-even point (break-even paper Sec. 4.1, App. A, C)",
            "breakeven_utils.papers.break_even"),
    Section("02_conjectures", "conjectures", "break_even",
            "The two conjectures over eta, S and momentum (break-even paper Sec. 4.2)",
            "breakeven_utils.papers.conjectures"),
    Section("03_batchnorm", "batchnorm", "break_even",
            "Batch normalisation (break-even paper Sec. 4.3, App. H)",
            "breakeven_utils.papers.batchnorm"),
    Section("04_walk_with_sgd", "walk", "walk",
            "A Walk with SGD (Xing et al. 2018)",
            "breakeven_utils.papers.walk"),
    Section("05_sharpest_directions_nsgd", "nsgd", "sharpest",
            "DNN's sharpest directions and Nudged SGD (Jastrzebski et al. 2018)",
            "breakeven_utils.papers.sharpest_nsgd"),
)


def section(name: str) -> Section:
    """The section of a notebook name (``01_break_even``, ``notebooks/01_break_even.ipynb``)
    or of a figure folder (``walk``); ValueError naming the known ones otherwise."""
    stem = Path(str(name)).name
    if stem.endswith(".ipynb"):
        stem = stem[: -len(".ipynb")]
    for s in SECTIONS:
        if stem in (s.notebook, s.folder):
            return s
    raise ValueError(f"unknown notebook or section {name!r}; known: "
                     f"{', '.join(s.notebook for s in SECTIONS)}")


def folder_of(notebook: str) -> str:
    """The figure folder of a notebook: '04_walk_with_sgd' -> 'walk'; a notebook the registry
    does not know (a user's own ``NN_name.ipynb``) gets its name without the number: 'name'."""
    try:
        return section(notebook).folder
    except ValueError:
        pass
    stem = Path(str(notebook)).name.removesuffix(".ipynb")
    folder = re.sub(r"^\d+[_\-]", "", stem)
    if not folder or not PLAIN_NAME.match(folder):
        raise ValueError(f"cannot derive a figure folder from notebook name {notebook!r}")
    return folder


def notebook_order() -> dict[str, str]:
    """{figure folder: notebook} in notebook order (the claims ledger's order)."""
    return {s.folder: s.notebook for s in SECTIONS}


class NotBuilt(str):
    """Why a notebook has no runs to plan (its ``runs`` module is missing)."""


def notebook_runs(profile: str, notebooks=None, **overrides) -> dict:
    """{notebook: [RunConfig, ...] or NotBuilt(reason)} for ``profile``, in notebook order,
    each config checked against its data set's sizes (``store.plan.check_config``). An
    invalid configuration raises ``ValueError`` naming the notebook."""
    chosen = list(SECTIONS) if not notebooks else [section(nb) for nb in notebooks]
    out = {}
    for sec in chosen:
        try:
            mod = importlib.import_module(sec.runs_module)  # the registry names modules, like entry points
        except ModuleNotFoundError as e:
            if e.name in (sec.runs_module, sec.package):
                out[sec.notebook] = NotBuilt(f"not built (no module {sec.runs_module})")
                continue
            raise
        try:
            cfgs = list(mod.run_configs(profile, **overrides))
            for c in cfgs:
                check_config(c)
        except ValueError as e:
            raise ValueError(f"{sec.notebook} at profile {profile!r}: {e}") from e
        out[sec.notebook] = cfgs
    return out


def absences(notebooks=None) -> list:
    """The claims of the papers that no notebook tests, with why: the ``ABSENT`` tuple of each
    section's ``quotes`` module (``reporting.claims.Absence``), in notebook order; the claims
    ledger lists them after the tested rows (``reporting.ledger.overview(absences=...)``)."""
    chosen = list(SECTIONS) if not notebooks else [section(nb) for nb in notebooks]
    out = []
    for sec in chosen:
        try:
            mod = importlib.import_module(sec.quotes_module)
        except ModuleNotFoundError as e:
            if e.name == sec.quotes_module:
                continue
            raise
        out.extend(getattr(mod, "ABSENT", ()))
    return out
