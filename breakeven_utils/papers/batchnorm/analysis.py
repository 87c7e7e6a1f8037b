"""Notebook 3's tables (break-even paper Sec. 4.3, App. H), from the tidy table of
``store.sweeps.sweep`` (``common.tidy``; columns ``sweep``, ``value``, ``seed``, ``status``,
``iteration`` and the metric columns): one row per run (:func:`run_table`), the smoothed
maxima and minima per setting with their standard errors (:func:`maxima`; lambda_K^1 and
lambda_H^1 after the initial transient of BN networks) and the early changes of Fig. 7b
(:func:`early_changes`). Pure functions, tested on tables made by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from breakeven_utils.papers.common import solver_bound
from breakeven_utils.reporting import claims as cl

__all__ = ["run_table", "smoothed_stats", "maxima", "early_changes"]


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by sweep (in order of appearance), then value and seed."""
    order = {sw: i for i, sw in enumerate(dict.fromkeys(df["sweep"]))}
    return df.assign(_o=df["sweep"].map(order)).sort_values(["_o", "value", "seed"], kind="stable")


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep, value, seed): status, iteration of divergence, measurements,
    final training/validation accuracy."""
    rows = []
    for (sw, v, seed), g in _ordered(df).groupby(["sweep", "value", "seed"], sort=False):
        g = g.sort_values("iteration")
        div = g["diverged_at"].dropna()
        rows.append(dict(sweep=sw, value=v, seed=seed, status=g["status"].iloc[0],
                         diverged_at=int(div.iloc[0]) if len(div) else None,
                         iterations=int(g["iteration"].max()), epochs=float(g["epoch"].max()),
                         measurements=len(g), final_train_acc=float(g["train_acc"].iloc[-1]),
                         final_val_acc=float(g["val_acc"].iloc[-1])))
    return pd.DataFrame(rows)


def smoothed_stats(iterations, values, window: int, after_transient: bool = False, ses=None) -> dict:
    """Raw and moving-average-smoothed maximum/minimum of one trajectory
    (``claims.smoothed_max``; with ``after_transient`` the maximum is taken after the
    initial decay, ``claims.transient_end``: BN networks start with a high lambda_K^1,
    Sec. 4.3). ``ses``: per-measurement standard errors (e.g. a bootstrap over K's L
    mini-batch gradients) -> ``se`` of the smoothed maximum, else NaN. NaNs for an
    empty trajectory."""
    it = np.asarray(iterations, dtype=float)
    v = np.asarray(values, dtype=float)
    e = np.full(v.shape, np.nan) if ses is None else np.asarray(ses, dtype=float)
    ok = np.isfinite(v)
    it, v, e = it[ok], v[ok], e[ok]
    if v.size == 0:
        return dict(raw_max=np.nan, raw_min=np.nan, max=np.nan, min=np.nan, argmax=np.nan, se=np.nan,
                    start=np.nan, n=0, transient_end=np.nan)
    order = np.argsort(it, kind="stable")
    it, v, e = it[order], v[order], e[order]
    sm = cl.smooth(v, window)
    mx = cl.smoothed_max(v, window, after_transient=after_transient, ses=e)
    return dict(raw_max=float(v.max()), raw_min=float(v.min()), max=mx.value, min=float(sm.min()),
                argmax=float(it[mx.index]), se=mx.se, start=float(sm[0]), n=int(v.size),
                transient_end=float(it[mx.start]))


_MAX_Q = {"lambda_K_1": True, "lambda_K_ratio": True, "trace_K": False, "lambda_H_1": True,
          "g_over_g5": False, "gamma_norm": False}  # column -> maximum after the initial transient


def maxima(df: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per (sweep, value): seed-mean smoothed maxima (``max_<q>``; lambda_K^1, lambda_H^1
    and lambda_K^*/lambda_K^1 after the initial transient, issue 20) and minima, raw maxima beside them, and a
    standard error per maximum ``se_<q>``: the seed spread with >= 2 seeds
    (``claims.mean_se``), else from per-measurement standard errors in a column
    ``<q>_se`` where the recorder writes one (bootstrap over K's mini-batch gradients),
    else for lambda_H^1 the Lanczos stopping bound (``common.solver_bound``, as notebooks
    1-2), else NaN (the verdicts then use ``claims.FALLBACK_RTOL``). Diverged runs are counted
    and left out."""
    rows = []
    for (sw, v), g in _ordered(df).groupby(["sweep", "value"], sort=False):
        per = {q: [] for q in _MAX_Q if q in g}
        n_div = 0
        for _, r in g.groupby("seed"):
            if (r["status"] == "diverged").any():
                n_div += 1
                continue
            for q in per:
                ses = r[f"{q}_se"] if f"{q}_se" in r else None
                per[q].append(smoothed_stats(r["iteration"], r[q], window, after_transient=_MAX_Q[q],
                                             ses=ses))
        row = dict(sweep=sw, value=v, n_seeds=len(next(iter(per.values()), [])), n_diverged=n_div)
        for q, st in per.items():
            for k in ("max", "raw_max", "min", "raw_min", "start", "argmax"):
                vals = [x[k] for x in st]
                row[f"{k}_{q}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            mean, se, n = cl.mean_se([x["max"] for x in st])
            if n < 2:
                ses = [x["se"] for x in st if np.isfinite(x["se"])]
                se = float(ses[0]) if ses else solver_bound(g, q, mean)[0]
            row[f"se_{q}"] = se
        rows.append(row)
    return pd.DataFrame(rows)


def early_changes(df: pd.DataFrame, q: str, until: int, window: int) -> pd.DataFrame:
    """Per (sweep, value): the smoothed ``q`` at the first measurement (``start``) and its
    minimum over the measurements with iteration <= ``until`` (``early_min``), seed
    means (diverged runs left out), their ratio, and standard errors of both (seed
    spread with >= 2 seeds, else from a ``<q>_se`` column, else the scatter of the raw
    curve about its moving average, claims.scatter_se)."""
    rows = []
    for (sw, v), g in df.groupby(["sweep", "value"], sort=False):
        starts, mins, se_s, se_m = [], [], [], []
        for _, r in g.groupby("seed"):
            if (r["status"] == "diverged").any() or q not in r:
                continue
            r = r.sort_values("iteration")
            x = r[q].to_numpy(float)
            e = r[f"{q}_se"].to_numpy(float) if f"{q}_se" in r else np.full(x.shape, np.nan)
            ok = np.isfinite(x)
            it, x, e = r["iteration"].to_numpy(float)[ok], x[ok], e[ok]
            if x.size == 0:
                continue
            if not np.isfinite(e).any() and x.size >= 3:
                e = cl.scatter_se(x, window)
            sm = cl.smooth(x, window)
            idx = np.flatnonzero(it <= until)
            k = int(idx[np.argmin(sm[idx])])
            starts.append(float(sm[0]))
            mins.append(float(sm[k]))
            se_s.append(_window_se(e, 0, window))
            se_m.append(_window_se(e, k, window))
        row = dict(sweep=sw, value=v, start=np.nan, early_min=np.nan, ratio=np.nan, se_start=np.nan,
                   se_min=np.nan)
        if starts:
            s0, m0 = float(np.mean(starts)), float(np.mean(mins))
            row.update(start=s0, early_min=m0, ratio=m0 / s0 if s0 != 0 else np.nan)
            for name, vals, ses in (("se_start", starts, se_s), ("se_min", mins, se_m)):
                _, se, n = cl.mean_se(vals)
                row[name] = se if n >= 2 else ses[0]
        rows.append(row)
    return pd.DataFrame(rows)


def _window_se(e, i, window):
    """SE of the centred moving average at index i from per-point SEs (claims.smooth's window)."""
    lo, hi = max(0, i - (window - 1) // 2), min(len(e), i + window // 2 + 1)
    w = e[lo:hi]
    return float(math.sqrt(np.sum(w ** 2)) / len(w)) if len(w) else np.nan
