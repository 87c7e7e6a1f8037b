"""The claims ledger: every claim of every notebook that ran, on one page.

``overview(figures_root)`` reads ``<figures_root>/<section>/claims.csv`` of
every section folder present (written by ``claims.save_claims``) and writes

- ``<figures_root>/CLAIMS.md``: counts per verdict (per paper and in total) at
  the top, then every claim grouped by paper and section, each row linking to
  the figure that shows it (``Claim.figure_file`` is relative to the section
  folder; the link is made relative to ``figures_root``);
- ``<figures_root>/claims_ledger.png`` (+ ``.pdf``): one picture of the whole
  ledger, claims x verdict (a seaborn heatmap).

Notebook 1's claims table from before ``breakeven_utils.reporting.claims`` existed
(columns claim, measured, criterion, verdict with its reason in parentheses) is read
too (:func:`load_section`): its verdicts were computed with the previous rules (raw
maxima, correlations on any n >= 3), and the page says so instead of passing them off
as verdicts of the current rules. The folders' order and notebooks come from the
caller (``papers.registry.notebook_order()``): this layer names no paper section.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap

from breakeven_utils.core.io import atomic_write_text
from breakeven_utils.reporting.claims import (
    FAILS,
    FIELDS,
    HOLDS,
    OPTIONAL_FIELDS,
    PAPER_TITLES,
    PAPERS,
    UNTESTABLE,
    VERDICTS,
    Absence,
    Claim,
    load_claims,
)
from breakeven_utils.reporting.plotting import save_figure

__all__ = ["runs_line", "LEDGER_FILE", "LEDGER_PICTURE", "LEGACY_NOTE", "Section", "load_section",
           "load_sections", "ledger_markdown", "ledger_figure", "overview"]

LEDGER_FILE = "CLAIMS.md"
LEDGER_PICTURE = "claims_ledger"
CLAIMS_FILE = "claims.csv"

LEGACY_NOTE = "computed with the previous 5%-margin rule; rerun pending"
#: what the old rules were, per old format (shown on the section)
_OLD_RULES = {
    "table": "old claim/measured/criterion/verdict table: raw maxima compared without a noise margin, "
             "correlations judged on any n >= 3 points",
    "wide": "old per-setting verdict table: orderings of raw (unsmoothed) maxima, each step > 5% of the "
            "larger value, no standard errors",
}

_SHORT = {"break_even": "break-even", "sharpest": "sharpest dir.", "walk": "walk with SGD"}
_VERDICT_RE = re.compile(r"^\s*(holds|does not hold|not testable at this scale)\s*(?:\((.*)\))?\s*(.*)$",
                         re.S)


@dataclass
class Section:
    """The claims of one figure folder: ``legacy`` describes the old format (and rules) they were
    read from ("" for a file written by ``claims.save_claims``)."""

    name: str
    notebook: str
    path: Path
    claims: list = field(default_factory=list)
    legacy: str = ""


# ----------------------------------------------------------------------------- legacy formats


def _split_verdict(text: str) -> tuple[str, str]:
    """'holds (why)' / 'not testable at this scale (why)' -> (verdict, why)."""
    m = _VERDICT_RE.match(str(text))
    if not m:
        raise ValueError(f"cannot read the verdict {text!r}")
    reason = "; ".join(p.strip() for p in (m.group(2) or "", m.group(3) or "") if p and p.strip())
    return m.group(1), reason


#: notebook 1's old table: claim letter -> (paper section, figure, figure file)
_LEGACY_BREAK_EVEN = {
    "(a)": ("4.1", "Fig. 2", "fig2_lambda_h_delta_loss_vs_lambda_k.png"),
    "(b)": ("4.1", "Fig. 2", "fig2_lambda_h_delta_loss_vs_lambda_k.png"),
    "(c)": ("4.1", "Fig. 2", "fig2_lambda_h_delta_loss_vs_lambda_k.png"),
    "(d)": ("4.1", "Fig. 3", "fig3_spectra_k_h.png"),
    "(e)": ("3, Theorem 1", "Eq. (1)", "break_even_point_eq1.png"),
}


def _legacy_break_even(df: pd.DataFrame, folder: Path) -> list[Claim]:
    """Notebook 1's old table (claim, measured, criterion, verdict)."""
    out = []
    for _, r in df.iterrows():
        letter = str(r["claim"]).split(" ", 1)[0]
        section, figure, ffile = _LEGACY_BREAK_EVEN.get(letter, ("4.1", "", ""))
        verdict, why = _split_verdict(r["verdict"])
        reason = "; ".join(p for p in (why, f"rule: {r['criterion']}") if p)
        out.append(Claim("break_even", section, figure, r["claim"],
                         "SimpleCNN, CIFAR-10 (JPEG copy), vary eta", "", r["measured"], verdict, reason,
                         ffile if ffile and (folder / ffile).exists() else ""))
    return out


