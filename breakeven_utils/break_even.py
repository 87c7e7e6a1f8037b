"""Break-even paper, Sec. 4.1 / App. A-C: analysis behind notebook 1 and its claims table.

Pure functions over the tidy metrics table of a sweep (one row per measurement,
columns ``lr``, ``seed``, ``iteration``, ``lambda_K_1``, ``lambda_H_1``,
``delta_loss``, ``breakeven_lhs``, ...), so every verdict is computed from the
recorded numbers and can be tested on tables made by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "breakeven_lhs",
    "first_crossing",
    "break_even_points",
    "outliers",
    "negative_delta_shares",
    "claims_break_even",
    "PAPER_VALUES",
    "paper_value",
    "paper_values_table",
    "max_with_se",
    "WINDOW",
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


# ----------------------------------------------------------------------------- the paper's numbers

_S41 = "Sec. 4.1"
_S42 = "Sec. 4.2"
#: Every number and statement of the break-even paper that a claims table compares with, with the
#: sentence it comes from (notebook 1: string keys; notebook 2: (sweep, setting, quantity) keys).
PAPER_VALUES = {
    "corr_K_H": ("correlated before the break-even point",
                 f"{_S41}: 'The key assumption behind our theoretical model is that lambda_K^1 and "
                 "lambda_H^1 are correlated, at least prior to reaching the break-even point. We confirm "
                 "this in Fig. 2.'"),
    "max_smaller_eta": ("larger for the smaller eta",
                        f"{_S41}: 'The highest achieved lambda_K^1 and lambda_H^1 are larger for the smaller "
                        "eta.'"),
    "delta_loss": ("Delta L starts to take negative values as lambda_K^1 reaches its maximum",
                   f"{_S41}: 'In Fig. 2 we observe that training becomes increasingly unstable (Delta L "
                   "starts to take negative values) as lambda_K^1 reaches the maximum value.'"),
    "outliers": ("more outliers for the lower eta",
                 f"{_S41}: 'We observe more outliers for the lower learning rate in the distributions of "
                 "both lambda_K and lambda_H.' (Fig. 3)"),
    "break_even": ("reached earlier and at a smaller lambda_H^1 for the larger eta",
                   "Sec. 3, Theorem 1 (the break-even point: the first LHS of Eq. (1) >= 1)"),
    "fig9": ("strong correlation",
             "App. C: 'Fig. 9 shows a strong correlation between lambda_K^1 computed with M = 1 and with "
             "M = 128, for three different learning rates.'"),
    ("simplecnn_eta", 0.1, "max_lambda_K_1"): (
        0.68, f"{_S42}: 'for SimpleCNN (top row of Fig. 4) we observe max(lambda_K^1) = 0.68 and "
              "max(lambda_K^1) = 3.30 for eta = 0.1 and eta = 0.01, respectively.'"),
    ("simplecnn_eta", 0.01, "max_lambda_K_1"): (
        3.30, f"{_S42}: 'max(lambda_K^1) = 0.68 and max(lambda_K^1) = 3.30 for eta = 0.1 and eta = 0.01'"),
    ("simplecnn_eta", 0.1, "max_lambda_K_ratio"): (
        0.37, f"{_S42}: 'in the case of SimpleCNN max(lambda_K^*/lambda_K^1) = 0.37 and "
              "max(lambda_K^*/lambda_K^1) = 0.24 for eta = 0.1 and eta = 0.01, respectively.'"),
    ("simplecnn_eta", 0.01, "max_lambda_K_ratio"): (
        0.24, f"{_S42}: 'max(lambda_K^*/lambda_K^1) = 0.37 and ... = 0.24 for eta = 0.1 and eta = 0.01'"),
    ("simplecnn_eta", 0.1, "max_lambda_H_1"): (
        26.27, f"{_S42}: 'for SimpleCNN we observe max(lambda_H^1) = 26.27 and max(lambda_H^1) = 211.17 "
               "for eta = 0.1 and eta = 0.01, respectively.'"),
    ("simplecnn_eta", 0.01, "max_lambda_H_1"): (
        211.17, f"{_S42}: 'max(lambda_H^1) = 26.27 and max(lambda_H^1) = 211.17 for eta = 0.1 and 0.01'"),
    ("simplecnn_S", 10, "max_trace_K"): (
        5.56, f"{_S42}: 'In the case of SimpleCNN max(Tr(K)) = 5.56 and max(Tr(K)) = 10.86 for S = 10 and "
              "S = 100, respectively.'"),
    ("simplecnn_S", 100, "max_trace_K"): (
        10.86, f"{_S42}: 'max(Tr(K)) = 5.56 and max(Tr(K)) = 10.86 for S = 10 and S = 100'"),
}


def paper_value(key, default=None):
    """The paper's value for ``key`` in :data:`PAPER_VALUES` (without its source), else ``default``."""
    return PAPER_VALUES[key][0] if key in PAPER_VALUES else default


