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
from breakeven_utils.papers.common import compare_peaks_of
from breakeven_utils.reporting import claims as cl

__all__ = ["compare", "claims", "decay_verdict", "divergence_claim"]


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
    setting = f"SimpleCNN-BN eta={lo_bn:g} vs SimpleCNN eta={p_lr:g}, S={s['batch_size']}; {win}"
    for q, sym, sign, kp in (("lambda_K_1", "lambda_K^1", +1, "lambda_K_1_max"),
                             ("lambda_K_ratio", "lambda_K^*/lambda_K^1", +1, "lambda_K_ratio_max")):
        a, b = get("bn_eta", lo_bn, f"max_{q}"), get("plain_eta", p_lr, f"max_{q}")
        verdict, reason = compare(a, b, get("bn_eta", lo_bn, f"se_{q}"), get("plain_eta", p_lr, f"se_{q}"),
                                  sign)
        pa, pb = PAPER_VALUES[f"{kp}_bn_0.001"][0], PAPER_VALUES[f"{kp}_plain_0.01"][0]
        what = "larger" if sign > 0 else "smaller"
        out.append(_claim("4.3", "Fig. 7a" if q == "lambda_K_1" else "Fig. 7b",
                          f"max {sym}: SimpleCNN-BN at small eta {what} than SimpleCNN at eta=0.01",
                          setting, f"{pa:g} vs {pb:g}", f"{_fmt(a)} vs {_fmt(b)} (raw "
                          f"{_fmt(get('bn_eta', lo_bn, f'raw_max_{q}'))} vs "
                          f"{_fmt(get('plain_eta', p_lr, f'raw_max_{q}'))})", verdict, reason,
                          FIGURES["sec43"] + ".png"))
    # ||g||/||g_5|| ranges (the sentence with two readings)
    a_max, a_min = get("bn_eta", lo_bn, "max_g_over_g5"), get("bn_eta", lo_bn, "min_g_over_g5")
    b_max, b_min = get("plain_eta", p_lr, "max_g_over_g5"), get("plain_eta", p_lr, "min_g_over_g5")
    if np.isfinite([a_max, a_min, b_max, b_min]).all():
        overlap = a_min <= b_max and b_min <= a_max
        verdict, reason = (cl.HOLDS if overlap else cl.FAILS), (
            "the [min, max] ranges overlap" if overlap else "the [min, max] ranges are disjoint")
    else:
        verdict, reason = cl.UNTESTABLE, "not measured (diverged or missing run)"
    out.append(_claim("4.3", "Fig. 7a", "||g||/||g_5|| of SimpleCNN-BN at small eta stays in the range of "
                      "SimpleCNN at eta=0.01 (BN alone does not move the gradient out of K's top-5 "
                      "subspace)", setting + "; " + G5_READING,
                      "max 1.90 (min 1.37) vs max 2.02 (min 1.09)",
                      f"max {_fmt(a_max)} (min {_fmt(a_min)}) vs max {_fmt(b_max)} (min {_fmt(b_min)})",
                      verdict, reason, FIGURES["sec43"] + ".png"))
    # a high learning rate is needed: BN at the largest eta vs the small-eta settings
    c = get("bn_eta", hi_bn, "max_g_over_g5")
    se_c = get("bn_eta", hi_bn, "se_g_over_g5")
    parts = [compare(c, a_max, se_c, get("bn_eta", lo_bn, "se_g_over_g5"), +1),
             compare(c, b_max, se_c, get("plain_eta", p_lr, "se_g_over_g5"), +1)]
    out.append(_claim("4.3", "Fig. 7a", f"max ||g||/||g_5|| of SimpleCNN-BN at eta={hi_bn:g} exceeds both "
                      f"SimpleCNN-BN at eta={lo_bn:g} and SimpleCNN at eta={p_lr:g}",
                      f"S={s['batch_size']}; {win}", "Fig. 7a (no number in text)",
                      f"{_fmt(c)} vs {_fmt(a_max)} and {_fmt(b_max)}", *_all(parts),
                      figure_file=FIGURES["sec43"] + ".png"))
    kk = [compare(get("bn_eta", hi_bn, "max_lambda_K_1"), get("plain_eta", p_lr, "max_lambda_K_1"),
                  get("bn_eta", hi_bn, "se_lambda_K_1"), get("plain_eta", p_lr, "se_lambda_K_1"), -1),
          compare(get("bn_eta", hi_bn, "max_lambda_K_ratio"), get("plain_eta", p_lr, "max_lambda_K_ratio"),
                  get("bn_eta", hi_bn, "se_lambda_K_ratio"), get("plain_eta", p_lr, "se_lambda_K_ratio"),
                  +1)]
    out.append(_claim("4.3", "Fig. 7", f"with eta={hi_bn:g}, SimpleCNN-BN is better conditioned than "
                      "SimpleCNN "
                      f"at eta={p_lr:g} (smaller max lambda_K^1, larger max lambda_K^*/lambda_K^1)",
                      f"S={s['batch_size']}; {win}; lambda_K^1 after the initial transient",
                      "Summary of Sec. 4.3 (no number in text)",
                      f"lambda_K^1 {_fmt(get('bn_eta', hi_bn, 'max_lambda_K_1'))} vs "
                      f"{_fmt(get('plain_eta', p_lr, 'max_lambda_K_1'))}; ratio "
                      f"{_fmt(get('bn_eta', hi_bn, 'max_lambda_K_ratio'))} vs "
                      f"{_fmt(get('plain_eta', p_lr, 'max_lambda_K_ratio'))}", *_all(kk),
                      figure_file=FIGURES["sec43"] + ".png"))
    out += _early_claims(df, s)
    out += _s10_claim(get, s, win)
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
    reason = "; ".join(p[1] for p in parts)
    if all(v == cl.HOLDS for v in vs):
        return cl.HOLDS, reason
    if any(v == cl.FAILS for v in vs):
        return cl.FAILS, reason
    return cl.UNTESTABLE, reason