_QUANTITY = {"max_lambda_K_1": ("1", -1, "max lambda_K^1"), "max_lambda_H_1": ("1", -1, "max lambda_H^1"),
             "max_lambda_K_ratio": ("2", +1, "max lambda_K^*/lambda_K^1"),
             "max_trace_K": ("2", -1, "max Tr(K)")}
_PARAM = {"eta": ("eta", +1), "S": ("S", -1), "beta": ("beta", +1)}
_SWEEP_SETTING = {"simplecnn": "SimpleCNN, CIFAR-10 (JPEG copy)",
                  "resnet32": "ResNet-32, CIFAR-10 (JPEG copy)", "mlp": "MLP, Fashion-MNIST",
                  "momentum": "SimpleCNN with momentum, CIFAR-10 (JPEG copy)",
                  "decay": "SimpleCNN, eta/10 after a decay epoch, CIFAR-10 (JPEG copy)"}
def _num(v) -> str:
    f = float(v)
    return f"{f:g}"


def load_section(folder: str | os.PathLike, notebook: str | None = None) -> Section:
    """The claims of one figure folder (``<folder>/claims.csv``), in the current or notebook 1's
    old format; ``notebook``: the notebook that wrote it (default: the folder's name)."""
    folder = Path(folder)
    path = folder / CLAIMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no claims file at {path}")
    cols = set(pd.read_csv(path, nrows=0).columns)
    sec = Section(folder.name, notebook or folder.name, path)
    if {f for f in FIELDS if f not in OPTIONAL_FIELDS} <= cols:
        sec.claims = load_claims(path)
        return sec
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if {"claim", "measured", "criterion", "verdict"} <= cols:
        sec.claims, sec.legacy = _legacy_break_even(df, folder), _OLD_RULES["table"]
    else:
        raise ValueError(f"{path} is neither a claims file of claims.save_claims (columns {list(FIELDS)}) "
                         f"nor notebook 1's old format; columns: {sorted(cols)}")
    return sec


def load_sections(figures_root: str | os.PathLike, order: dict[str, str] | None = None
                  ) -> tuple[list[Section], dict[str, str]]:
    """Every ``<figures_root>/<folder>/claims.csv``, the folders of ``order`` ({folder:
    notebook}, in notebook order: ``papers.registry.notebook_order()``) first, any other
    in alphabetical order; returns (sections, {file: error}) so one unreadable file does not
    hide the others."""
    order = order or {}
    keys = list(order)

    def rank(name: str):
        return (keys.index(name), "") if name in order else (len(keys), name)

    root = Path(figures_root)
    sections, errors = [], {}
    folders = [p for p in root.iterdir() if (p / CLAIMS_FILE).is_file()] if root.is_dir() else []
    folders.sort(key=lambda p: rank(p.name))
    for f in folders:
        try:
            sections.append(load_section(f, order.get(f.name)))
        except (ValueError, KeyError, pd.errors.ParserError) as e:
            errors[f"{f.name}/{CLAIMS_FILE}"] = str(e)
    return sections, errors


# ----------------------------------------------------------------------------- the page