def paper_values_table() -> pd.DataFrame:
    """:data:`PAPER_VALUES` as a table (key, value, source) for the notebooks."""
    return pd.DataFrame([{"key": " / ".join(map(str, k)) if isinstance(k, tuple) else k, "value": v,
                          "source": src} for k, (v, src) in PAPER_VALUES.items()])


# ----------------------------------------------------------------------------- claims

#: moving-average window (measurements) of the maxima compared in the claims (the curves of
#: notebook 2 are drawn with the same window); cpu trajectories hold 10-20 measurements
WINDOW = 3
_SETTING = "SimpleCNN"
_FIG2 = ("4.1", "Fig. 2", "fig2_lambda_h_delta_loss_vs_lambda_k.png")
_FIG3 = ("4.1", "Fig. 3", "fig3_spectra_k_h.png")
_FIG_EQ1 = ("3, Theorem 1", "Eq. (1)", "break_even_point_eq1.png")
_FIG9 = ("App. C", "Fig. 9", "fig9_lambda_k_m128_vs_m1.png")


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}g}"


def _claim(fig, claim, setting, paper_key, ours, verdict, reason=""):
    from .claims import Claim

    section, figure, ffile = fig
    return Claim("break_even", section, figure, claim, setting, paper_value(paper_key, ""), ours, verdict,
                 reason, ffile)


def solver_bound(runs: pd.DataFrame, col: str, value: float) -> tuple[float, str]:
    """(margin, its kind) standing in for the SE of one run's Hessian eigenvalue ``col``
    (``lambda_H_*``): the Lanczos stopping bound. Every solve stopped at residual
    ||H y - theta y|| <= tol |theta|, so the eigenvalue lies within ``hessian_tol`` x |value|
    (the solver's error only, not averaged down over a smoothing window; the spread of the
    trajectory needs seeds). (NaN, '') for other columns or without ``hessian_tol``."""
    if col.startswith("lambda_H_") and "hessian_tol" in runs and runs["hessian_tol"].notna().all() \
            and len(runs) and np.isfinite(value):
        tol = float(runs["hessian_tol"].max())
        return tol * abs(value), f"Lanczos residual bound (tol {tol:g} x lambda_H^1)"
    return np.nan, ""