def _early_claims(df, s) -> list[dict]:
    """||gamma|| initially decreases for the two largest eta only; lambda_K^1 starts high and
    decays for all but the smallest eta (Sec. 4.3, Fig. 7b)."""
    w, until, tol = int(s["window"]), int(s["early_iters"]), float(s["gamma_tol"])
    bn = df[df["sweep"] == "bn_eta"]
    lrs = sorted(s["bn_lrs"])
    out = []
    g = early_changes(bn, "gamma_norm", until, w).set_index("value") if len(bn) else pd.DataFrame()
    setting = (f"SimpleCNN-BN, S={s['batch_size']}, first {until} iterations; 'decreases' = the "
               f"smoothed ||gamma|| falls below {1 - tol:.0%} of its initial value ({w}-point moving "
               "average)")
    if len(g) and g["ratio"].notna().any():
        big = [v for v in lrs if v >= 0.1]
        small = [v for v in lrs if v < 0.1]
        dec = {v: bool(g.loc[v, "ratio"] < 1 - tol) if v in g.index and np.isfinite(g.loc[v, "ratio"])
               else None for v in lrs}
        ours = "; ".join(f"eta={v:g}: min/initial {_fmt(g.loc[v, 'ratio']) if v in g.index else 'n/a'}"
                         for v in lrs)
        if any(dec[v] is None for v in lrs):
            verdict, reason = cl.UNTESTABLE, "a run diverged or was not measured"
        elif all(dec[v] for v in big) and not any(dec[v] for v in small):
            verdict, reason = cl.HOLDS, ""
        else:
            verdict = cl.FAILS
            reason = "decreasing: " + (", ".join(f"{v:g}" for v in lrs if dec[v]) or "none")
    else:
        ours, verdict, reason = "not measured", cl.UNTESTABLE, "||gamma|| not measured"
    out.append(_claim("4.3", "Fig. 7b", "eta=1.0 and eta=0.1 initially decrease ||gamma|| of the last BN "
                      "layer; the smaller eta do not", setting, "Fig. 7b (no number in text)", ours, verdict,
                      reason, FIGURES["fig7b"] + ".png"))
    k = early_changes(bn, "lambda_K_1", until, w).set_index("value") if len(bn) else pd.DataFrame()
    setting = (f"SimpleCNN-BN, S={s['batch_size']}, first {until} iterations; 'decays' = the smoothed "
               f"minimum is below the initial value by more than {cl.Z:g} combined SE (else "
               f"{cl.FALLBACK_RTOL:.0%} of the value; {w}-point moving average)")
    if len(k) and k["ratio"].notna().any():
        state = {}  # eta -> verdict of "start > early minimum" beyond the noise (None: not measured)
        for v in lrs:
            if v not in k.index or not np.isfinite(k.loc[v, "ratio"]):
                state[v] = None
                continue
            if k.loc[v, "early_min"] >= k.loc[v, "start"]:
                state[v] = cl.FAILS  # never below its start: no decay at all
                continue
            state[v], _ = compare(k.loc[v, "start"], k.loc[v, "early_min"], k.loc[v, "se_start"],
                                  k.loc[v, "se_min"], +1)
        ours = "; ".join(f"eta={v:g}: start {_fmt(k.loc[v, 'start']) if v in k.index else 'n/a'}, "
                         f"early min {_fmt(k.loc[v, 'early_min']) if v in k.index else 'n/a'}" for v in lrs)
        verdict, reason = decay_verdict(state, lrs)
    else:
        ours, verdict, reason = "not measured", cl.UNTESTABLE, "lambda_K^1 not measured"
    out.append(_claim("4.3", "Fig. 7b", "lambda_K^1 of SimpleCNN-BN starts high and decays for all but the "
                      "smallest eta", setting, "Fig. 7b (no number in text)", ours, verdict, reason,
                      FIGURES["fig7b"] + ".png"))
    return out


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


