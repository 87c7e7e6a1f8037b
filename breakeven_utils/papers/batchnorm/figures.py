"""Notebook 3's figures (break-even paper Sec. 4.3, App. H): panels of one quantity per sweep
value (smoothed lines over faint raw points, diverged runs named in the legend), figures of
panels with the BatchNorm modes in the footer, Sec. 4.3's comparison of SimpleCNN-BN and
SimpleCNN, and the figure file names the claims link."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from breakeven_utils.reporting.plotting import SYMBOLS, annotate, curves, lr_color, subplots

__all__ = ["FIGURES", "BN_MODES_TEXT", "legend_labels", "comparison", "palette_for", "panel", "figure"]

#: written on every figure of notebook 3
BN_MODES_TEXT = ("BatchNorm: batch statistics (train mode, running statistics frozen) for K, H; "
                 "running statistics (eval mode) for accuracies; K's eigenvectors from the Gram "
                 "estimate (App. C)")

#: the notebook's figure files (without extension), by the paper's figure
FIGURES = {"fig7a": "fig7a_g5_lambda_h_lambda_k_eta", "fig7b": "fig7b_gamma_lambda_k_ratio_early_eta",
           "fig26a": "fig26a_g5_lambda_h_lambda_k_S", "fig26b": "fig26b_gamma_lambda_k_ratio_S",
           "acc": "accuracy_trace_k_all_runs", "sec43": "sec43_bn_small_eta_vs_plain"}


def legend_labels(df: pd.DataFrame, symbol: str = "η") -> dict:
    """{value: legend text} for one sweep's rows, e.g. 'η = 1 (diverged at iteration 7)'."""
    out = {}
    for v, g in df.groupby("value", sort=True):
        text = f"{symbol} = {float(v):g}"
        div = g.loc[g["status"] == "diverged", "diverged_at"].dropna()
        if len(div):
            its = ", ".join(str(int(i)) for i in sorted(set(div)))
            text += f" (diverged at iteration {its})"
        out[v] = text
    return out


def comparison(df: pd.DataFrame, s: dict, plain_lr: float = 0.01) -> tuple[pd.DataFrame, dict]:
    """Sec. 4.3's comparison: the rows of SimpleCNN-BN at the smallest and the largest eta
    and of SimpleCNN at ``plain_lr``, with a ``curve`` column, and legend prefixes."""
    lo, hi = min(s["bn_lrs"]), max(s["bn_lrs"])
    parts = [df[(df["sweep"] == "bn_eta") & np.isclose(df["value"], lo)].assign(curve="bn_low"),
             df[(df["sweep"] == "plain_eta") & np.isclose(df["value"], plain_lr)].assign(curve="plain"),
             df[(df["sweep"] == "bn_eta") & np.isclose(df["value"], hi)].assign(curve="bn_high")]
    names = {"bn_low": "SimpleCNN-BN,", "plain": "SimpleCNN,", "bn_high": "SimpleCNN-BN,"}
    return pd.concat(parts, ignore_index=True), names


def palette_for(values, param: str) -> dict:
    """Colour per sweep value: the shared learning-rate colours (plotting.LR_COLORS) for
    eta, the colour cycle in ascending order for S."""
    vals = sorted(set(float(v) if param == "lr" else int(v) for v in values))
    if param == "lr":
        return {v: lr_color(v) for v in vals}
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {v: cycle[i % len(cycle)] for i, v in enumerate(vals)}


def panel(ax, d: pd.DataFrame, y: str, *, param: str = "lr", x: str = "epoch", window: int = 3,
          ylabel: str | None = None, xmax: float | None = None, logy: bool = False, title: str = "",
          hue: str = "value", names: dict | None = None):
    """One figure panel: ``y`` against ``x`` per sweep value (smoothed line over faint raw
    points, one line per seed), legend naming diverged runs and their iteration. ``hue``:
    another column to tell curves apart (e.g. 'curve'), ``names``: {hue value: legend
    prefix}, e.g. {'bn': 'SimpleCNN-BN,'}; colours then follow the hue's order."""
    ylabel = ylabel if ylabel is not None else SYMBOLS.get(y, y)
    d = d.dropna(subset=[y]) if y in d else d.iloc[:0]
    if xmax is not None:
        d = d[d[x] <= xmax]
    if d.empty:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel=SYMBOLS.get(x, x), ylabel=ylabel, title=title)
        return ax
    if hue == "value":
        labels = legend_labels(d, "η" if param == "lr" else "S")
        cols = palette_for(d["value"], param)
        d = d.sort_values("value", ascending=(param != "lr"), kind="stable")
        d = d.assign(_label=d["value"].map(labels))
        palette = {labels[v]: cols[float(v) if param == "lr" else int(v)] for v in labels}
    else:
        keys = list(dict.fromkeys(d[hue]))
        labels = {k: f"{(names or {}).get(k, k)} "
                     f"{next(iter(legend_labels(d[d[hue] == k], 'η' if param == 'lr' else 'S').values()))}"
                  for k in keys}
        cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        palette = {labels[k]: cycle[i % len(cycle)] for i, k in enumerate(keys)}
        d = d.assign(_label=d[hue].map(labels))
    curves(d, x, y, "_label", units="seed", window=window, ax=ax, ylabel=ylabel, logy=logy,
           xlabel=SYMBOLS.get(x, x), palette=palette)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def figure(panels: list[dict], title: str, footer: str, *, ncols: int | None = None):
    """A figure of ``panels`` (each a dict of :func:`panel`'s arguments: ``d``, ``y`` and
    optional ``param``, ``x``, ``xmax``, ``title``, ``window``, ``logy``, ``vline``: an
    x position drawn dotted, e.g. the end of the early window) with a suptitle and the
    footer (data, profile, seeds, BatchNorm modes) under it."""
    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = subplots(ncols, nrows)
    axes = np.atleast_1d(axes).ravel()
    for ax, p in zip(axes, panels):
        p = dict(p)
        vline = p.pop("vline", None)
        panel(ax, p.pop("d"), p.pop("y"), **p)
        if vline is not None:
            ax.axvline(vline, color="0.5", ls=":", lw=1.0)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    annotate(fig, footer)
    return fig