def max_with_se(df: pd.DataFrame, col: str, by="lr", window: int = WINDOW, after_transient: bool = False):
    """Per value of ``by``: the seed mean of the smoothed maxima of ``col`` (claims.smoothed_max), its
    standard error and where it comes from, and the seed mean of the raw maxima.

    SE: with several seeds their spread (claims.mean_se); with one seed the SE propagated from the
    per-measurement bootstrap SEs in ``<col>_se`` when the runs recorded them; for a Hessian
    eigenvalue (``lambda_H_*``) without them, the Lanczos stopping bound: every run's solve stopped at
    residual ||H y - theta y|| <= tol |theta|, so an eigenvalue lies within ``hessian_tol`` x |value|
    (solver error only: the spread of the trajectory needs seeds); else NaN (the ordering then falls
    back to a relative margin and says so). Returns a DataFrame indexed by ``by`` with
    max, se, se_kind, raw_max, n_seeds, at_start.
    """
    from .claims import mean_se, smoothed_max

    rows = {}
    for v, g in df.groupby(by, sort=True):
        per_seed = []
        for _, r in g.sort_values("iteration").groupby("seed"):
            x = (pd.to_numeric(r[col], errors="coerce").to_numpy(float) if col in r
                 else np.full(len(r), np.nan))
            se = (pd.to_numeric(r[f"{col}_se"], errors="coerce").to_numpy(float) if f"{col}_se" in r
                  else None)
            per_seed.append(smoothed_max(x, window, after_transient=after_transient, ses=se))
        vals = [m.value for m in per_seed]
        mean, seed_se, n = mean_se(vals)
        if n > 1:
            se, kind = seed_se, f"spread of {n} seeds"
        elif n == 1 and np.isfinite(per_seed[0].se):
            se, kind = per_seed[0].se, "bootstrap over the L gradients"
        elif n == 1:
            se, kind = solver_bound(g, col, mean)
        else:
            se, kind = np.nan, ""
        raw = [m.raw_value for m in per_seed if np.isfinite(m.raw_value)]
        rows[v] = dict(max=mean, se=se, se_kind=kind, raw_max=float(np.mean(raw)) if raw else np.nan,
                       n_seeds=n,
                       at_start=bool(n) and all(m.at_start for m in per_seed if np.isfinite(m.value)))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = by
    return out


def _se_note(kinds) -> str:
    kinds = sorted({k for k in kinds if k})
    return f"se: {', '.join(kinds)}" if kinds else ""


