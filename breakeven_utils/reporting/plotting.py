"""Plot helpers shared by the notebooks (break-even paper figures).

Each helper draws one kind of paper figure and returns the matplotlib Figure:
``trajectory_map`` (Fig. 1, Fig. 8), ``scatter_vs`` (Fig. 2, Fig. 9),
``spectrum`` (Fig. 3), ``curves`` (Fig. 4, 5, 10-26). Colours by learning
rate come from ``LR_COLORS`` / ``lr_color`` so that every figure agrees
(Fig. 1: eta = 0.01 red, eta = 0.001 blue); other hues (batch sizes) take the
colour cycle in order, or pass ``palette={value: colour}``. Axis labels use the papers'
symbols (``SYMBOLS``). Finish every figure with
``annotate(fig, provenance(data.label, profile, seeds, overrides=..., code=...))`` (a
notebook's ``nb.provenance(data.label, seeds)`` fills in the rest).

The backend is left alone: notebooks use the inline backend, tests select Agg.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker

from breakeven_utils.core.io import atomic_write
from breakeven_utils.reporting.claims import smooth
from breakeven_utils.reporting.embedding import background_grid
from breakeven_utils.reporting.tables import check_name

__all__ = [
    "save_figure",
    "LR_COLORS", "SYMBOLS", "lr_color", "hue_label", "subplots", "trajectory_map",
    "scatter_vs", "spectrum", "curves", "moving_average", "provenance", "annotate",
]

#: Colour per learning rate, shared by all figures (Fig. 1: 0.01 red, 0.001 blue).
LR_COLORS: dict[float, str] = {
    1.0: "#8c564b",
    0.5: "#e377c2",
    0.1: "#2ca02c",
    0.05: "#9467bd",
    0.03: "#bcbd22",
    0.01: "#d62728",
    0.005: "#ff7f0e",
    0.003: "#17becf",
    0.001: "#1f77b4",
    0.0001: "#7f7f7f",
}

#: Axis labels in the papers' notation.
SYMBOLS: dict[str, str] = {
    "lambda_k": r"$\lambda_K^1$",
    "lambda_h": r"$\lambda_H^1$",
    "ratio_k": r"$\lambda_K^*/\lambda_K^1$",
    "trace_k": r"$\mathrm{Tr}(\mathbf{K})$",
    "delta_loss": r"$\Delta\mathcal{L}$",
    "eta": r"$\eta$",
    "batch_size": r"$S$",
    "iteration": "iteration",
    "epoch": "epoch",
    "train_acc": "training accuracy",
    "val_acc": "validation accuracy",
    "eigenvalue": "eigenvalue",
}

_FOOTER_GID = "breakeven-provenance"


def lr_color(lr) -> str:
    """Colour of a learning rate: LR_COLORS entry, else a fixed point of a colormap by log10(lr)."""
    try:
        v = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"learning rate must be a number, got {lr!r}") from None
    for key, c in LR_COLORS.items():
        if math.isclose(v, key, rel_tol=1e-9):
            return c
    if not v > 0:
        raise ValueError(f"learning rate must be > 0, got {lr!r}")
    pos = min(max((math.log10(v) + 5.0) / 5.0, 0.0), 1.0)  # 1e-5 .. 1 -> 0 .. 1
    return mcolors.to_hex(plt.get_cmap("plasma")(0.1 + 0.8 * pos))


def hue_label(value, symbol: str = r"$\eta$") -> str:
    """Legend text for one hue value, e.g. '$\\eta$ = 0.01'."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{symbol} = {float(value):g}"
    return str(value)


def _colors_for(values, palette=None) -> dict:
    """Colour per distinct hue value: the given palette, else LR_COLORS when every value looks
    like a learning rate (a number in (0, 1]), else the colour cycle in order (e.g. batch sizes)."""
    if palette is not None:
        missing = [v for v in values if v not in palette]
        if missing:
            raise ValueError(f"palette has no colour for {missing[:5]}")
        return {v: palette[v] for v in values}
    numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                  for v in values)
    if numbers and all(0 < v <= 1 for v in values):
        return {v: lr_color(v) for v in values}
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {v: cycle[i % len(cycle)] for i, v in enumerate(values)}


def _unique(values) -> list:
    """Distinct values in order of first appearance (numbers sorted descending, like eta)."""
    seen = list(dict.fromkeys(values.tolist() if isinstance(values, np.ndarray) else list(values)))
    if seen and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return sorted(seen, reverse=True)
    return seen


