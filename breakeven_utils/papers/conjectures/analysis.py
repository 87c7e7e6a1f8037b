"""Notebook 2's data table (break-even paper Sec. 4.2, App. E-G): per sweep and setting the
smoothed maxima of lambda_K^1, lambda_H^1, lambda_K^*/lambda_K^1 and Tr(K) with their standard
errors, from the tidy table of ``store.sweeps.sweep`` (``common.tidy``) with the columns
``sweep``, ``value``, ``seed``, ``status``, ``train_acc``, ``lambda_K_1`` (+ ``lambda_K_1_se``),
``lambda_K_ratio``, ``trace_K`` (+ ``trace_K_se``), ``lambda_H_1``. Batch-normalised networks
(Sec. 4.3) have their maxima taken after the initial transient."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from breakeven_utils.papers.common import max_with_se
from breakeven_utils.papers.conjectures.settings import QUANTITIES, WINDOW
from breakeven_utils.reporting.claims import smooth, transient_end

__all__ = ["batch_normalised", "setting_maxima"]

#: models with batch normalisation by default: their maxima are taken after the initial
#: transient (break-even paper Sec. 4.3: lambda_K^1 starts high, then decays, then grows)
_BN_DEFAULT = {"resnet32": True}


def batch_normalised(model: str, model_kwargs=None) -> bool:
    """Whether a run's network has batch normalisation (``bn`` of its model_kwargs; ResNet-32
    has it by default). ``model_kwargs``: a dict or the JSON string of a sweep table."""
    if isinstance(model_kwargs, str):
        model_kwargs = json.loads(model_kwargs or "{}")
    return bool((model_kwargs or {}).get("bn", _BN_DEFAULT.get(str(model), False)))


def _transient_sweeps(df: pd.DataFrame) -> set:
    if "model" not in df:
        return set()
    kw = df["model_kwargs"] if "model_kwargs" in df else pd.Series([None] * len(df), index=df.index)
    bn = [batch_normalised(m, k) for m, k in zip(df["model"], kw)]
    return set(df.loc[bn, "sweep"])


def setting_maxima(df: pd.DataFrame, window: int = WINDOW, after_transient=None) -> pd.DataFrame:
    """Per (sweep, value), sweeps in order of appearance and values ascending: for each
    quantity of ``settings.QUANTITIES`` the seed mean of the maxima of the smoothed curve
    (``max_<q>``; moving average over ``window`` measurements, claims.smoothed_max), its
    standard error ``max_<q>_se`` and its kind ``max_<q>_se_kind`` (common.max_with_se:
    seed spread, else the bootstrap SEs of the K metric, else none), the seed mean of the raw
    maxima ``raw_max_<q>``, whether every seed peaked at its first measurement considered
    (``max_<q>_at_start``: no growth within the budget), the number of seeds, and the training
    accuracy at the smoothed peak of lambda_K^1. Diverged runs are counted in ``n_diverged`` and
    left out. ``after_transient``: sweep names whose maxima are taken after the initial
    transient (claims.transient_end); default: the sweeps of batch-normalised networks.
    """
    trans = _transient_sweeps(df) if after_transient is None else set(after_transient)
    rows = []
    for sw in dict.fromkeys(df["sweep"]):
        d = df[df["sweep"] == sw]
        ok = d[~d.groupby(["value", "seed"])["status"].transform(lambda s: (s == "diverged").any())]
        stats = {q: max_with_se(ok, c, by="value", window=window, after_transient=sw in trans)
                 for q, (c, *_rest) in QUANTITIES.items()} if len(ok) else {}
        for v, g in d.groupby("value", sort=True):
            n = g["seed"].nunique()
            div = int(g.groupby("seed")["status"].apply(lambda s: (s == "diverged").any()).sum())
            row = dict(sweep=sw, value=v, n_seeds=n - div, n_diverged=div, n_runs=n, window=window,
                       after_transient=sw in trans)
            for q in QUANTITIES:
                st = stats[q].loc[v] if q in stats and v in stats[q].index else None
                row[q] = st["max"] if st is not None else np.nan
                row[f"{q}_se"] = st["se"] if st is not None else np.nan
                row[f"{q}_se_kind"] = st["se_kind"] if st is not None else ""
                row[f"raw_{q}"] = st["raw_max"] if st is not None else np.nan
                row[f"{q}_at_start"] = bool(st["at_start"]) if st is not None else False
            acc = []
            for _, r in ok[ok["value"] == v].sort_values("iteration").groupby("seed"):
                k = pd.to_numeric(r["lambda_K_1"], errors="coerce").to_numpy(float)
                sm = smooth(k, window)
                if np.isfinite(sm).any():
                    start = transient_end(k, window) if sw in trans else 0
                    i = start + int(np.nanargmax(sm[start:])) if np.isfinite(sm[start:]).any() else None
                    acc.append(float(r["train_acc"].iloc[i]) if i is not None else np.nan)
            row["train_acc_at_max_lambda_K_1"] = float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
