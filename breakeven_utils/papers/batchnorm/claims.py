"""Notebook 3's claims table (break-even paper Sec. 4.3, App. H), computed from the tidy sweep
table: Conjectures 1 and 2 over eta and S for SimpleCNN-BN, SimpleCNN-BN at a small eta against
SimpleCNN at eta = 0.01 (the paper's numbers, :data:`settings.PAPER_VALUES`), the high learning
rate BatchNorm needs, the early changes of ||gamma|| and lambda_K^1 (Fig. 7b) and the S = 10
exception (App. H). Two settings are compared with :func:`compare` (one step of
``claims.ordering_steps``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from breakeven_utils.papers.batchnorm.analysis import early_changes, maxima
from breakeven_utils.papers.batchnorm.figures import FIGURES
from breakeven_utils.papers.batchnorm.quotes import QUOTES
from breakeven_utils.papers.batchnorm.settings import G5_READING, PAPER_VALUES
from breakeven_utils.papers.common import break_even_reached, compare_peaks_of, compare_runs_peaks
from breakeven_utils.reporting import claims as cl

__all__ = ["compare", "claims", "decay_verdict", "decrease_verdict", "divergence_claim", "runs_verdict"]


def compare(a, b, se_a, se_b, sign: int):
    """(verdict, reason) for sign * (a - b) > 0 beyond the noise: one step of
    ``claims.ordering_steps`` (claims.Z x the combined standard error, claims.FALLBACK_RTOL
    x the larger value where one is missing)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return cl.UNTESTABLE, "not measured (diverged or missing run)"
    st = cl.ordering_steps([0, 1], [b, a], [se_b, se_a], sign).iloc[0]
    m, se_kind = st["margin"], st["margin_kind"] == "se"
    kind = f"{cl.Z:g} x combined SE" if se_kind else f"{cl.FALLBACK_RTOL:.0%} fallback margin"
    if st["outcome"] == "as predicted":
        return cl.HOLDS, f"difference {abs(a - b):.3g} > {kind} {m:.3g}"
    if st["outcome"] == "against":
        return cl.FAILS, f"the other way round by {abs(a - b):.3g} (> {kind} {m:.3g})"
    return cl.UNTESTABLE, f"within noise: difference {abs(a - b):.3g} <= {kind} {m:.3g}"


def runs_verdict(runs: dict, col: str, sign: int, *, window: int, after_transient: bool = True,
                 gate=True) -> tuple[str, str, str]:
    """(verdict, reason, ours) of "the maximum of ``col`` grows along ``runs``" ({label: tidy
    frame of one run} in the predicted order): :func:`common.compare_runs_peaks` (the one peak
    rule with the quantity's noise model), not testable when a run stops before its break-even
    point (``gate``, :func:`common.break_even_reached`): the paper's extremes are over whole
    trajectories, up to and past that point (Sec. 4.3, App. H)."""
    empty = [k for k, g in runs.items() if not len(g) or col not in g or not g[col].notna().any()]
    if empty:
        return cl.UNTESTABLE, "not measured (diverged or missing run): " + ", ".join(empty), "n/a"
    o = compare_runs_peaks(runs, col, sign, window=window, after_transient=after_transient)
    labels = {float(i): k for i, k in enumerate(runs)}
    ours = cl.peaks_text(o.peaks or {}, labels=labels)
    reason = "; ".join(p for p in (o.reason, f"margin: {o.margin}" if o.margin else "") if p)
    short = _short_of_break_even(runs, window, after_transient) if gate else ""
    if short:
        return cl.UNTESTABLE, ("stops before its break-even point (lambda_K^1 has not fallen from its "
                               "peak beyond the noise), while the paper reads extremes over the whole "
                               f"trajectory: {short}; longer runs would decide it (the peak rule alone gives "
                               f"'{o.verdict}': {reason})"), ours
    return o.verdict, reason, ours


def _short_of_break_even(runs: dict, window: int, after_transient: bool = True) -> str:
    """'label: what was measured' of each run in ``runs`` ({label: tidy frame}) that stops
    before its break-even point (:func:`common.break_even_reached`, the peak sought after
    SimpleCNN-BN's initial transient, which is not that point), joined; "" if none."""
    reached = {k: break_even_reached(g, window=window, after_transient=after_transient)
               for k, g in runs.items()}
    return "; ".join(f"{k}: {why}" for k, (ok, why) in reached.items() if not ok)