def subplots(ncols: int = 1, nrows: int = 1, *, panel_size=(4.2, 3.4), **kw):
    """plt.subplots with constrained layout and a figure size scaled by the number of panels."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             layout="constrained", squeeze=False, **kw)
    return fig, (axes[0, 0] if ncols * nrows == 1 else axes.ravel())


def _fig_ax(ax, panel_size=(4.8, 3.6)):
    if ax is None:
        fig, ax = subplots(1, panel_size=panel_size)
        return fig, ax
    return ax.figure, ax


def _as_1d(a, name, n=None, dtype=None):
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n} (one per point)")
    return arr


def trajectory_map(points, runs, values, *, lr=None, iterations=None, break_even=None,
                   label: str | None = None, ax=None, resolution: int = 200, cmap: str = "viridis",
                   log: bool = False, markersize: float = 3.0):
    """UMAP trajectory map with a nearest-neighbour background (paper Fig. 1, Fig. 8).

    points: (n, 2) embedding from embedding.embed_trajectories; runs: run id per
    point (e.g. 'eta=0.01/seed0'); values: background quantity per point (NaN =
    not measured), or a mapping {symbol: values} to draw one panel per quantity
    (Fig. 1: {SYMBOLS['lambda_k']: ..., 'training accuracy': ...}).
    lr: learning rate per point or {run: lr}; colours the paths (LR_COLORS).
    iterations: per point, orders each run's path (default: given order).
    break_even: {run: iteration} (or position in the run if iterations is
    None; None/NaN: not reached); marks the nearest recorded point with a
    star. label: colorbar label for a single values array. log: logarithmic
    colour scale (needs positive values).
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {pts.shape}")
    n = pts.shape[0]
    runs = _as_1d(runs, "runs", n, dtype=object)
    panels = dict(values) if isinstance(values, Mapping) else {label or "": values}
    if not panels:
        raise ValueError("values mapping is empty")
    panels = {k: _as_1d(v, f"values[{k!r}]", n, dtype=float) for k, v in panels.items()}
    if iterations is not None:
        iterations = _as_1d(iterations, "iterations", n, dtype=float)
    run_ids = list(dict.fromkeys(runs.tolist()))
    if lr is None:
        run_lr = {r: None for r in run_ids}
    elif isinstance(lr, Mapping):
        missing = [r for r in run_ids if r not in lr]
        if missing:
            raise ValueError(f"lr mapping has no learning rate for runs {missing[:5]}")
        run_lr = {r: lr[r] for r in run_ids}
    else:
        lr_arr = _as_1d(lr, "lr", n, dtype=object)
        run_lr = {}
        for r in run_ids:
            vals = set(lr_arr[runs == r].tolist())
            if len(vals) != 1:
                raise ValueError(f"run {r!r} has several learning rates {sorted(vals)}")
            run_lr[r] = vals.pop()

    if break_even is not None:
        unknown = [r for r in break_even if r not in run_lr]
        if unknown:
            raise ValueError(f"break_even names runs {unknown[:5]} that are not in runs")
    if ax is None:
        fig, axes = subplots(len(panels), panel_size=(4.8, 3.8))
        axes = [axes] if len(panels) == 1 else list(axes)
    else:
        axes = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
        if len(axes) != len(panels):
            raise ValueError(f"got {len(axes)} axes for {len(panels)} background quantities")
        fig = axes[0].figure

    if all(v is None for v in run_lr.values()):
        colour = _colors_for(run_ids)
        legend_key = {r: str(r) for r in run_ids}
    else:
        lrs = _unique([v for v in run_lr.values()])
        lr_col = _colors_for(lrs)
        colour = {r: lr_col[run_lr[r]] for r in run_ids}
        legend_key = {r: hue_label(run_lr[r]) for r in run_ids}

    for a, (sym, vals) in zip(axes, panels.items()):
        if log and np.nanmin(vals) <= 0:
            raise ValueError(f"log colour scale for {sym!r} needs positive values")
        xx, yy, zz = background_grid(pts, vals, resolution=resolution)
        norm = mcolors.LogNorm() if log else None
        im = a.imshow(zz, origin="lower", extent=(xx.min(), xx.max(), yy.min(), yy.max()),
                      aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
        fig.colorbar(im, ax=a, label=sym)
        shown = set()
        for r in run_ids:
            idx = np.flatnonzero(runs == r)
            if iterations is not None:
                idx = idx[np.argsort(iterations[idx], kind="stable")]
            key = legend_key[r]
            a.plot(pts[idx, 0], pts[idx, 1], "-o", color=colour[r], lw=1.0, ms=markersize,
                   mec="white", mew=0.3, alpha=0.9, label=None if key in shown else key)
            shown.add(key)
            a.plot(pts[idx[0], 0], pts[idx[0], 1], "s", color=colour[r], ms=markersize + 2,
                   mec="black", mew=0.5)
            at = None if break_even is None else break_even.get(r)
            if at is not None and np.isfinite(float(at)):  # None / NaN: never reached
                j = _break_even_index(idx, iterations, at)
                a.plot(pts[j, 0], pts[j, 1], "*", color=colour[r], ms=12, mec="black", mew=0.8,
                       zorder=5, gid="break-even")
                shown.add("break-even")
        # neutral legend entries for the markers shared by all runs
        a.plot([], [], "s", color="white", mec="black", mew=0.5, ms=markersize + 2, label="start")
        if "break-even" in shown:
            a.plot([], [], "*", color="white", mec="black", mew=0.8, ms=12, label="break-even point")
        a.set_xticks([])
        a.set_yticks([])
        a.set_xlabel("UMAP 1")
        a.set_ylabel("UMAP 2")
    axes[0].legend(loc="best", fontsize=8, framealpha=0.8)
    return fig


def _break_even_index(idx, iterations, at) -> int:
    """Row of the run's point at break-even iteration `at` (nearest recorded iteration)."""
    if iterations is None:
        pos = int(at)
        if not 0 <= pos < len(idx):
            raise ValueError(f"break-even position {at} outside the run's {len(idx)} points")
        return int(idx[pos])
    return int(idx[np.argmin(np.abs(iterations[idx] - float(at)))])


def scatter_vs(x, y, color_by, *, xlabel: str = "", ylabel: str = "", ax=None,
               hue_symbol: str = r"$\eta$", two_over_eta: bool = False, hline: float | None = None,
               mark=None, mark_label: str = "break-even point", logx: bool = False,
               logy: bool = False, s: float = 12, alpha: float = 0.8, palette=None):
    """Scatter of one quantity against another, coloured by learning rate (paper Fig. 2).

    Fig. 2 left: scatter_vs(lambda_k, lambda_h, eta, xlabel=SYMBOLS['lambda_k'],
    ylabel=SYMBOLS['lambda_h'], two_over_eta=True); right: Delta L vs lambda_K^1
    with hline=0. two_over_eta draws y = 2/eta per learning rate (colour_by
    values are the learning rates); a line far above the data (more than twice
    the largest value) is not drawn but noted at the top edge, so that it does
    not squash the data. mark: boolean mask of points to star (break-even).
    """
    x = _as_1d(x, "x", dtype=float)
    n = x.shape[0]
    y = _as_1d(y, "y", n, dtype=float)
    hue = _as_1d(color_by, "color_by", n, dtype=object)
    fig, ax = _fig_ax(ax)
    hues = _unique(hue)
    col = _colors_for(hues, palette)
    for h in hues:
        m = hue == h
        ax.scatter(x[m], y[m], s=s, color=col[h], alpha=alpha, lw=0, label=hue_label(h, hue_symbol))
    if mark is not None:
        mark = _as_1d(mark, "mark", n, dtype=bool)
        if mark.any():
            ax.scatter(x[mark], y[mark], s=s * 10, marker="*", c=[col[h] for h in hue[mark]],
                       edgecolors="black", linewidths=0.8, label=mark_label, zorder=5)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if hline is not None:
        ax.axhline(hline, color="0.4", lw=0.8, ls=":")
    if two_over_eta:
        finite = y[np.isfinite(y)]
        top = finite.max() if finite.size else 1.0
        notes = []
        for h in hues:
            eta = float(h)
            if not eta > 0:
                raise ValueError(f"two_over_eta needs positive learning rates in color_by, got {h!r}")
            ref = 2.0 / eta
            if ref <= 2.0 * top or top <= 0:
                ax.axhline(ref, color=col[h], lw=1.0, ls="--",
                           label=rf"$2/\eta$ = {ref:g} ({hue_symbol} = {eta:g})")
            else:
                notes.append((rf"$2/\eta$ = {ref:g} ↑", col[h]))
        for i, (text, c) in enumerate(notes):
            ax.annotate(text, xy=(0.98, 0.97 - 0.08 * i), xycoords="axes fraction", ha="right",
                        va="top", fontsize=8, color=c,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, framealpha=0.8, loc="best")
    return fig


def spectrum(eigs_by_label: Mapping[Any, Any], *, ax=None, xlabel: str = "eigenvalue",
             bins: int = 40, hue_symbol: str = r"$\eta$", log_count: bool = True, palette=None):
    """Histogram of eigenvalues per label on shared bins, log count axis (paper Fig. 3).

    eigs_by_label: {learning rate or label: 1-D eigenvalues}, e.g. the
    eigenvalues of K (or H) at the iteration where lambda_K^1 (lambda_H^1) is
    largest. A value may also be a (grid, density) pair (e.g. a stochastic
    Lanczos quadrature density), drawn as a line.
    """
    if not isinstance(eigs_by_label, Mapping) or not eigs_by_label:
        raise ValueError("eigs_by_label must be a non-empty mapping {label: eigenvalues}")
    fig, ax = _fig_ax(ax)
    labels = _unique(list(eigs_by_label))
    col = _colors_for(labels, palette)
    hists, densities = {}, {}
    for k in labels:
        v = eigs_by_label[k]
        if isinstance(v, tuple) and len(v) == 2:
            g, d = _as_1d(v[0], f"grid[{k!r}]", dtype=float), None
            d = _as_1d(v[1], f"density[{k!r}]", g.shape[0], dtype=float)
            densities[k] = (g, d)
        else:
            arr = _as_1d(v, f"eigs_by_label[{k!r}]", dtype=float)
            arr = arr[np.isfinite(arr)]
            if arr.size == 0:
                raise ValueError(f"no finite eigenvalues for {k!r}")
            hists[k] = arr
    if hists:
        edges = np.histogram_bin_edges(np.concatenate(list(hists.values())), bins=bins)
        for k, arr in hists.items():
            ax.hist(arr, bins=edges, histtype="stepfilled", alpha=0.25, color=col[k])
            ax.hist(arr, bins=edges, histtype="step", lw=1.2, color=col[k],
                    label=f"{hue_label(k, hue_symbol)} (n = {arr.size})")
    for k, (g, d) in densities.items():
        ax.plot(g, d, color=col[k], lw=1.2, label=hue_label(k, hue_symbol))
    if log_count:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count" if not densities else ("density" if not hists else "count / density"))
    ax.legend(fontsize=8, framealpha=0.8)
    return fig


def moving_average(values, window: int) -> np.ndarray:
    """Centred moving average with shrinking windows at the ends; NaNs are ignored.

    Same length as values; window=1 returns the values unchanged (as float). The
    one implementation is ``claims.smooth``: the verdicts read maxima off the same
    smoothed curve the figures draw.
    """
    return smooth(_as_1d(values, "values", dtype=float), window)


def curves(df, x: str, y: str, hue: str, *, units: str | None = None, window: int = 5, ax=None,
           vlines=None, xlabel: str | None = None, ylabel: str | None = None,
           vline_label: str | None = None, hue_symbol: str = r"$\eta$", logy: bool = False,
           raw_alpha: float = 0.35, palette=None, seed_band: str | None = "sd"):
    """Metric against iteration/epoch per hue, smoothed over faint raw points (paper Fig. 4, 5, 10-26).

    df: long table with columns x, y, hue (and units, e.g. 'seed': one line
    per unit, same colour). Smoothing: moving_average(y, window) per line.
    vlines: {hue value: x or [x, ...]} drawn dashed in the hue's colour (Fig. 4:
    epoch at which training accuracy first exceeds a threshold), or a list of
    x positions drawn grey; vline_label names them once in the legend (e.g.
    'training accuracy > 60%'). Axis labels default to SYMBOLS[x] / SYMBOLS[y].
    seed_band: where a hue has two or more units (seeds), draw their mean
    smoothed curve with a band (seaborn ``lineplot``; 'sd': +-1 standard
    deviation across units, 'se': +-1 standard error; the legend says which and
    over how many units) instead of one line per unit; None: one line per unit.
    """
    for c in (x, y, hue) + ((units,) if units else ()):
        if c not in df.columns:
            raise ValueError(f"column {c!r} not in df (columns: {list(df.columns)})")
    fig, ax = _fig_ax(ax)
    hues = _unique(df[hue].tolist())
    col = _colors_for(hues, palette)
    if seed_band not in (None, "sd", "se"):
        raise ValueError(f"seed_band must be 'sd', 'se' or None, got {seed_band!r}")
    for h in hues:
        sub = df[df[hue] == h]
        groups = [sub] if units is None else [g for _, g in sub.groupby(units, sort=True)]
        if seed_band is not None and len(groups) >= 2:
            _seed_band(ax, groups, x, y, window, col[h], raw_alpha, seed_band,
                       hue_label(h, hue_symbol))
            continue
        for i, g in enumerate(groups):
            g = g.sort_values(x, kind="stable")
            xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
            ax.plot(xs, ys, ".", color=col[h], alpha=raw_alpha, ms=3.5, mew=0)
            ax.plot(xs, moving_average(ys, window), "-", color=col[h], lw=1.4,
                    label=hue_label(h, hue_symbol) if i == 0 else None)
    if vlines is not None:
        pairs = (vlines.items() if isinstance(vlines, Mapping) else [(None, vlines)])
        for h, xv in pairs:
            for xi in np.atleast_1d(np.asarray(xv, dtype=float)):
                if np.isfinite(xi):
                    ax.axvline(xi, color=col.get(h, "0.4"), ls="--", lw=1.0, alpha=0.9,
                               label=vline_label)
                    vline_label = None
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel if xlabel is not None else SYMBOLS.get(x, x))
    ax.set_ylabel(ylabel if ylabel is not None else SYMBOLS.get(y, y))
    ax.legend(fontsize=8, framealpha=0.8)
    return fig