def _md(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ").strip()


def _section_label(section: str) -> str:
    s = str(section).strip()
    return f"Sec. {s}" if s[:1].isdigit() else (s or "(no section)")


def _counts_table(sections: list[Section], absences: list[Absence] | None = None) -> str:
    absences = absences or []
    extra = " not tested (why stated) |" if absences else ""
    lines = ["| paper | " + " | ".join(VERDICTS) + " | total |" + extra,
             "| --- |" + " ---: |" * (len(VERDICTS) + 1 + bool(absences))]
    allc = [c for s in sections for c in s.claims]
    for p in PAPERS + ("all",):
        cs = allc if p == "all" else [c for c in allc if c.paper == p]
        ab = absences if p == "all" else [a for a in absences if a.paper == p]
        if p != "all" and not cs and not ab:
            continue
        counts = [sum(c.verdict == v for c in cs) for v in VERDICTS] + [len(cs)]
        counts += [len(ab)] if absences else []
        name = "**all papers**" if p == "all" else _md(PAPER_TITLES[p])
        cells = [f"**{n}**" if p == "all" else str(n) for n in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _link(sec: Section, c: Claim, root: Path) -> str:
    label = _md(c.figure) or "figure"
    if not c.figure_file:
        return _md(c.figure)
    target = (sec.path.parent / c.figure_file)
    rel = os.path.relpath(target, root).replace(os.sep, "/")
    return f"[{label}]({rel.replace(' ', '%20')})"


def _one_line(text: str, width: int = 240) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= width else t[: width - 1] + "…"


def _fails_list(sections: list[Section], root: Path) -> list[str]:
    """'What does not hold': per paper one line per failing row (figure link, claim, setting,
    the reason cut to one line), so a reader sees first which published results did not
    reproduce here and why."""
    out = ["## What does not hold", "",
           "A *does not hold* verdict says a published result did not reproduce here: the run "
           "reached the regime the claim is about, the claim is read as the paper states it (the "
           "quoted sentence), and the difference exceeds the noise of the quantity. One line each; "
           "the full row is in the paper's table below.", ""]
    any_fail = False
    for p in PAPERS:
        rows = [(s, c) for s in sections for c in s.claims if c.paper == p and c.verdict == FAILS]
        if not rows:
            continue
        any_fail = True
        out += [f"**{PAPER_TITLES[p]}**", ""]
        out += [f"- {_link(s, c, root)} {_md(c.claim)} ({_md(_one_line(c.setting, 90))}): "
                f"{_md(_one_line(c.reason))}" for s, c in rows]
        out.append("")
    if not any_fail:
        out += ["None: every tested claim holds or is not testable at this scale (with its reason).", ""]
    return out


def _absence_table(absent: list[Absence]) -> list[str]:
    out = ["| section | figure | claim | paper says | why it is not tested here |",
           "| --- | --- | --- | --- | --- |"]
    out += [f"| {_md(_section_label(a.section))} | {_md(a.figure)} | {_md(a.claim)} | {_md(a.quote)} | "
            f"{_md(a.why)} |" for a in absent]
    return out + [""]


def runs_line(figures_root: str | os.PathLike, notebooks: list[str]) -> str:
    """One line saying what drew the claims of ``notebooks``, from ``<figures_root>/manifest.json``:
    profile (with overrides), code (git commit, "+changes" when uncommitted) and the number of
    runs computed by other code; "" without a manifest."""
    path = Path(figures_root) / "manifest.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("notebooks", {})
    except (OSError, ValueError):
        return ""
    groups: dict = {}
    for name in notebooks:
        e = entries.get(name)
        if not e:
            continue
        what = f"profile `{e.get('profile', '?')}`"
        if e.get("overrides"):
            what += " with overrides " + ", ".join(f"`{k}={v!r}`" for k, v in e["overrides"].items())
        commit = str(e.get("git_commit") or "unknown")[:7] + ("+changes" if e.get("git_dirty") else "")
        what += f", code {commit}"
        groups.setdefault(what, []).append(name)
    if not groups:
        return ""
    parts = [(f"all {len(ns)} notebooks" if len(ns) == len(notebooks) > 1 else ", ".join(ns)) + f": {w}"
             for w, ns in groups.items()]
    other = sum(int(entries[n].get("runs_by_other_code") or 0) for ns in groups.values() for n in ns)
    tail = (f"; {other} of the runs were computed by other code than the notebooks' (`make reproduce "
            "RECOMPUTE=stale` computes them again)") if other else ""
    return "Drawn by " + "; ".join(parts) + tail + " (`manifest.json`)."


def ledger_markdown(sections: list[Section], figures_root: str | os.PathLike,
                    errors: dict[str, str] | None = None, picture: str | None = None,
                    absences: list[Absence] | None = None) -> str:
    """The text of CLAIMS.md for ``sections`` (links relative to ``figures_root``): counts per
    paper, the rows that do not hold (one line each), then per paper every row with the
    sentence it tests and the claims no notebook tests (``absences``) with why."""
    root = Path(figures_root)
    absences = list(absences or [])
    out = ["# Claims ledger", "",
           "Every claim of the three papers tested by a notebook that ran, with the verdict it gets here "
           "(*holds*, *does not hold*, *not testable at this scale* with the reason), and every claim no "
           "notebook tests, with why. Written by `scripts/reproduce.py` "
           "(`breakeven_utils.reporting.ledger.overview`) from the `claims.csv` of each figure folder; do "
           "not edit by hand. *paper says*: the sentence the row tests; *paper*: the paper's number where "
           "its text gives one; *ours*: the measured value; each figure link opens the figure that shows "
           "the claim.", ""]
    drawn = runs_line(root, [s.notebook for s in sections])
    if drawn:
        out += [drawn, ""]
    n = sum(len(s.claims) for s in sections)
    if not n:
        out += ["No claims file found: no notebook has written its claims yet.", ""]
    else:
        head = f"## Counts ({n} claims from {len(sections)} notebook(s)"
        head += f"; {len(absences)} claims not tested, listed per paper)" if absences else ")"
        out += [head, "", _counts_table(sections, absences)]
        legacy = [s for s in sections if s.legacy]
        if legacy:
            k = sum(len(s.claims) for s in legacy)
            names = ", ".join(f"`{s.notebook}`" for s in legacy)
            out += [f"{k} of the {n} claims (notebook(s) {names}) were **{LEGACY_NOTE}**: their verdicts "
                    "are the old ones, read from the committed tables (marked † in the picture).", ""]
        if picture:
            out += [f"![Claims x verdict]({picture})", ""]
        out += _fails_list(sections, root)
    if errors:
        out += ["**Unreadable claims files** (left out above):", ""]
        out += [f"- `{f}`: {_md(e)}" for f, e in errors.items()] + [""]
    for p in PAPERS:
        groups: dict = {}
        for s in sections:
            for c in s.claims:
                if c.paper == p:
                    groups.setdefault((c.section, s.name), (s, []))[1].append(c)
        absent = [a for a in absences if a.paper == p]
        if not groups and not absent:
            continue
        out += [f"## {PAPER_TITLES[p]}", ""]
        for (section, _), (s, cs) in groups.items():
            counts = ", ".join(f"{sum(c.verdict == v for c in cs)} {v}" for v in VERDICTS)
            out += [f"### {_section_label(section)} · notebook `{s.notebook}` (`{s.name}/{CLAIMS_FILE}`)", ""]
            if s.legacy:
                out += [f"> **Old rule:** {LEGACY_NOTE} (read from the {s.legacy}).", ""]
            out += [f"{len(cs)} claim{'s' if len(cs) != 1 else ''}: {counts}.", "",
                    "| figure | claim | paper says | setting | paper | ours | verdict | reason |",
                    "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            for c in cs:
                verdict = f"**{c.verdict}**" if c.verdict == HOLDS else c.verdict
                cells = [_link(s, c, root), _md(c.claim), _md(c.quote), _md(c.setting), _md(c.paper_value),
                         _md(c.ours), verdict, _md(c.reason)]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        if absent:
            plural = "s" if len(absent) != 1 else ""
            out += [f"### Not tested here ({len(absent)} claim{plural} of this paper)", ""]
            out += _absence_table(absent)
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- the picture

_COLOURS = {HOLDS: "#2e7d32", FAILS: "#c62828", UNTESTABLE: "#9e9e9e"}


def _clip(text: str, width: int) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= width else t[: width - 1] + "…"


#: shorthand for the picture's row labels (the full text is in CLAIMS.md)
_ABBREV = ((r"Conjecture\s*", "Conj. "), (r"\bthe maximum\b|\bmaximum\b", "max"),
           (r"lambda_K\^\*/lambda_K\^1", "λ*_K/λ1_K"), (r"lambda_K\^1", "λ1_K"), (r"lambda_H\^1", "λ1_H"),
           (r"\bis larger for (a )?(the )?larger\b", "grows with"),
           (r"\bis smaller for (a )?(the )?larger\b", "falls with"),
           (r"\bis larger for (a )?(the )?smaller\b", "falls with larger"), (r"\beta\b", "η"),
           (r"\bgamma\b", "γ"), (r"\bbeta\b", "β"), (r"\blearning rate\b", "η"), (r"\s+", " "))
_VARIED = re.compile(r"(?:vary|varied|in)\s+(eta|S|beta|gamma)\b|\b(eta|S|beta|gamma|lr)\s*=\s*[\d.e-]+")


def _abbrev(text: str) -> str:
    t = str(text)
    for pat, rep in _ABBREV:
        t = re.sub(pat, rep, t)
    return t.strip()


def _row_label(c: Claim, width: int = 60) -> str:
    """A short label for the picture, 'Fig. 4: Conj. 1: max λ1_K grows with S [SimpleCNN, S]' in
    at most ``width`` characters: the claim in shorthand, the setting reduced to its model and
    the varied setting; the full text is in CLAIMS.md's table."""
    head = f"{c.figure}: " if c.figure else ""
    setting = str(c.setting)
    model = setting.split(",")[0].split("(")[0].strip()
    m = _VARIED.search(setting)
    varied = (m.group(0) if m and m.group(2) else m.group(1)) if m else ""
    tail = ", ".join(_abbrev(x) for x in (_clip(model, 14), varied) if x)
    tail = f" [{tail}]" if tail else ""
    return head + _clip(_abbrev(c.claim), max(16, width - len(head) - len(tail))) + tail


def ledger_figure(sections: list[Section]):
    """Claims x verdict heatmap (one row per claim, the cell of its verdict coloured) with the
    counts per verdict in the column labels; rows of old-rule sections are marked †."""
    rows = [(s, c) for s in sections for c in s.claims]
    if not rows:
        raise ValueError("no claims to draw")
    grid = np.full((len(rows), len(VERDICTS)), np.nan)
    for i, (_, c) in enumerate(rows):
        j = VERDICTS.index(c.verdict)
        grid[i, j] = j
    counts = [int(np.isfinite(grid[:, j]).sum()) for j in range(len(VERDICTS))]
    cols = [f"{v.replace(' at this scale', '')}\n({n})" for v, n in zip(VERDICTS, counts)]
    frame = pd.DataFrame(grid, index=[_row_label(c) for _, c in rows], columns=cols)
    # no layout engine: the long row labels lie left of the figure; save_figure crops with bbox "tight"
    fig, ax = plt.subplots(figsize=(3.2, 1.0 + 0.2 * len(rows)))
    sns.heatmap(frame, ax=ax, cmap=ListedColormap([_COLOURS[v] for v in VERDICTS]), vmin=-0.5,
                vmax=len(VERDICTS) - 0.5, cbar=False, linewidths=0.5, linecolor="white", mask=frame.isna())
    ax.set_facecolor("#f4f4f4")
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", length=0, labelsize=9)
    ax.tick_params(axis="y", length=0, labelsize=8)
    ax.set(xlabel="", ylabel="")
    groups: dict = {}  # (paper, folder) -> (first row, last row, legacy)
    for i, (s, c) in enumerate(rows):
        first, _, _, _ = groups.get((c.paper, s.name), (i, i, False, s.notebook))
        groups[(c.paper, s.name)] = (first, i, bool(s.legacy), s.notebook)
    for (paper, _folder), (first, last, legacy, notebook) in groups.items():  # lines between groups
        if first:
            ax.axhline(first, color="black", lw=1.0)
        name = f"{_SHORT[paper]}\n{notebook}" + (" †" if legacy else "")
        ax.text(len(VERDICTS) + 0.1, (first + last + 1) / 2, name, va="center", ha="left", fontsize=8)
    title = f"Claims ledger: {len(rows)} claims of the papers tested here"
    if any(s.legacy for s, _ in rows):
        title += "\n† notebook computed with the previous 5%-margin rule; rerun pending"
    ax.set_title(title, fontsize=10, loc="left")
    return fig


def overview(figures_root: str | os.PathLike = "figures", *, picture: bool = True,
             order: dict[str, str] | None = None, absences: list[Absence] | None = None) -> dict:
    """Write ``<figures_root>/CLAIMS.md`` and (``picture``, when there are claims)
    ``claims_ledger.png`` / ``.pdf`` from every ``<folder>/claims.csv`` present, in the
    notebook order ``order`` ({folder: notebook}, see :func:`load_sections`); ``absences``: the
    papers' claims no notebook tests, listed with why (``papers.registry.absences()``).

    Returns {"path": CLAIMS.md, "pictures": [...], "counts": {verdict: n}, "n_claims",
    "sections": [folder names], "legacy": [old-format folders], "errors": {file: message}}.
    """
    root = Path(figures_root)
    if not root.is_dir():
        raise FileNotFoundError(f"no figures folder at {root}")
    sections, errors = load_sections(root, order)
    claims = [c for s in sections for c in s.claims]
    pictures = []
    if picture and claims:
        fig = ledger_figure(sections)
        pictures = save_figure(fig, LEDGER_PICTURE, root)
        plt.close(fig)
    text = ledger_markdown(sections, root, errors, picture=f"{LEDGER_PICTURE}.png" if pictures else None,
                           absences=absences)
    path = atomic_write_text(root / LEDGER_FILE, text)
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    return {"path": path, "pictures": pictures, "counts": counts, "n_claims": len(claims),
            "sections": [s.name for s in sections], "legacy": [s.name for s in sections if s.legacy],
            "errors": errors, "n_absent": len(absences or [])}
