"""Notebook 2's claims table (break-even paper Sec. 4.2, App. E-G): per sweep and predicted
ordering of Conjectures 1 and 2, whether the smoothed maximum moves the predicted way across
every consecutive pair of settings beyond the noise, beside the paper's numbers
(``common.BREAK_EVEN_PAPER_VALUES``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from breakeven_utils.papers.common import BREAK_EVEN_PAPER_VALUES, paper_value
from breakeven_utils.papers.conjectures.figures import claim_figure
from breakeven_utils.papers.conjectures.settings import (
    PARAM_SIGN,
    PARAM_SYMBOL,
    QUANTITIES,
    WINDOW,
    paper_number,
    param_from_name,
)
from breakeven_utils.reporting.claims import UNTESTABLE, Claim, ordering_verdict

__all__ = ["claims"]


def _paper(sw: str, q: str, values) -> str:
    """The paper's values of ``q`` in sweep ``sw``: those of our settings, then the others."""
    sym = _symbol(sw)
    got = [(v, paper_value((sw, paper_number(v), q))) for v in values]
    ours = {paper_number(v) for v in values}
    extra = [(k[1], paper_value(k)) for k in _paper_keys(sw, q) if k[1] not in ours]
    parts = [f"{sym}={float(v):g}: {x:g}" for v, x in got + extra if x is not None]
    return "; ".join(parts)


def _paper_keys(sw, q):
    return [k for k in BREAK_EVEN_PAPER_VALUES if isinstance(k, tuple) and k[0] == sw and k[2] == q]


def _symbol(sw: str) -> str:
    return PARAM_SYMBOL[param_from_name(sw)]


def claims(mx: pd.DataFrame, labels: dict | None = None, param_of: dict | None = None) -> list:
    """One claims.Claim per sweep and predicted ordering (``settings.PREDICTIONS``), from
    ``analysis.setting_maxima``: does the smoothed maximum move the predicted way across every
    consecutive pair of settings by more than their combined uncertainty
    (claims.ordering_verdict; the margins used are in the reason)? ``labels``: {sweep: setting
    text (model, what varies, data set)}; ``param_of``: {sweep: varied parameter}, default from the name.
    Not testable: no finite value (not measured), fewer than two settings, or every setting
    peaking at its first measurement considered (no growth within the budget).
    """
    out = []
    for sw, g in mx.groupby("sweep", sort=False):
        param = (param_of or {}).get(sw) or param_from_name(sw)
        sym = PARAM_SYMBOL[param]
        g = g.sort_values("value")
        trans = bool(g["after_transient"].any()) if "after_transient" in g else False
        window = int(g["window"].iloc[0]) if "window" in g else WINDOW
        where = f"smoothed maximum (window {window}" + (", after the initial transient)" if trans else ")")
        setting = f"{labels[sw]}; {where}" if sw in (labels or {}) else f"{sw}, vary {sym}; {where}"
        for q, (_col, conj, sign, name) in QUANTITIES.items():
            vals = g[q].to_numpy(float)
            finite = np.isfinite(vals)
            ours = "; ".join(
                f"{sym}={float(v):g}: " + ("diverged" if n == 0 else "n/a" if not np.isfinite(m) else
                                           f"{m:.3g}" + (f" ± {e:.2g}" if np.isfinite(e) else "")
                                           + f" (raw {r:.3g})")
                for v, m, e, r, n in zip(g["value"], vals, g[f"{q}_se"], g[f"raw_{q}"], g["n_seeds"]))
            at_start = finite.any() and bool(g.loc[finite, f"{q}_at_start"].all())
            word = "smaller" if sign * PARAM_SIGN[param] < 0 else "larger"
            claim = f"Conjecture {conj}: the maximum {name} is {word} for a larger {sym}"
            if not finite.any():
                verdict, reason = UNTESTABLE, "not measured at this profile"
            elif at_start and finite.sum() > 1:
                verdict, reason = UNTESTABLE, ("maximum at the first measurement"
                                               + (" after the transient" if trans else "")
                                               + " in every setting: no growth within the budget; "
                                               "to decide: a denser schedule before that measurement, "
                                               "or the paper profile's data and epochs")
            else:
                o = ordering_verdict(g["value"].to_numpy(float), vals, g[f"{q}_se"].to_numpy(float),
                                     sign * PARAM_SIGN[param], symbol=sym)
                kinds = sorted({k for k in g[f"{q}_se_kind"] if k})
                se_txt = (f"se: {', '.join(kinds)}" if kinds else
                          "no Lanczos residual is recorded" if q == "max_lambda_H_1" else
                          "the bootstrap SE of the ratio is unreliable and one seed gives no spread"
                          if q == "max_lambda_K_ratio" else "no bootstrap SE recorded by these runs")
                verdict = o.verdict
                need = ("to decide: several seeds (their spread as the margin; the paper profile runs 5)"
                        if verdict == UNTESTABLE and bool((g["n_seeds"] <= 1).all()) else "")
                parts = (o.reason, f"margin: {o.margin}" if o.margin else "", se_txt, need)
                reason = "; ".join(p for p in parts if p)
            section, figure, ffile = claim_figure(sw, q)
            out.append(Claim("break_even", section, figure, claim, setting, _paper(sw, q, g["value"]), ours,
                             verdict, reason, ffile))
    return out