def _seed_band(ax, groups, x, y, window, color, raw_alpha, errorbar, label):
    """Mean over units of the smoothed curves, with a +-1 SD (SE) band (seaborn)."""
    parts = []
    for g in groups:
        g = g.sort_values(x, kind="stable")
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        ax.plot(xs, ys, ".", color=color, alpha=raw_alpha * 0.6, ms=3.0, mew=0)
        parts.append(pd.DataFrame({"x": xs, "y": moving_average(ys, window)}))
    what = "SD" if errorbar == "sd" else "SE"
    sns.lineplot(data=pd.concat(parts, ignore_index=True), x="x", y="y", ax=ax, color=color,
                 lw=1.4, errorbar=errorbar, estimator="mean",
                 label=f"{label} (mean ± {what}, {len(groups)} seeds)")


def provenance(data_label: str, profile: str, seeds, *, overrides: Mapping | None = None,
               code: str = "") -> str:
    """Footer text: 'CIFAR-10, JPEG copy · profile cpu · seeds 0, 1, 2 · code b71c998'; a
    profile run with ``overrides`` says them ('profile cpu with seeds=[0, 1]')."""
    if seeds is None:
        s = "seed n/a"
    else:
        seq = [int(v) for v in np.atleast_1d(np.asarray(seeds)).tolist()]
        if len(seq) == 1:
            s = f"seed {seq[0]}"
        elif len(seq) > 3 and seq == list(range(seq[0], seq[0] + len(seq))):
            s = f"seeds {seq[0]}–{seq[-1]}"
        else:
            s = "seeds " + ", ".join(map(str, seq))
    shown = f"profile {profile}"
    if overrides:
        shown += " with " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
    return " · ".join(x for x in (data_label, shown, s, code) if x)