def claims_break_even(df: pd.DataFrame, spectra_K: dict, spectra_H: dict, corr9: pd.DataFrame | None = None,
                      *, setting: str = _SETTING, window: int = WINDOW, r_min: float = 0.5,
                      r_strong: float = 0.7) -> list:
    """Notebook 1's claims (list of claims.Claim), computed from the sweep's metrics.

    ``df``: tidy metrics of every trajectory (``lr``, ``seed``, ``iteration``, ``lambda_K_1``
    [+ ``lambda_K_1_se``], ``lambda_H_1``, ``delta_loss``, ``breakeven_lhs``); ``spectra_K`` /
    ``spectra_H``: per learning rate the eigenvalues of K (L-1 non-zero) and the top-k of H at the
    measurement where lambda_K^1 (resp. lambda_H^1) is largest; ``corr9``: Fig. 9's correlations
    (:func:`fig9_correlations`). ``setting``: model and data label, e.g. "SimpleCNN, CIFAR-10, JPEG
    copy". Rules: correlations need claims.MIN_CORRELATION_N points, r >= ``r_min`` (Fig. 9's
    "strong": r >= ``r_strong``) and p < 0.05; orderings of the smoothed maxima (window ``window``)
    must exceed their combined uncertainty (claims.ordering_verdict).
    """
    from .claims import HOLDS, UNTESTABLE, correlation, correlation_verdict, ordering_verdict

    lrs = sorted(df["lr"].unique())
    lo, hi = lrs[0], lrs[-1]  # smaller and larger learning rate
    out = []
    bep = break_even_points(df)

    # (a) lambda_K^1 and lambda_H^1 correlated before the break-even point, per learning rate
    for lr in lrs:
        g = df[df["lr"] == lr]
        t = bep.loc[bep["lr"] == lr, "iteration"]
        until = float(t.min()) if t.notna().any() else None
        if until is None and g["lambda_K_1"].notna().any():
            until = float(g.loc[g["lambda_K_1"].idxmax(), "iteration"])
            window_txt = f"iterations <= {until:.0f} (argmax lambda_K^1; no break-even point)"
        else:
            window_txt = (f"iterations <= {until:.0f} (break-even point)" if until is not None
                          else "all iterations")
        w = g if until is None else g[g["iteration"] <= until]
        c = correlation(w["lambda_K_1"], w["lambda_H_1"])
        verdict, why = correlation_verdict(c, r_min=r_min)
        out.append(_claim(_FIG2, "(a) lambda_K^1 and lambda_H^1 are correlated before the break-even point",
                          f"{setting}, eta={lr:g}, {window_txt}", "corr_K_H",
                          f"r={_fmt(c.r, 2)}, p={_fmt(c.p, 2)}, n={c.n}", verdict, why))

    # (b) larger smoothed maxima for the smaller learning rate, beyond the noise
    for col, name in (("lambda_K_1", "lambda_K^1"), ("lambda_H_1", "lambda_H^1")):
        mx = max_with_se(df, col, window=window)
        o = ordering_verdict(mx.index.to_numpy(float), mx["max"].to_numpy(float), mx["se"].to_numpy(float),
                             sign=-1, symbol="eta")
        ours = "; ".join(f"eta={lr:g}: {_fmt(r['max'])}"
                         + (f" ± {_fmt(r.se, 2)}" if np.isfinite(r.se) else "")
                         + f" (raw {_fmt(r.raw_max)})" for lr, r in mx.iterrows())
        note = ("no Lanczos residual is recorded" if col == "lambda_H_1" and not _se_note(mx["se_kind"])
                else "")
        reason = "; ".join(p for p in (o.reason, f"margin: {o.margin}" if o.margin else "",
                                       _se_note(mx["se_kind"]) or note) if p)
        out.append(_claim(_FIG2, f"(b) max {name} is larger for the smaller learning rate",
                          f"{setting}, eta in {{{', '.join(f'{x:g}' for x in lrs)}}}, smoothed maximum "
                          f"(window {window})", "max_smaller_eta", ours, o.verdict, reason))

    # (c) Delta L turns negative as lambda_K^1 nears its maximum
    parts, oks, testable_c = [], [], True
    for lr in lrs:
        b, a = negative_delta_shares(df[df["lr"] == lr])
        parts.append(f"eta={lr:g}: {_fmt(b, 2)} before vs {_fmt(a, 2)} after")
        testable_c &= bool(np.isfinite(a) and np.isfinite(b))
        oks.append(np.isfinite(a) and np.isfinite(b) and a > b)
    out.append(_claim(_FIG2, "(c) Delta L starts taking negative values as lambda_K^1 nears its maximum",
                      f"{setting}, eta in {{{', '.join(f'{x:g}' for x in lrs)}}}", "delta_loss",
                      "share of Delta L < 0: " + "; ".join(parts),
                      all(oks) if testable_c else None,
                      "rule: the share of Delta L < 0 is larger once lambda_K^1 >= 0.5 x its maximum"
                      if testable_c else "lambda_K^1 at its maximum from the first measurement"))

    # (d) more outliers in the spectra of K and H for the smaller learning rate
    nK = {lr: outliers(spectra_K.get(lr, [])) for lr in lrs}
    nH = {lr: outliers(spectra_H.get(lr, [])) for lr in lrs}
    testable_d = all(len(spectra_K.get(lr, [])) > 2 and len(spectra_H.get(lr, [])) > 2 for lr in lrs)
    out.append(_claim(
        _FIG3, "(d) the smaller learning rate shows more outliers in the spectra of K and H",
        f"{setting}, eta in {{{', '.join(f'{x:g}' for x in lrs)}}}, at the largest lambda_K^1 / lambda_H^1",
        "outliers", "; ".join(f"eta={lr:g}: K {nK[lr]} of {len(spectra_K.get(lr, []))}, "
                              f"H {nH[lr]} of {len(spectra_H.get(lr, []))}" for lr in lrs),
        (nK[lo] > nK[hi] and nH[lo] > nH[hi]) if testable_d else None,
        "rule: outlier = eigenvalue > median + 3 MAD of its spectrum; count(eta small) > count(eta large) "
        "for K and for H" if testable_d else "spectra not recorded"))

    # (e) break-even point earlier and at smaller lambda_H^1 for the larger learning rate
    be = bep.groupby("lr")[["iteration", "lambda_H_1"]].mean()
    reached = bep.groupby("lr")["iteration"].apply(lambda s: int(s.notna().sum()))
    n_seeds = bep.groupby("lr").size()
    max_lhs = df.groupby("lr")["breakeven_lhs"].max() if "breakeven_lhs" in df else {}
    ours = "; ".join(f"eta={lr:g}: reached in {reached[lr]}/{n_seeds[lr]} runs, iteration "
                     f"{_fmt(be.loc[lr, 'iteration'], 4)}, lambda_H^1 {_fmt(be.loc[lr, 'lambda_H_1'])}, "
                     f"max LHS {_fmt(max_lhs.get(lr, np.nan), 2)}" for lr in lrs)
    rule = "rule: seed-mean iteration and lambda_H^1 at the first crossing: eta large < eta small"
    if reached[hi] == 0:
        verdict, why = UNTESTABLE, f"no run at eta={hi:g} reached LHS >= 1"
    elif reached[lo] == 0:
        # never reached within the budget at the small lr: later by at least the budget;
        # the lambda_H^1 comparison uses the small lr's largest measured value as a lower bound
        lam_lo = df[df["lr"] == lo]["lambda_H_1"].max()
        verdict = bool(be.loc[hi, "lambda_H_1"] < lam_lo)
        why = (f"eta={lo:g} never reached it: earlier holds; lambda_H^1 compared with its max "
               f"{_fmt(lam_lo)}; {rule}")
    else:
        verdict = bool(be.loc[hi, "iteration"] < be.loc[lo, "iteration"]
                       and be.loc[hi, "lambda_H_1"] < be.loc[lo, "lambda_H_1"])
        why = rule
    out.append(_claim(_FIG_EQ1, "(e) the break-even point (first LHS of Eq. (1) >= 1) comes earlier and at a "
                                "smaller lambda_H^1 for the larger learning rate", f"{setting}, eta in "
                                f"{{{', '.join(f'{x:g}' for x in lrs)}}}", "break_even", ours, verdict, why))

    # Fig. 9: lambda_K^1 with M = 128 and M = 1 strongly correlated along each trajectory
    for r in (corr9.itertuples() if corr9 is not None else ()):
        from .claims import Correlation

        c = Correlation(r.pearson_r, int(r.n), r.p, bool(r.testable), r.reason)
        verdict, why = correlation_verdict(c, r_min=r_strong)
        out.append(_claim(_FIG9, "Fig. 9: lambda_K^1 estimated with M = 128 and with M = 1 are strongly "
                                 "correlated along the trajectory", f"{setting}, eta={r.lr:g}, seed {r.seed}",
                          "fig9", f"r={_fmt(r.pearson_r, 2)}, p={_fmt(r.p, 2)}, n={int(r.n)}", verdict, why))
    assert all(c.verdict in (HOLDS, "does not hold", UNTESTABLE) for c in out)
    return out


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
    (``lambda_K1_1``) along each trajectory (App. C, Fig. 9), with n, p and whether n
    suffices (claims.correlation)."""
    from .claims import correlation

    rows = []
    for r in results:
        c = correlation(r.metrics["lambda_K_1"], r.metrics["lambda_K1_1"])
        rows.append(dict(lr=r.config.lr, seed=r.config.seed, n=c.n, pearson_r=c.r, p=c.p,
                         testable=c.testable, reason=c.reason))
    return pd.DataFrame(rows)


def run_configs(profile: str = "smoke", **overrides) -> list:
    """Every run notebook 1 launches at ``profile`` (the trajectories, then the Fig. 9
    runs they do not already contain), validated, without training (``make plan``)."""
    s = settings(profile, **overrides)
    return list({c.key(): c for c in trajectory_configs(s) + fig9_configs(s)}.values())


__all__ += ["run_configs"]
