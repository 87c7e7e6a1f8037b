"""Notebook 2's claims table (break-even paper Sec. 4.2, App. E-G): per sweep and predicted
ordering of Conjectures 1 and 2, whether the peak moves the predicted way across every
consecutive pair of settings beyond the noise (claims.compare_peaks), beside the paper's numbers
(``common.BREAK_EVEN_PAPER_VALUES``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from breakeven_utils.papers.common import BREAK_EVEN_PAPER_VALUES, compare_peaks_of, paper_value
from breakeven_utils.papers.conjectures.figures import claim_figure
from breakeven_utils.papers.conjectures.quotes import QUOTES
from breakeven_utils.papers.conjectures.settings import (
    PARAM_SIGN,
    PARAM_SYMBOL,
    QUANTITIES,
    WINDOW,
    paper_number,
    param_from_name,
)
from breakeven_utils.reporting.claims import UNTESTABLE, Claim, peaks_text, quoted

__all__ = ["claims", "skipped_claims", "FAMILY_SWEEPS"]


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


def claims(mx: pd.DataFrame, trajectories: pd.DataFrame, labels: dict | None = None,
           param_of: dict | None = None) -> list:
    """One claims.Claim per sweep and predicted ordering (``settings.PREDICTIONS``): does the
    peak move the predicted way across every consecutive pair of settings beyond the noise?
    The one peak rule, claims.compare_peaks (via common.compare_peaks_of), on the runs of
    ``trajectories`` (the tidy frame ``mx`` = ``analysis.setting_maxima`` was made from;
    diverged runs left out and named): the shared first measurement and, for batch-normalised
    nets, the initial transient are never a peak; a peak at the last measurement is a lower
    bound; raw and smoothed maxima must agree. ``labels``: {sweep: setting text (model, what
    varies, data set)}; ``param_of``: {sweep: varied parameter}, default from the name.
    """
    out = []
    for sw, g in mx.groupby("sweep", sort=False):
        param = (param_of or {}).get(sw) or param_from_name(sw)
        sym = PARAM_SYMBOL[param]
        g = g.sort_values("value")
        trans = bool(g["after_transient"].any()) if "after_transient" in g else False
        window = int(g["window"].iloc[0]) if "window" in g else WINDOW
        where = (f"peak after the shared first measurement{' and the initial transient' if trans else ''}, "
                 f"raw and smoothed (window {window})")
        setting = f"{labels[sw]}; {where}" if sw in (labels or {}) else f"{sw}, vary {sym}; {where}"
        d = trajectories[trajectories["sweep"] == sw]
        ok = d[~d.groupby(["value", "seed"])["status"].transform(lambda st: (st == "diverged").any())]
        diverged = [f"{sym}={float(v):g}" for v, n in zip(g["value"], g["n_seeds"]) if n == 0]
        for q, (col, conj, sign, name) in QUANTITIES.items():
            word = "smaller" if sign * PARAM_SIGN[param] < 0 else "larger"
            claim = f"Conjecture {conj}: the maximum {name} is {word} for a larger {sym}"
            finite = np.isfinite(g[q].to_numpy(float))
            if not finite.any():
                verdict, reason, ours = UNTESTABLE, "not measured at this profile", "not measured"
            else:
                o = compare_peaks_of(ok, col, sign * PARAM_SIGN[param], "value", symbol=sym, window=window,
                                     after_transient=trans)
                verdict = o.verdict
                ours = "; ".join([peaks_text(o.peaks or {}, sym)] + [f"{x}: diverged" for x in diverged])
                need = ("to decide: several seeds (their spread as the margin; the paper profile runs 5)"
                        if verdict == UNTESTABLE and "within noise" in o.reason
                        and bool((g["n_seeds"] <= 1).all()) else "")
                parts = (o.reason, f"excluded (diverged): {', '.join(diverged)}" if diverged else "",
                         f"margin: {o.margin}" if o.margin else "", need)
                reason = "; ".join(p for p in parts if p)
            section, figure, ffile = claim_figure(sw, q)
            out.append(Claim("break_even", section, figure, claim, setting, _paper(sw, q, g["value"]), ours,
                             verdict, reason, ffile))
    return quoted(out, QUOTES)


#: the sweeps of each family of notebook 2 (``runs.sweeps``), for the rows of a family a profile skips
FAMILY_SWEEPS = {"simple_cnn": ("simplecnn_eta", "simplecnn_S"), "resnet32": ("resnet32_eta", "resnet32_S"),
                 "mlp": ("mlp_eta",), "momentum": ("momentum_beta", "momentum_eta"), "decay": ("decay_eta",)}


def skipped_claims(skipped: dict) -> list:
    """"Not testable at this scale" rows, with the reason, for every prediction of every sweep
    of a family the profile does not run (``runs.skipped``; e.g. ResNet-32 at ``cpu``): its
    claims stay in the ledger instead of vanishing."""
    out = []
    for fam, why in skipped.items():
        for sw in FAMILY_SWEEPS.get(fam, ()):
            param = param_from_name(sw)
            sym = PARAM_SYMBOL[param]
            for q, (_col, conj, sign, name) in QUANTITIES.items():
                word = "smaller" if sign * PARAM_SIGN[param] < 0 else "larger"
                section, figure, ffile = claim_figure(sw, q)
                out.append(Claim("break_even", section, figure,
                                 f"Conjecture {conj}: the maximum {name} is {word} for a larger {sym}",
                                 f"{sw}, vary {sym}: not run at this profile", _paper(sw, q, []), "not run",
                                 UNTESTABLE, f"not run at this profile: {why}; runs at the paper profile",
                                 ""))
    return quoted(out, QUOTES)
