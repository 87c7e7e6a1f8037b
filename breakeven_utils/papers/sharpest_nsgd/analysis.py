"""The sharpest-directions paper: what notebook 5 reads off its stored runs: Tables 1
and 3 (:func:`nsgd_table`), the eigenvector-refresh logs (:func:`rule_log`,
:func:`hvp_per_refresh`), the Fig. 4 probe averages (:func:`probe_summary`) and where a
schedule first lowers the learning rate (:func:`first_decrease`, Fig. 15)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from breakeven_utils.papers.sharpest_nsgd.settings import PAPER_VALUES
from breakeven_utils.papers.sharpest_nsgd.sharpest import ALPHAS
from breakeven_utils.recorder.schedules import Schedule
from breakeven_utils.reporting import claims as cl

__all__ = ["rule_log", "hvp_per_refresh", "table_row", "nsgd_table", "series", "pd_num", "probe_summary",
           "first_decrease"]


def rule_log(res) -> list[dict]:
    """The eigenvector-refresh log of a stored run (``[]`` for rules without one)."""
    return list(((res.info or {}).get("info") or {}).get("rule_log") or [])


def hvp_per_refresh(results) -> dict:
    """Mean HVPs per refresh, cold (first) vs warm-started, over the runs' refresh logs."""
    cold, warm = [], []
    for res in results:
        for e in rule_log(res):
            (warm if e["warm"] else cold).append(e["n_hvp"])
    f = (lambda v: float(np.mean(v)) if v else float("nan"))
    return {"cold_mean": f(cold), "cold_n": len(cold), "warm_mean": f(warm), "warm_n": len(warm)}


def table_row(res, n_last: int = 10) -> dict:
    """One row of Table 1/3 from a run measured once per epoch: ||H||_F at the best
    validation epoch / mean of the last ``n_last`` epochs, test accuracy at the best
    validation epoch, validation accuracy at the last epoch, mean training loss of the
    last ``n_last`` epochs, distance from initialisation and mean spectral norm of the
    weight matrices at the best validation epoch."""
    m = res.metrics.sort_values("iteration")
    m = m[m["epoch"] > 0]
    row = {"status": res.status, "epochs": float(m["epoch"].max()) if len(m) else 0.0}
    if m.empty or m["val_acc"].isna().all():
        return {**row, "frob_best": np.nan, "frob_last": np.nan, "test_acc": np.nan, "val_acc_last": np.nan,
                "loss_last": np.nan, "dist": np.nan, "rho_W": np.nan, "best_epoch": np.nan}
    b = m.loc[m["val_acc"].idxmax()]
    last = m.tail(n_last)
    return {**row, "best_epoch": float(b["epoch"]), "frob_best": float(b["frob_H"]),
            "frob_last": float(last["frob_H"].mean()), "test_acc": float(b["test_acc"]),
            "val_acc_last": float(m["val_acc"].iloc[-1]), "loss_last": float(last["train_loss"].mean()),
            "dist": float(b["dist_init"]), "rho_W": float(b["rho_W"])}


def nsgd_table(results: dict, paper_key: str | None = None, n_last: int = 10):
    """Table 1/3 as a DataFrame, one row per label ('nsgd <gamma>' / 'sgd <eta>') with the
    paper's numbers beside ours (``paper_*`` columns) where ``paper_key`` names them."""
    paper = PAPER_VALUES.get(paper_key, ({}, ""))[0] if paper_key else {}
    rows = []
    for label, res in results.items():
        r = {"run": label, **table_row(res, n_last)}
        p = paper.get(label)
        if p:
            r.update(paper_frob=p[0], paper_test_acc=p[1], paper_val_acc_50=p[2], paper_loss=p[3],
                     paper_dist=p[4], paper_rho_W=p[5])
        rows.append(r)
    return pd.DataFrame(rows)


def series(m, col):
    """(epochs, values) of a metric column, in iteration order (non-numbers as NaN)."""
    m = m.sort_values("iteration")
    return m["epoch"].to_numpy(float), pd_num(m[col])


def pd_num(s) -> np.ndarray:
    """A column as a float array, non-numbers as NaN."""
    return pd.to_numeric(s, errors="coerce").to_numpy(float)


def probe_summary(metrics, from_epoch: float) -> dict:
    """Averages of the Fig. 4 probes over the measurements at epoch >= ``from_epoch``
    (the paper averages k_min over the last 100 iterations): k_min(1%), k_min(10%)
    (mean over the probes where the grid reached that change, and how many did), and
    the alpha experiment's mean relative change with its standard error."""
    m = metrics[metrics["epoch"] >= from_epoch]
    out = {"n_probes": int(len(m)), "from_epoch": float(from_epoch)}
    for c in ("kmin1_e1", "kmin10_e1"):
        v = pd_num(m[c]) if c in m else np.array([])
        out[c] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
        out[c + "_found"] = int(np.isfinite(v).sum())
    for a in ALPHAS:
        c = f"alpha_{a:g}"
        mean, se, n = cl.mean_se(pd_num(m[c]) if c in m else [])
        out[c], out[c + "_se"] = mean, se
    return out


def first_decrease(config, bpe: int, total: int) -> int | None:
    """The first iteration t < ``total`` at which the scheduled learning rate is lower
    than at t - 1 (step: the first milestone's first iteration; one cycle: just past
    the peak); None if it never decreases (constant)."""
    sched = Schedule(config, bpe)
    prev = sched(0)
    for t in range(1, total):
        cur = sched(t)
        if cur < prev:
            return t
        prev = cur
    return None