def _run_of(df: pd.DataFrame, sweep: str, value) -> pd.DataFrame:
    """The converged runs (its seeds) of one setting of one sweep of the tidy table ``df``."""
    return _converged(df[(df["sweep"] == sweep) & np.isclose(df["value"].astype(float), float(value))])


def _fmt(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _claim(section, figure, claim, setting, paper_value, ours, verdict, reason="", figure_file=""):
    return cl.Claim(paper="break_even", section=section, figure=figure, claim=claim, setting=setting,
                    paper_value=paper_value, ours=ours, verdict=verdict, reason=reason,
                    figure_file=figure_file)


def claims(df: pd.DataFrame, s: dict) -> list[cl.Claim]:
    """The claims table of notebook 3, computed from the tidy sweep table ``df`` (all three
    sweeps). Each row: claim, setting, paper's value, ours, verdict, reason."""
    w = int(s["window"])
    mx = maxima(df, w)
    by = {(r["sweep"], _key(r["value"])): r for _, r in mx.iterrows()}

    def get(sw, v, col):
        r = by.get((sw, _key(v)))
        return float(r[col]) if r is not None and col in r and pd.notna(r[col]) else np.nan

    out = []
    lo_bn, hi_bn = min(s["bn_lrs"]), max(s["bn_lrs"])
    win = f"moving average over {w} measurements"
    # Conjectures 1 and 2 over eta and S (SimpleCNN-BN)
    for sw, param, vals, fig, sec in (("bn_eta", "eta", s["bn_lrs"], "Fig. 7", "4.3"),
                                      ("bn_S", "S", s["batch_sizes"], "Fig. 26", "App. H")):
        sign_param = +1 if param == "eta" else -1
        for q, conj, sym, sign in (("lambda_K_1", "1", "lambda_K^1", -1),
                                   ("lambda_H_1", "1", "lambda_H^1", -1),
                                   ("lambda_K_ratio", "2", "lambda_K^*/lambda_K^1", +1)):
            use, note = sorted(vals), ""
            if sw == "bn_S" and q == "lambda_K_ratio" and min(vals) <= 10:
                use = [v for v in use if v > min(vals)]
                note = f"; S={min(vals):g} left out (the paper's S=10 exception, tested in its own row)"
            n_finite = sum(np.isfinite(get(sw, v, f"max_{q}")) for v in use)
            ffile = FIGURES[("fig7a" if sw == "bn_eta" else "fig26a") if q != "lambda_K_ratio"
                            else ("fig7b" if sw == "bn_eta" else "fig26b")] + ".png"
            direction = "decreases" if sign * sign_param < 0 else "increases"
            claim = (f"Conj. {conj}: max {sym} of SimpleCNN-BN {direction} with {param}")
            setting = (f"{param} in {{{', '.join(f'{v:g}' for v in sorted(vals))}}}; peak after the "
                       f"shared first measurement and the initial transient, raw and smoothed ({win}){note}")
            paper = "orderings in Fig. 7/26 (no number in text)"
            if sw == "bn_S" and q == "lambda_H_1" and not s.get("lambda_H_S", True):
                out.append(_claim(sec, fig, claim, setting, paper, "not measured", cl.UNTESTABLE,
                                  "lambda_H^1 is not measured over S at this profile (budget; "
                                  "lambda_H_S=False)", ffile))
                continue
            if n_finite == 0:
                out.append(_claim(sec, fig, claim, setting, paper, "not measured", cl.UNTESTABLE,
                                  "not measured at this profile", ffile))
                continue
            runs = _converged(df[(df["sweep"] == sw) & df["value"].isin(use)])
            o = compare_peaks_of(runs, q, sign * sign_param, "value", symbol=param, window=w,
                                 after_transient=True)
            reason = "; ".join(p for p in (o.reason, f"margin: {o.margin}" if o.margin else "") if p)
            out.append(_claim(sec, fig, claim, setting, paper, cl.peaks_text(o.peaks or {}, param), o.verdict,
                              reason, ffile))
    # BN at the smallest eta vs no BN at eta=0.01 (Sec. 4.3)
    p_lr = 0.01

    bn_lo, plain = f"SimpleCNN-BN eta={lo_bn:g}", f"SimpleCNN eta={p_lr:g}"
    bn_hi = f"SimpleCNN-BN eta={hi_bn:g}"
    runs_ = {bn_lo: _run_of(df, "bn_eta", lo_bn), plain: _run_of(df, "plain_eta", p_lr),
             bn_hi: _run_of(df, "bn_eta", hi_bn)}
    setting = (f"{bn_lo} vs {plain}, S={s['batch_size']}; peak rule ({win}), each run past its break-even "
               "point")
    for q, sym, kp in (("lambda_K_1", "lambda_K^1", "lambda_K_1_max"),
                       ("lambda_K_ratio", "lambda_K^*/lambda_K^1", "lambda_K_ratio_max")):
        verdict, reason, ours = runs_verdict({plain: runs_[plain], bn_lo: runs_[bn_lo]}, q, +1, window=w)
        pa, pb = PAPER_VALUES[f"{kp}_bn_0.001"][0], PAPER_VALUES[f"{kp}_plain_0.01"][0]
        out.append(_claim("4.3", "Fig. 7a" if q == "lambda_K_1" else "Fig. 7b",
                          f"max {sym}: SimpleCNN-BN at small eta larger than SimpleCNN at eta=0.01",
                          setting, f"{pa:g} vs {pb:g}", ours, verdict, reason, FIGURES["sec43"] + ".png"))
    # ||g||/||g_5|| ranges (the sentence with two readings)
    a_max, a_min = get("bn_eta", lo_bn, "max_g_over_g5"), get("bn_eta", lo_bn, "min_g_over_g5")
    b_max, b_min = get("plain_eta", p_lr, "max_g_over_g5"), get("plain_eta", p_lr, "min_g_over_g5")
    verdict, reason = ranges_verdict(runs_[bn_lo], runs_[plain], "g_over_g5", (a_min, a_max), (b_min, b_max),
                                     labels=(bn_lo, plain), window=w)
    out.append(_claim("4.3", "Fig. 7a", "||g||/||g_5|| of SimpleCNN-BN at small eta stays in the range of "
                      "SimpleCNN at eta=0.01 (BN alone does not move the gradient out of K's top-5 "
                      "subspace)", setting + "; " + G5_READING,
                      "max 1.90 (min 1.37) vs max 2.02 (min 1.09)",
                      f"max {_fmt(a_max)} (min {_fmt(a_min)}) vs max {_fmt(b_max)} (min {_fmt(b_min)})",
                      verdict, reason, FIGURES["sec43"] + ".png"))
    # a high learning rate is needed: BN at the largest eta vs the small-eta settings
    parts = [runs_verdict({other: runs_[other], bn_hi: runs_[bn_hi]}, "g_over_g5", +1, window=w)
             for other in (bn_lo, plain)]
    out.append(_claim("4.3", "Fig. 7a", f"max ||g||/||g_5|| of SimpleCNN-BN at eta={hi_bn:g} exceeds both "
                      f"SimpleCNN-BN at eta={lo_bn:g} and SimpleCNN at eta={p_lr:g}",
                      f"S={s['batch_size']}; peak rule ({win}), each run past its break-even point",
                      "Fig. 7a (no number in text)", "; ".join(p[2] for p in parts), *_all(parts),
                      figure_file=FIGURES["sec43"] + ".png"))
    kk = [runs_verdict({bn_hi: runs_[bn_hi], plain: runs_[plain]}, "lambda_K_1", +1, window=w),
          runs_verdict({plain: runs_[plain], bn_hi: runs_[bn_hi]}, "lambda_K_ratio", +1, window=w)]
    out.append(_claim("4.3", "Fig. 7", f"with eta={hi_bn:g}, SimpleCNN-BN is better conditioned than "
                      "SimpleCNN "
                      f"at eta={p_lr:g} (smaller max lambda_K^1, larger max lambda_K^*/lambda_K^1)",
                      f"S={s['batch_size']}; peak rule ({win}) after the initial transient, each run past "
                      "its break-even point",
                      "Summary of Sec. 4.3 (no number in text)",
                      f"lambda_K^1 {kk[0][2]}; ratio {kk[1][2]}", *_all(kk),
                      figure_file=FIGURES["sec43"] + ".png"))
    out += _early_claims(df, s)
    out += _s10_claim(df, s, win)
    out.append(divergence_claim(df, s))
    return cl.quoted(out, QUOTES)


def divergence_claim(df: pd.DataFrame, s: dict) -> cl.Claim:
    """Sec. 4.3: "using eta = 1.0 leads to divergence of SimpleCNN without BN". Holds when the
    plain SimpleCNN run at the largest of ``plain_lrs`` diverged; a run that did not diverge
    within its budget is not testable (it may diverge later in the paper's longer runs)."""
    eta = max(s["plain_lrs"])
    runs = df[(df["sweep"] == "plain_eta") & np.isclose(df["value"].astype(float), eta)]
    setting = f"SimpleCNN without BN, eta={eta:g}, S={s['batch_size']}"
    ffile = FIGURES["sec43"] + ".png"
    if not len(runs):
        return _claim("4.3", "Sec. 4.3", f"SimpleCNN without BN diverges at eta={eta:g}", setting,
                      "diverges", "not run", cl.UNTESTABLE,
                      f"no SimpleCNN run at eta={eta:g} in this profile", ffile)
    seeds = runs.groupby("seed")
    div = int(seeds["status"].apply(lambda st: (st == "diverged").any()).sum())
    n, steps = seeds.ngroups, int(runs["iteration"].max())
    ours = f"{div} of {n} run(s) diverged (last measurement at iteration {steps})"
    if div == n:
        verdict, reason = cl.HOLDS, "every run at this eta was stopped as diverged (non-finite loss)"
    elif div:
        verdict, reason = cl.UNTESTABLE, "the seeds disagree"
    else:
        verdict, reason = cl.UNTESTABLE, (f"no divergence within {steps} iterations; the paper's runs are "
                                          "longer, so a later divergence is not excluded")
    return _claim("4.3", "Sec. 4.3", f"SimpleCNN without BN diverges at eta={eta:g}", setting, "diverges",
                  ours, verdict, reason, ffile)


def _all(parts):
    """Combine per-part verdicts: holds if all hold, does not hold if any fails."""
    vs = [p[0] for p in parts]
    reason = "; ".join(p[1] for p in parts if p[1])
    if all(v == cl.HOLDS for v in vs):
        return cl.HOLDS, reason
    if any(v == cl.FAILS for v in vs):
        return cl.FAILS, reason
    return cl.UNTESTABLE, reason


def _early_claims(df, s) -> list[dict]:
    """||gamma|| initially decreases for the two largest eta only; lambda_K^1 starts high and
    decays for all but the smallest eta (Sec. 4.3, Fig. 7b)."""
    w, until = int(s["window"]), int(s["early_iters"])
    bn = df[df["sweep"] == "bn_eta"]
    lrs = sorted(s["bn_lrs"])
    out = []
    g = early_changes(bn, "gamma_norm", until, w).set_index("value") if len(bn) else pd.DataFrame()
    big = [v for v in lrs if v >= 0.1]
    etas = ", ".join(f"{v:g}" for v in big)
    setting = (f"SimpleCNN-BN, S={s['batch_size']}, eta in {{{etas}}}, first {until} iterations; "
               f"'decreases' = the smoothed ||gamma|| falls below its initial value by more than {cl.Z:g} "
               f"combined SE (scatter of the raw curve about its {w}-point moving average)")
    if len(g) and g["ratio"].notna().any():
        state = {v: _decrease_state(g, v) for v in big}
        ours = "; ".join(f"eta={v:g}: start {_fmt(g.loc[v, 'start'])}, early min "
                         f"{_fmt(g.loc[v, 'early_min'])} (min/initial {g.loc[v, 'ratio']:.4f})"
                         if v in g.index else f"eta={v:g}: n/a" for v in lrs)
        verdict, reason = decrease_verdict(state)
    else:
        ours, verdict, reason = "not measured", cl.UNTESTABLE, "||gamma|| not measured"
    out.append(_claim("4.3", "Fig. 7b", "eta=1.0 and eta=0.1 initially decrease ||gamma|| of the last BN "
                      "layer", setting, "Fig. 7b (no number in text)", ours, verdict,
                      reason, FIGURES["fig7b"] + ".png"))
    k = early_changes(bn, "lambda_K_1", until, w).set_index("value") if len(bn) else pd.DataFrame()
    setting = (f"SimpleCNN-BN, S={s['batch_size']}, first {until} iterations; 'decays' = the smoothed "
               f"minimum is below the initial value by more than {cl.Z:g} combined SE (else "
               f"{cl.FALLBACK_RTOL:.0%} of the value; {w}-point moving average)")
    if len(k) and k["ratio"].notna().any():
        state = {v: _decrease_state(k, v) for v in lrs}
        ours = "; ".join(f"eta={v:g}: start {_fmt(k.loc[v, 'start']) if v in k.index else 'n/a'}, "
                         f"early min {_fmt(k.loc[v, 'early_min']) if v in k.index else 'n/a'}" for v in lrs)
        verdict, reason = decay_verdict(state, lrs)
    else:
        ours, verdict, reason = "not measured", cl.UNTESTABLE, "lambda_K^1 not measured"
    out.append(_claim("4.3", "Fig. 7b", "lambda_K^1 of SimpleCNN-BN starts high and decays for all but the "
                      "smallest eta", setting, "Fig. 7b (no number in text)", ours, verdict, reason,
                      FIGURES["fig7b"] + ".png"))
    return out


def _decrease_state(k: pd.DataFrame, v) -> str | None:
    """Verdict of "the early minimum is below the start beyond the noise" for one eta of an
    :func:`analysis.early_changes` table (None: not measured)."""
    if v not in k.index or not np.isfinite(k.loc[v, "ratio"]):
        return None
    if k.loc[v, "early_min"] >= k.loc[v, "start"]:
        return cl.FAILS  # never below its start
    return compare(k.loc[v, "start"], k.loc[v, "early_min"], k.loc[v, "se_start"], k.loc[v, "se_min"], +1)[0]


def decrease_verdict(state: dict) -> tuple[str, str]:
    """(verdict, reason) of "each of these eta initially decreases the quantity" from ``state``
    {eta: verdict of "start > early minimum" beyond the noise, or None}: holds when all do,
    does not hold when one never falls below its start, else not testable (within noise)."""
    if any(v is None for v in state.values()):
        return cl.UNTESTABLE, "a run diverged or was not measured"
    names = {k: ", ".join(f"eta={v:g}" for v in state if state[v] == k)
             for k in (cl.HOLDS, cl.FAILS, cl.UNTESTABLE)}
    if names[cl.FAILS]:
        return cl.FAILS, f"never below its initial value: {names[cl.FAILS]}"
    if names[cl.UNTESTABLE]:
        beyond = f"; decreasing beyond the noise: {names[cl.HOLDS]}" if names[cl.HOLDS] else ""
        return cl.UNTESTABLE, (f"within noise: the decrease at {names[cl.UNTESTABLE]} does not exceed the "
                               f"margin{beyond}")
    return cl.HOLDS, f"decreasing beyond the noise: {names[cl.HOLDS]}"


def decay_verdict(state: dict, lrs) -> tuple[str, str]:
    """(verdict, reason) of "lambda_K^1 decays for all but the smallest eta" (Sec. 4.3) from
    ``state`` {eta: verdict of "start > early minimum" beyond the noise, or None}: a decay
    within the noise is not a failure (issue 20, item 3): it fails only if an eta above the
    smallest shows none beyond the noise, or the smallest decays beyond it."""
    lrs = sorted(lrs)
    if any(state[v] is None for v in lrs):
        return cl.UNTESTABLE, "a run diverged or was not measured"
    bad = [v for v in lrs[1:] if state[v] == cl.FAILS] + ([lrs[0]] if state[lrs[0]] == cl.HOLDS else [])
    noisy = [v for v in lrs[1:] if state[v] == cl.UNTESTABLE]
    decaying = ", ".join(f"{v:g}" for v in lrs if state[v] == cl.HOLDS) or "none"
    if bad:
        return cl.FAILS, (f"against the claim beyond the noise at eta={', '.join(f'{v:g}' for v in bad)}; "
                          f"decaying beyond the noise: {decaying}")
    if noisy:
        return cl.UNTESTABLE, (f"within noise: the decay at eta={', '.join(f'{v:g}' for v in noisy)} does "
                               f"not exceed the margin; decaying beyond the noise: {decaying}")
    return cl.HOLDS, f"decaying beyond the noise: {decaying}"


def _s10_claim(df, s, win) -> list[dict]:
    sizes = sorted(s["batch_sizes"])
    if sizes[0] > 10 or len(sizes) < 2:
        return [_claim("App. H", "Fig. 26", "S=10: max ||g||/||g_5|| and max lambda_K^*/lambda_K^1 smaller "
                       "than "
                       "for larger S", f"S in {sizes}", "App. H (no number in text)", "S=10 not run",
                       cl.UNTESTABLE, "the profile's S list has no S <= 10")]
    S0, w = sizes[0], int(s["window"])

    parts, ours = [], []
    for q, sym in (("g_over_g5", "||g||/||g_5||"), ("lambda_K_ratio", "lambda_K^*/lambda_K^1")):
        these = [runs_verdict({f"S={S0}": _run_of(df, "bn_S", S0), f"S={S}": _run_of(df, "bn_S", S)}, q, +1,
                              window=w) for S in sizes[1:]]
        parts += these
        ours.append(f"{sym}: " + "; ".join(t[2] for t in these))
    return [_claim("App. H", "Fig. 26", f"S={S0} is the exception: its max ||g||/||g_5|| and max "
                   f"lambda_K^*/lambda_K^1 are smaller than for every larger S",
                   f"SimpleCNN-BN, eta={s['lr_for_S']:g}, S in {sizes}; peak rule ({win}), each run past its "
                   "break-even point", "App. H (no number in text)",
                   " | ".join(ours), *_all([p[:2] for p in parts]), figure_file=FIGURES["fig26a"] + ".png")]


def ranges_verdict(run_a, run_b, col, range_a, range_b, *, labels, window) -> tuple[str, str]:
    """(verdict, reason) of "the [min, max] ranges of ``col`` over two runs overlap" (Sec. 4.3's
    ||g||/||g_5|| sentence): not testable when a run stops before its break-even point (the
    paper's extremes are over the whole trajectory); disjoint only when the gap exceeds
    claims.Z x the combined scatter of the two curves (their noise model)."""
    short = _short_of_break_even(dict(zip(labels, (run_a, run_b))), window)
    if not np.isfinite([*range_a, *range_b]).all():
        return cl.UNTESTABLE, "not measured (diverged or missing run)"
    (a_min, a_max), (b_min, b_max) = range_a, range_b
    gap = max(a_min - b_max, b_min - a_max)
    if gap <= 0:
        verdict, why = cl.HOLDS, "the [min, max] ranges overlap"
    else:
        se = [np.nanmedian(cl.scatter_se(pd.to_numeric(g.sort_values("iteration")[col], errors="coerce")
                                         .to_numpy(float), window)) / np.sqrt(window) for g in (run_a, run_b)]
        margin = cl.Z * float(np.sqrt(np.nansum(np.square(se))))
        if gap > margin:
            verdict, why = cl.FAILS, (f"the [min, max] ranges are disjoint: gap {gap:.3g} > {cl.Z:g} x the "
                                      f"combined scatter of the smoothed curves ({margin:.3g})")
        else:
            verdict, why = cl.UNTESTABLE, f"within noise: gap {gap:.3g} <= {margin:.3g}"
    if short:
        return cl.UNTESTABLE, ("stops before its break-even point, while the paper reads extremes over the "
                               f"whole trajectory: {short}; longer runs would decide it (the ranges alone: "
                               f"{why})")
    return verdict, why


def _converged(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` without the runs (value, seed) that diverged."""
    bad = runs.groupby(["value", "seed"])["status"].transform(lambda st: (st == "diverged").any())
    return runs[~bad]


def _key(v):
    return round(float(v), 12)