def annotate(fig, text: str):
    """Put (or replace) the provenance footer line under the figure; returns the Figure.

    The text sits just below the figure's bottom edge: it appears with
    bbox_inches='tight' (the inline backend's default and save_figure).
    """
    for t in list(fig.texts):
        if t.get_gid() == _FOOTER_GID:
            t.remove()
    fig.text(0.5, 0.0, text, ha="center", va="top", fontsize=8, color="0.35", gid=_FOOTER_GID)
    return fig


def save_figure(fig, name: str, outdir: str | os.PathLike, *, pdf: bool = True,
                dpi: int = 150) -> list[Path]:
    """Write ``outdir/name.png`` (and ``name.pdf``) atomically; returns the paths.

    Uses bbox_inches='tight' so the provenance footer added by
    plotting.annotate (below the axes) is included. PDF metadata carries no
    creation date, so unchanged figures give identical PDF files.
    """
    name = check_name(name, (".png", ".pdf"))
    outdir = Path(outdir)
    paths = [outdir / f"{name}.png"]
    atomic_write(paths[0], lambda tmp: fig.savefig(
        tmp, format="png", dpi=dpi, bbox_inches="tight", pil_kwargs={"optimize": True}))
    if pdf:
        paths.append(outdir / f"{name}.pdf")
        atomic_write(paths[1], lambda tmp: fig.savefig(
            tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None}))
    return paths
