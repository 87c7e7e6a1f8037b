"""Break-even paper, Sec. 4.1 / App. A-C: analysis behind notebook 1 and its claims table.

Pure functions over the tidy metrics table of a sweep (one row per measurement,
columns ``lr``, ``seed``, ``iteration``, ``lambda_K_1``, ``lambda_H_1``,
``delta_loss``, ``breakeven_lhs``, ...), so every verdict is computed from the
recorded numbers and can be tested on tables made by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "breakeven_lhs",
    "first_crossing",
    "break_even_points",
    "correlation_before",
    "outliers",
    "negative_delta_shares",
    "claims_break_even",
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


def correlation_before(g: pd.DataFrame, until: float | None, x="lambda_K_1", y="lambda_H_1"):
    """Pearson r of ``x`` and ``y`` over the measurements with iteration <= ``until``
    (all when ``until`` is None); returns (r, p, n)."""
    w = g if until is None else g[g["iteration"] <= until]
    w = w[[x, y]].dropna()
    if len(w) < 3 or w[x].std() == 0 or w[y].std() == 0:
        return np.nan, np.nan, len(w)
    r, p = stats.pearsonr(w[x], w[y])
    return float(r), float(p), len(w)


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


def _verdict(ok, testable=True, why=""):
    if not testable:
        return "not testable at this scale" + (f" ({why})" if why else "")
    return "holds" if ok else "does not hold"


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}g}"


def claims_break_even(df: pd.DataFrame, spectra_K: dict, spectra_H: dict,
                      r_min: float = 0.5) -> pd.DataFrame:
    """The claims table of notebook 1, computed from the sweep's metrics.

    ``df``: tidy metrics of every trajectory; ``spectra_K`` / ``spectra_H``: for each
    learning rate, the eigenvalues of K (the L-1 non-zero ones) and the top-k of H
    at the measurement where lambda_K^1 (resp. lambda_H^1) is largest.
    """
    lrs = sorted(df["lr"].unique())
    lo, hi = lrs[0], lrs[-1]  # smaller and larger learning rate
    rows = []
    bep = break_even_points(df)

    # (a) lambda_K^1 and lambda_H^1 correlated before the break-even point
    parts, oks, ns = [], [], []
    for lr in lrs:
        g = df[df["lr"] == lr]
        t = bep.loc[bep["lr"] == lr, "iteration"]
        until = float(t.min()) if t.notna().any() else None
        if until is None and g["lambda_K_1"].notna().any():
            until = float(g.loc[g["lambda_K_1"].idxmax(), "iteration"])
            window = f"iterations <= {until:.0f} (argmax lambda_K^1; no break-even point)"
        else:
            window = f"iterations <= {until:.0f} (break-even point)" if until is not None else "all"
        r, p, n = correlation_before(g, until)
        oks.append(np.isfinite(r) and r >= r_min)
        ns.append(n)
        parts.append(f"lr={lr:g}: r={_fmt(r, 2)} (n={n}, {window})")
    rows.append(dict(claim="(a) lambda_K^1 and lambda_H^1 are correlated before the break-even point",
                     measured="; ".join(parts), criterion=f"Pearson r >= {r_min} for every learning rate",
                     verdict=_verdict(all(oks), min(ns) >= 3,
                                      "fewer than 3 measurements before the break-even point")))

    # (b) larger maxima for the smaller learning rate
    mx = df.groupby(["lr", "seed"])[["lambda_K_1", "lambda_H_1"]].max().groupby("lr").mean()
    ok_b = bool(mx.loc[lo, "lambda_K_1"] > mx.loc[hi, "lambda_K_1"]
                and mx.loc[lo, "lambda_H_1"] > mx.loc[hi, "lambda_H_1"])
    rows.append(dict(
        claim="(b) max lambda_K^1 and max lambda_H^1 are larger for the smaller learning rate",
        measured="; ".join(f"lr={lr:g}: max lambda_K^1={_fmt(mx.loc[lr, 'lambda_K_1'])}, "
                           f"max lambda_H^1={_fmt(mx.loc[lr, 'lambda_H_1'])}" for lr in lrs),
        criterion="seed-mean maxima of both ordered: lr small > lr large",
        verdict=_verdict(ok_b, len(lrs) > 1)))

    # (c) Delta L turns negative as lambda_K^1 nears its maximum
    parts, oks, testable_c = [], [], True
    for lr in lrs:
        b, a = negative_delta_shares(df[df["lr"] == lr])
        parts.append(f"lr={lr:g}: share(Delta L<0) {_fmt(b, 2)} before vs {_fmt(a, 2)} once "
                     f"lambda_K^1 >= 0.5 max")
        testable_c &= bool(np.isfinite(a) and np.isfinite(b))
        oks.append(np.isfinite(a) and np.isfinite(b) and a > b)
    rows.append(dict(claim="(c) Delta L starts taking negative values as lambda_K^1 nears its maximum",
                     measured="; ".join(parts),
                     criterion="share of Delta L < 0 is larger once lambda_K^1 >= 0.5 x its maximum",
                     verdict=_verdict(all(oks), testable_c,
                                      "lambda_K^1 at its maximum from the first measurement")))

    # (d) more outliers in the spectra of K and H for the smaller learning rate
    nK = {lr: outliers(spectra_K.get(lr, [])) for lr in lrs}
    nH = {lr: outliers(spectra_H.get(lr, [])) for lr in lrs}
    testable_d = all(len(spectra_K.get(lr, [])) > 2 and len(spectra_H.get(lr, [])) > 2 for lr in lrs)
    rows.append(dict(
        claim="(d) the smaller learning rate shows more outliers in the spectra of K and H",
        measured="; ".join(f"lr={lr:g}: {nK[lr]} of {len(spectra_K.get(lr, []))} K eigenvalues, "
                           f"{nH[lr]} of {len(spectra_H.get(lr, []))} top H eigenvalues" for lr in lrs),
        criterion="outlier: eigenvalue > median + 3 MAD of its spectrum (at the max-lambda measurement); "
                  "count(lr small) > count(lr large) for K and for H",
        verdict=_verdict(nK[lo] > nK[hi] and nH[lo] > nH[hi], testable_d, "spectra not recorded")))

    # (e) break-even point earlier and at smaller lambda_H^1 for the larger learning rate
    be = bep.groupby("lr")[["iteration", "lambda_H_1"]].mean()
    reached = bep.groupby("lr")["iteration"].apply(lambda s: int(s.notna().sum()))
    n_seeds = bep.groupby("lr").size()
    max_lhs = df.groupby("lr")["breakeven_lhs"].max() if "breakeven_lhs" in df else {}
    measured = "; ".join(
        f"lr={lr:g}: reached in {reached[lr]}/{n_seeds[lr]} runs, "
        f"iteration {_fmt(be.loc[lr, 'iteration'], 4)}, "
        f"lambda_H^1 {_fmt(be.loc[lr, 'lambda_H_1'])}, max LHS {_fmt(max_lhs.get(lr, np.nan), 2)}"
        for lr in lrs)
    if reached[hi] == 0:
        verdict = _verdict(False, False, f"no run at lr={hi:g} reached LHS >= 1")
    elif reached[lo] == 0:
        # never reached within the budget at the small lr: later by at least the budget;
        # the lambda_H^1 comparison uses the small lr's largest measured value as a lower bound
        lam_lo = df[df["lr"] == lo]["lambda_H_1"].max()
        ok = be.loc[hi, "lambda_H_1"] < lam_lo
        verdict = _verdict(ok) + f" (lr={lo:g} never reached it: earlier holds; lambda_H^1 " \
                                 f"compared with its max {_fmt(lam_lo)})"
    else:
        ok = (be.loc[hi, "iteration"] < be.loc[lo, "iteration"]
              and be.loc[hi, "lambda_H_1"] < be.loc[lo, "lambda_H_1"])
        verdict = _verdict(ok)
    rows.append(dict(
        claim="(e) the break-even point (first LHS of Eq. (1) >= 1) comes earlier and at a smaller "
              "lambda_H^1 for the larger learning rate (Theorem 1)",
        measured=measured, criterion="seed-mean iteration and lambda_H^1 at the first crossing: "
                                     "lr large < lr small", verdict=verdict))
    return pd.DataFrame(rows, columns=["claim", "measured", "criterion", "verdict"])


# ----------------------------------------------------------------------------- experiment
# Notebook 1's settings and runs (the PySDM-examples pattern: settings from the
# profile, the runs, then plots in the notebook).

TRAJECTORY_METRICS = ("train", "test", "delta_loss", "lambda_H", "breakeven_lhs", "K", "K1",
                      "H_spectrum", "softmax", "dist_init")
FIG9_METRICS = ("train", "K", "K1")


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``break_even`` section and ``overrides``."""
    from .profiles import get_profile

    return get_profile(profile, section="break_even", **overrides)