def _s10_claim(get, s, win) -> list[dict]:
    sizes = sorted(s["batch_sizes"])
    if sizes[0] > 10 or len(sizes) < 2:
        return [_claim("App. H", "Fig. 26", "S=10: max ||g||/||g_5|| and max lambda_K^*/lambda_K^1 smaller "
                       "than "
                       "for larger S", f"S in {sizes}", "App. H (no number in text)", "S=10 not run",
                       cl.UNTESTABLE, "the profile's S list has no S <= 10")]
    S0 = sizes[0]
    parts, ours = [], []
    for q, sym in (("g_over_g5", "||g||/||g_5||"), ("lambda_K_ratio", "lambda_K^*/lambda_K^1")):
        a, se_a = get("bn_S", S0, f"max_{q}"), get("bn_S", S0, f"se_{q}")
        for S in sizes[1:]:
            parts.append(compare(a, get("bn_S", S, f"max_{q}"), se_a, get("bn_S", S, f"se_{q}"), -1))
        ours.append(f"{sym}: " + ", ".join(f"S={S}: {_fmt(get('bn_S', S, f'max_{q}'))}" for S in sizes))
    return [_claim("App. H", "Fig. 26", f"S={S0} is the exception: its max ||g||/||g_5|| and max "
                   f"lambda_K^*/lambda_K^1 are smaller than for every larger S",
                   f"SimpleCNN-BN, eta={s['lr_for_S']:g}, S in {sizes}; {win}", "App. H (no number in text)",
                   "; ".join(ours), *_all(parts), figure_file=FIGURES["fig26a"] + ".png")]


def _converged(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` without the runs (value, seed) that diverged."""
    bad = runs.groupby(["value", "seed"])["status"].transform(lambda st: (st == "diverged").any())
    return runs[~bad]


def _key(v):
    return round(float(v), 12)
