"""Break-even paper, Sec. 3, Sec. 4.1 / App. A-C: the analysis behind notebook 1.

Pure functions over the tidy metrics table of a sweep (one row per measurement,
columns ``lr``, ``seed``, ``iteration``, ``lambda_K_1``, ``lambda_H_1``,
``delta_loss``, ``breakeven_lhs``, ...) or over the loaded runs (``store.runs.RunResult``):
the left-hand side of Eq. (1), the break-even points, the outliers of the spectra of
Fig. 3, the shares of Delta L < 0 of Fig. 2 and Fig. 9's correlations. Every verdict of
``claims`` is computed from them, so they can be tested on tables made by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from breakeven_utils.reporting.claims import correlation

__all__ = [
    "breakeven_lhs",
    "first_crossing",
    "break_even_points",
    "outliers",
    "negative_delta_shares",
    "spectra_at_max",
    "outlier_counts_at_max",
    "fig9_correlations",
]


def breakeven_lhs(lr: float, lambda_H_1, s2, n_train: int, batch_size: int):
    """Left-hand side of Eq. (1): ``(1 - lr lambda_H^1)^2 + s^2 lr^2 (N - S) / (S (N - 1))``.

    SGD is stable along e_H^1 while it is <= 1; the break-even point is where it
    first reaches 1 (Sec. 3; Wu et al. 2018, Theorem 1).
    """
    lam = np.asarray(lambda_H_1, dtype=float)
    noise = np.asarray(s2, dtype=float) * lr**2 * (n_train - batch_size) / (batch_size * (n_train - 1))
    return (1.0 - lr * lam) ** 2 + noise


def first_crossing(iterations, values, level: float = 1.0):
    """Index of the first value ``>= level`` (NaN values skipped), or ``None``."""
    values = np.asarray(values, dtype=float)
    hits = np.flatnonzero(np.nan_to_num(values, nan=-np.inf) >= level)
    return int(hits[0]) if len(hits) else None


def break_even_points(df: pd.DataFrame, by=("lr", "seed")) -> pd.DataFrame:
    """Per trajectory: the break-even point, with lambda_H^1, lambda_K^1 and training
    accuracy there (NaN when never reached).

    Started stable (LHS of Eq. (1) < 1 at the first measurement, Theorem 1): the
    first measurement with LHS >= 1. Started unstable (Theorem 2, App. B): the
    first measurement with LHS < 1, where SGD first becomes stable along e_H^1.
    """
    rows = []
    for key, g in df.sort_values("iteration").groupby(list(by)):
        g = g[g["breakeven_lhs"].notna()] if "breakeven_lhs" in g else g.iloc[:0]
        unstable_at_start = bool(len(g)) and g["breakeven_lhs"].iloc[0] >= 1.0
        if not len(g):
            i = None
        elif unstable_at_start:
            i = first_crossing(g["iteration"], -g["breakeven_lhs"].to_numpy(), level=-1.0 + 1e-12)
        else:
            i = first_crossing(g["iteration"], g["breakeven_lhs"])
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["start"] = "unstable (Theorem 2)" if unstable_at_start else "stable (Theorem 1)"
        if i is None:
            row.update(iteration=np.nan, lambda_H_1=np.nan, lambda_K_1=np.nan, train_acc=np.nan)
        else:
            r = g.iloc[i]
            row.update(iteration=r["iteration"], lambda_H_1=r.get("lambda_H_1", np.nan),
                       lambda_K_1=r.get("lambda_K_1", np.nan), train_acc=r.get("train_acc", np.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def outliers(eigenvalues, k: float = 3.0) -> int:
    """Number of eigenvalues above ``median + k * MAD`` (MAD scaled by 1.4826 to a
    normal std) of the given spectrum: the "spikes" of Fig. 3."""
    v = np.asarray(eigenvalues, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    return int(np.sum(v > med + k * mad)) if mad > 0 else int(np.sum(v > med))


def negative_delta_shares(g: pd.DataFrame, near: float = 0.5):
    """Share of measurements with Delta L < 0 while lambda_K^1 is below ``near`` x its
    maximum (early, before approaching the peak) and from the first time it reaches
    that level on (near and after the peak)."""
    g = g.sort_values("iteration").dropna(subset=["lambda_K_1", "delta_loss"])
    if g.empty:
        return np.nan, np.nan
    level = near * g["lambda_K_1"].max()
    reached = np.maximum.accumulate(g["lambda_K_1"].to_numpy() >= level)
    before, after = g[~reached], g[reached]
    share = lambda s: float((s["delta_loss"] < 0).mean()) if len(s) else np.nan
    return share(before), share(after)


def spectra_at_max(results) -> tuple[dict, dict, dict]:
    """Fig. 3: per learning rate, the eigenvalues of K at the measurement with the
    largest lambda_K^1 and the top-k of H at the one with the largest lambda_H^1,
    taken from the run (seed) whose maximum is largest; plus where they were taken."""
    K, H, where = {}, {}, {}
    for lr in sorted({r.config.lr for r in results}):
        rs = [r for r in results if r.config.lr == lr]
        rk = max(rs, key=lambda r: np.nanmax(r.metrics["lambda_K_1"]))
        i = int(np.nanargmax(rk.metrics["lambda_K_1"].to_numpy()))
        it_k = int(rk.metrics["iteration"].iloc[i])
        its = list(np.asarray(rk.arrays["K_eigs_iteration"]).astype(int))
        K[lr] = np.asarray(rk.arrays["K_eigs"])[its.index(it_k)]
        rh = max(rs, key=lambda r: np.nanmax(r.metrics["lambda_H_1"]))
        if "H_spectrum" in rh.arrays:
            H[lr] = np.asarray(rh.arrays["H_spectrum"])[0]
            it_h = int(np.asarray(rh.arrays["H_spectrum_iteration"])[0])
        else:
            it_h = None
        where[lr] = dict(K_seed=rk.config.seed, K_iteration=it_k, H_seed=rh.config.seed, H_iteration=it_h)
    return K, H, where


def outlier_counts_at_max(results) -> dict:
    """Fig. 3 per seed: {learning rate: [outliers of K's L-1 non-zero eigenvalues at the
    measurement with the seed's largest lambda_K^1, one per seed]} (:func:`outliers`), the
    counts the claim compares beyond their seed spread."""
    out: dict = {}
    for r in sorted(results, key=lambda r: (r.config.lr, r.config.seed)):
        lam = r.metrics["lambda_K_1"].to_numpy(dtype=float)
        if "K_eigs" not in r.arrays or not np.isfinite(lam).any():
            continue
        it = int(r.metrics["iteration"].iloc[int(np.nanargmax(lam))])
        its = list(np.asarray(r.arrays["K_eigs_iteration"]).astype(int))
        if it in its:
            out.setdefault(r.config.lr, []).append(outliers(np.asarray(r.arrays["K_eigs"])[its.index(it)]))
    return out


def fig9_correlations(results) -> pd.DataFrame:
    """Pearson r between lambda_K^1 estimated with M=128 (``lambda_K_1``) and M=1
    (``lambda_K1_1``) along each trajectory (App. C, Fig. 9), with n, p and whether n
    suffices (claims.correlation)."""
    rows = []
    for r in results:
        c = correlation(r.metrics["lambda_K_1"], r.metrics["lambda_K1_1"])
        rows.append(dict(lr=r.config.lr, seed=r.config.seed, n=c.n, pearson_r=c.r, p=c.p,
                         testable=c.testable, reason=c.reason))
    return pd.DataFrame(rows)