def _config(s: dict, lr: float, seed: int, metrics, max_epochs: int):
    from .train import RunConfig

    return RunConfig(
        dataset=s["dataset"], n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"],
        n_measure=s["n_measure"], data_seed=0, normalize=s["normalize"],
        model=s["model"], model_kwargs=dict(s["model_kwargs"]),
        optimizer="sgd", lr=float(lr), batch_size=s["batch_size"], seed=int(seed),
        max_epochs=max_epochs, target_train_acc=s["target_train_acc"],
        acc_thresholds=(s["target_train_acc"],),
        measure_every=s["measure_every"], measure_dense_until=s["measure_dense_until"],
        metrics=metrics, hessian_k=1, hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"],
        K_L=s["K_L"], K_M=s["K_M"], K1_L=s["K1_L"], spectrum_k=s["spectrum_k"])


def trajectory_configs(s: dict) -> list:
    """SimpleCNN trained with SGD at each of ``s['lrs']`` and seed, until the target
    training accuracy (65%) or ``max_epochs`` (Sec. 4.1)."""
    return [_config(s, lr, seed, TRAJECTORY_METRICS, s["max_epochs"])
            for lr in s["lrs"] for seed in s["seeds"]]


def fig9_configs(s: dict) -> list:
    """Trajectories for Fig. 9 (lambda_K^1 at M=128 vs M=1): the first seed of the main
    runs plus cheaper runs (K only) for the learning rates the main runs lack."""
    main = {c.lr: c for c in trajectory_configs(s) if c.seed == s["seeds"][0]}
    return [main.get(float(lr)) or _config(s, lr, s["seeds"][0], FIG9_METRICS, s["fig9_max_epochs"])
            for lr in s["fig9_lrs"]]


def run_label(lr: float, seed: int) -> str:
    return f"eta={lr:g}/seed{seed}"


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


def fig9_correlations(results) -> pd.DataFrame:
    """Pearson r between lambda_K^1 estimated with M=128 (``lambda_K_1``) and M=1
    (``lambda_K1_1``) along each trajectory (App. C, Fig. 9)."""
    rows = []
    for r in results:
        m = r.metrics[["lambda_K_1", "lambda_K1_1"]].dropna()
        rr, p = (stats.pearsonr(m["lambda_K_1"], m["lambda_K1_1"]) if len(m) > 2
                 else (np.nan, np.nan))
        rows.append(dict(lr=r.config.lr, seed=r.config.seed, n=len(m), pearson_r=float(rr), p=float(p)))
    return pd.DataFrame(rows)


def run_configs(profile: str = "smoke", **overrides) -> list:
    """Every run notebook 1 launches at ``profile`` (the trajectories, then the Fig. 9
    runs they do not already contain), validated, without training (``make plan``)."""
    s = settings(profile, **overrides)
    return list({c.key(): c for c in trajectory_configs(s) + fig9_configs(s)}.values())


__all__ += ["run_configs"]
