"""Notebook 1's claims table (break-even paper Sec. 3, Sec. 4.1, App. C), computed from the
sweep's metrics: (a) lambda_K^1 and lambda_H^1 correlated before the break-even point, (b)
larger maxima for the smaller eta, (c) Delta L < 0 near the maximum of lambda_K^1, (d) more
outliers in the spectra for the smaller eta, (e) the break-even point earlier and at a smaller
lambda_H^1 for the larger eta, and Fig. 9's correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from breakeven_utils.papers.break_even.analysis import break_even_points, negative_delta_shares, outliers
from breakeven_utils.papers.break_even.figures import FIG2, FIG3, FIG9, FIG_EQ1
from breakeven_utils.papers.break_even.quotes import QUOTES
from breakeven_utils.papers.break_even.settings import SETTING, WINDOW
from breakeven_utils.papers.common import compare_peaks_of, paper_value
from breakeven_utils.reporting.claims import (
    HOLDS,
    UNTESTABLE,
    Claim,
    Correlation,
    correlation,
    correlation_verdict,
    mean_se,
    peaks_text,
    quoted,
)

__all__ = ["claims", "outlier_verdict"]


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}g}"


def _claim(fig, claim, setting, paper_key, ours, verdict, reason=""):
    section, figure, ffile = fig
    return Claim("break_even", section, figure, claim, setting, paper_value(paper_key, ""), ours, verdict,
                 reason, ffile)


def _se_note(kinds) -> str:
    kinds = sorted({k for k in kinds if k})
    return f"se: {', '.join(kinds)}" if kinds else ""


#: the noise of one spectrum's outlier count, in outliers: the same seed's count moved by 2
#: between two thread layouts of notebook 1 (#21, item 6), so a count is read +- 1
COUNT_SD = 1.0


def outlier_verdict(spectra_K: dict, counts: dict | None, lo, hi, lrs) -> tuple:
    """(verdict, ours, reason) of Fig. 3's "more outliers in K's spectrum at the smaller eta"
    (``lo``) than at the larger (``hi``). Outlier: an eigenvalue above median + 3 MAD of the
    L-1 non-zero eigenvalues. With several seeds per eta the seed means must differ by more
    than Welch's t (95%, two-sided) x their combined standard error, each at least
    :data:`COUNT_SD` / sqrt(seeds) (a count near the threshold flips between machines; 3 seeds
    give a too-narrow spread: z = 1.96 let one thread layout say "holds" and the other "not
    testable"); a tie, or a difference inside it, is not testable. With one spectrum per eta a
    count has no noise model: a tie decides nothing."""
    rule = "outlier = eigenvalue > median + 3 MAD of the L-1 non-zero eigenvalues of K"
    if counts and all(len(counts.get(lr, [])) >= 2 for lr in (lo, hi)):
        est = {lr: mean_se(counts[lr]) for lr in lrs if counts.get(lr)}
        ours = "; ".join(f"eta={lr:g}: {m:.2f} ± {se:.2f} (seeds: {', '.join(map(str, counts[lr]))})"
                         for lr, (m, se, _n) in est.items())
        (m_lo, se_lo, n_lo), (m_hi, se_hi, n_hi) = est[lo], est[hi]
        a, b = (max(se_lo, COUNT_SD / np.sqrt(n_lo))) ** 2, (max(se_hi, COUNT_SD / np.sqrt(n_hi))) ** 2
        df = (a + b) ** 2 / (a ** 2 / (n_lo - 1) + b ** 2 / (n_hi - 1))
        t = float(stats.t.ppf(0.975, df))
        margin = t * float(np.sqrt(a + b))
        d = m_lo - m_hi
        why = (f"rule: {rule}, per seed at its largest lambda_K^1; mean count(eta={lo:g}) - mean "
               f"count(eta={hi:g}) = {d:+.2f}, margin {margin:.2f} (Welch t {t:.2f}, {df:.1f} df, x the "
               f"combined SE over {n_lo} and {n_hi} seeds, each at least {COUNT_SD:g}/sqrt(seeds): a count "
               "is read +- 1)")
        if d > margin:
            return True, ours, why
        if d < -margin:
            return False, ours, why
        return None, ours, f"within noise: {why}; more seeds would decide it"
    nK = {lr: outliers(spectra_K.get(lr, [])) for lr in lrs}
    ours = "; ".join(f"eta={lr:g}: {nK[lr]} of {len(spectra_K.get(lr, []))}" for lr in lrs)
    if not all(len(spectra_K.get(lr, [])) > 2 for lr in lrs):
        return None, ours, "spectra of K not recorded"
    if nK[lo] == nK[hi]:
        return None, ours, f"rule: {rule}; equal counts in one spectrum per eta: seeds would decide it"
    return nK[lo] > nK[hi], ours, (f"rule: {rule}; count(eta small) > count(eta large), one spectrum per "
                                   "eta (no noise model for a count)")


def claims(df: pd.DataFrame, spectra_K: dict, spectra_H: dict, corr9: pd.DataFrame | None = None,
           *, setting: str = SETTING, window: int = WINDOW, r_min: float = 0.5,
           r_strong: float = 0.7, m1_L: int | None = None, outlier_counts: dict | None = None) -> list:
    """Notebook 1's claims (list of claims.Claim; Sec. 4.1, Sec. 3 Theorem 1, App. C Fig. 9),
    computed from the sweep's metrics.

    ``df``: tidy metrics of every trajectory (``lr``, ``seed``, ``iteration``, ``lambda_K_1``
    [+ ``lambda_K_1_se``], ``lambda_H_1``, ``delta_loss``, ``breakeven_lhs``); ``spectra_K`` /
    ``spectra_H``: per learning rate the eigenvalues of K (L-1 non-zero) and the top-k of H at the
    measurement where lambda_K^1 (resp. lambda_H^1) is largest; ``corr9``: Fig. 9's correlations
    (``analysis.fig9_correlations``). ``setting``: model and data label, e.g. "SimpleCNN, CIFAR-10, JPEG
    copy"; ``m1_L``: the number of single-example gradients behind Fig. 9's M = 1 estimate
    (said in its rows: the paper uses the whole, 10%-subsampled, training set);
    ``outlier_counts``: {lr: [K's outliers per seed]} (``analysis.outlier_counts_at_max``):
    claim (d) compares their seed means beyond Z x the combined seed SE; without them, the
    one spectrum of ``spectra_K`` per lr, where a tie decides nothing.
    Rules: correlations need claims.MIN_CORRELATION_N points, r >= ``r_min`` (Fig. 9's
    "strong": r >= ``r_strong``) and p < 0.05; maxima compared by claims.compare_peaks (the
    one peak rule; noise per quantity: papers.common.compare_peaks_of).
    """
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
        out.append(_claim(FIG2, "(a) lambda_K^1 and lambda_H^1 are correlated before the break-even point",
                          f"{setting}, eta={lr:g}, {window_txt}", "corr_K_H",
                          f"r={_fmt(c.r, 2)}, p={_fmt(c.p, 2)}, n={c.n}", verdict, why))

    # (b) larger peaks for the smaller learning rate, beyond the noise (claims.compare_peaks)
    for col, name in (("lambda_K_1", "lambda_K^1"), ("lambda_H_1", "lambda_H^1")):
        o = compare_peaks_of(df, col, -1, "lr", symbol="eta", window=window)
        reason = "; ".join(p for p in (o.reason, f"margin: {o.margin}" if o.margin else "") if p)
        out.append(_claim(FIG2, f"(b) max {name} is larger for the smaller learning rate",
                          f"{setting}, eta in {{{', '.join(f'{x:g}' for x in lrs)}}}, peak after the shared "
                          f"first measurement, raw and smoothed (window {window})", "max_smaller_eta",
                          peaks_text(o.peaks or {}, "eta"), o.verdict, reason))

    # (c) Delta L turns negative as lambda_K^1 nears its maximum
    parts, oks, testable_c = [], [], True
    for lr in lrs:
        b, a = negative_delta_shares(df[df["lr"] == lr])
        parts.append(f"eta={lr:g}: {_fmt(b, 2)} before vs {_fmt(a, 2)} after")
        testable_c &= bool(np.isfinite(a) and np.isfinite(b))
        oks.append(np.isfinite(a) and np.isfinite(b) and a > b)
    out.append(_claim(FIG2, "(c) Delta L starts taking negative values as lambda_K^1 nears its maximum",
                      f"{setting}, eta in {{{', '.join(f'{x:g}' for x in lrs)}}}", "delta_loss",
                      "share of Delta L < 0: " + "; ".join(parts),
                      all(oks) if testable_c else None,
                      "rule: the share of Delta L < 0 is larger once lambda_K^1 >= 0.5 x its maximum"
                      if testable_c else "lambda_K^1 at its maximum from the first measurement"))

    # (d) more outliers in the spectra of K and H for the smaller learning rate. K's spectrum is
    # all its L-1 non-zero eigenvalues; H's is only its top-k, inside which "median + 3 MAD"
    # flags about one eigenvalue in any run: H's half is not testable from a top-k list.
    lrs_txt = f"{setting}, eta in {{{', '.join(f'{x:g}' for x in lrs)}}}"
    verdict_d, ours_d, why_d = outlier_verdict(spectra_K, outlier_counts, lo, hi, lrs)
    out.append(_claim(FIG3, "(d) the smaller learning rate shows more outliers in the spectrum of K",
                      f"{lrs_txt}, at the largest lambda_K^1", "outliers", ours_d, verdict_d, why_d))
    k_H = max((len(spectra_H.get(lr, [])) for lr in lrs), default=0)
    out.append(_claim(
        FIG3, "(d) the smaller learning rate shows more outliers in the spectrum of H",
        f"{lrs_txt}, at the largest lambda_H^1", "outliers",
        "; ".join(f"eta={lr:g}: top {len(spectra_H.get(lr, []))} eigenvalues, largest "
                  f"{_fmt(max(spectra_H[lr]) if len(spectra_H.get(lr, [])) else np.nan)}" for lr in lrs),
        None, f"only the top {k_H} eigenvalues of H are computed: outliers are counted against the bulk "
              "of the spectrum, which a top-k list does not contain (median + 3 MAD inside it flags about "
              "one in any run); deciding it needs H's spectral density (SLQ) at that iteration"))

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
    out.append(_claim(FIG_EQ1, "(e) the break-even point (first LHS of Eq. (1) >= 1) comes earlier and at a "
                                "smaller lambda_H^1 for the larger learning rate", f"{setting}, eta in "
                                f"{{{', '.join(f'{x:g}' for x in lrs)}}}", "break_even", ours, verdict, why))

    # Fig. 9: lambda_K^1 with M = 128 and M = 1 strongly correlated along each trajectory
    m1 = (f"; M = 1 from L = {m1_L} single-example gradients (the paper: the whole training set, "
          "subsampled to 10%)" if m1_L else "")
    for r in (corr9.itertuples() if corr9 is not None else ()):
        c = Correlation(r.pearson_r, int(r.n), r.p, bool(r.testable), r.reason)
        verdict, why = correlation_verdict(c, r_min=r_strong)
        out.append(_claim(FIG9, "Fig. 9: lambda_K^1 estimated with M = 128 and with M = 1 are strongly "
                                 "correlated along the trajectory",
                          f"{setting}, eta={r.lr:g}, seed {r.seed}{m1}",
                          "fig9", f"r={_fmt(r.pearson_r, 2)}, p={_fmt(r.p, 2)}, n={int(r.n)}", verdict, why))
    assert all(c.verdict in (HOLDS, "does not hold", UNTESTABLE) for c in out)
    return quoted(out, QUOTES)
