"""A Walk with SGD: what notebook 4 reads off its stored runs.

Per interpolated step (:func:`steps_of`, :func:`step_table`), per epoch (Table 1 and 2:
:func:`epoch_summary`), per experiment (Fig. 4 :func:`cosine_summary`, Fig. 5
:func:`noise_summary`, Fig. 6 :func:`schedule_frame` and :func:`schedule_summary`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from breakeven_utils.papers.walk.measures import ALPHAS
from breakeven_utils.reporting.claims import mean_se

__all__ = ["cosine_summary", "noise_summary", "schedule_frame", "steps_of", "batches_per_step_epoch",
           "step_table", "epoch_summary", "schedule_summary", "mean_se"]


def cosine_summary(results: dict, rs: list, transient: int, block: int = 20) -> pd.DataFrame:
    """Fig. 4: per cosine run, the mean cos(g_{t-1}, g_t) after ``transient`` steps and its
    standard error from means of blocks of ``block`` consecutive steps (the cosines of
    neighbouring steps are correlated)."""
    rows = []
    for r in rs:
        if r.experiment != "cosine" or r.name not in results:
            continue
        m = results[r.name].metrics
        c = m.loc[m["walk_step"] >= transient, "step_cos"].dropna().to_numpy(float) \
            if "step_cos" in m else np.array([])
        nb = len(c) // block
        blocks = c[:nb * block].reshape(nb, block).mean(1) if nb else np.array([])
        mean, se, n = mean_se(blocks)
        rows.append(dict(name=r.name, varied=r.meta["varied"], lr=r.meta["lr"],
                         batch_size=r.meta["batch_size"], cos=float(np.mean(c)) if len(c) else math.nan,
                         cos_se=se, n_steps=len(c), status=results[r.name].status))
    return pd.DataFrame(rows)


def noise_summary(results: dict, rs: list) -> pd.DataFrame:
    """Fig. 5: per noise-experiment run, the final training loss (whole training set),
    validation accuracy, parameter norm and distance from theta_0, sigma^2 and v_max, and
    the share of the training loss's whole decrease that falls in the last fifth of the steps
    (saturation: a loss heading to zero keeps a constant relative rate, so its fall relative
    to its current value never settles, while its share of the decrease does)."""
    rows = []
    for r in rs:
        if r.experiment != "noise" or r.name not in results:
            continue
        res = results[r.name]
        m = res.metrics.dropna(subset=["train_loss"])
        last = m.iloc[-1]
        at80 = m[m["iteration"] <= 0.8 * last["iteration"]].iloc[-1]
        info = (res.info.get("info") or {})
        rows.append(dict(name=r.name, method=r.meta["method"], factor=r.meta["factor"],
                         seed=r.meta.get("seed", r.config.seed),
                         status=res.status, iteration=int(last["iteration"]),
                         train_loss=float(last["train_loss"]), val_acc=float(last["val_acc"]),
                         param_norm=float(last["param_norm"]), dist_init=float(last["dist_init"]),
                         last_fifth_share_of_drop=float((at80["train_loss"] - last["train_loss"])
                                                        / (m["train_loss"].iloc[0] - last["train_loss"])),
                         sigma2=info.get("sigma2", math.nan), v_max=info.get("v_max", math.nan)))
    return pd.DataFrame(rows)


def schedule_frame(results: dict, rs: list) -> pd.DataFrame:
    """Per-epoch rows of the schedule runs with ``schedule``, ``lr``, ``seed``, ``key``."""
    frames = []
    for r in rs:
        if r.experiment == "schedules" and r.name in results:
            m = results[r.name].metrics.copy()
            m["schedule"], m["lr"], m["seed"], m["key"] = (r.meta["schedule"], r.meta["lr"],
                                                          r.meta["seed"], r.config.key())
            frames.append(m)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def steps_of(res) -> pd.DataFrame:
    """Per interpolated step of a stored run: ``step`` t (theta_t -> theta_{t+1}), its
    1-based ``epoch``, the 11 losses (``loss_t``, ``loss_t1``: its two ends), barrier, height,
    floor, cos(g_{t-1}, g_t) and
    ||theta_{t+1} - theta_0||."""
    m = res.metrics
    bpe = batches_per_step_epoch(res)
    arr = res.arrays
    L = np.asarray(arr.get("walk_losses", np.zeros((0, len(ALPHAS)))), dtype=float)
    it = np.asarray(arr.get("walk_losses_iteration", []), dtype=int)
    by_it = m.set_index("iteration")
    rows = []
    for i, t1 in enumerate(it):
        r = by_it.loc[t1]
        rows.append(dict(step=int(t1) - 1, epoch=(int(t1) - 1) // bpe + 1, losses=L[i],
                         loss_t=float(L[i][0]), loss_t1=float(L[i][-1]),
                         barrier=r.get("barrier", np.nan), height=r.get("height", np.nan),
                         floor_alpha=r.get("floor_alpha", np.nan),
                         floor_loss=r.get("floor_loss", np.nan), dist=r.get("dist_init", np.nan)))
    # its columns even when no step was interpolated (a run that ended before its stretch)
    df = pd.DataFrame(rows, columns=["step", "epoch", "losses", "loss_t", "loss_t1", "barrier", "height",
                                     "floor_alpha", "floor_loss", "dist"])
    cos = m.dropna(subset=["step_cos"]) if "step_cos" in m else m.iloc[:0]
    cmap = dict(zip(cos["walk_step"].astype(int), cos["step_cos"])) if len(cos) else {}
    df["cos"] = df["step"].map(cmap) if len(df) else pd.Series(dtype=float)
    return df


def batches_per_step_epoch(res) -> int:
    c = res.config
    if c.full_batch:
        return 1
    return int(c.n_train) // int(c.batch_size)


def step_table(res) -> pd.DataFrame:
    """Interpolated steps of a run without the loss arrays (for tables)."""
    df = steps_of(res)
    return df.drop(columns=["losses"]) if len(df) else df


def epoch_summary(res) -> pd.DataFrame:
    """Table 1 and 2 per interpolated epoch: steps, barriers crossed, mean height (+ SE),
    fraction of steps whose valley floor lies strictly inside (0 < alpha_min < 1), the mean
    training loss at the steps' start; complete epochs only."""
    df = step_table(res)
    bpe = batches_per_step_epoch(res)
    rows = []
    for e, g in (df.groupby("epoch") if len(df) else []):
        if len(g) < bpe:
            continue
        h, se, n = mean_se(g["height"])
        fin = g["barrier"].dropna()
        inside = g["floor_alpha"].dropna()
        loss = float(g["loss_t"].mean()) if "loss_t" in g else math.nan
        rows.append(dict(epoch=int(e), steps=len(g), barriers=int(fin.sum()), loss=loss,
                         height=h, height_se=se, interior_floor=float(((inside > 0) & (inside < 1)).mean())
                         if len(inside) else math.nan, n_diverged=int(g["barrier"].isna().sum())))
    # its columns even without a complete interpolated epoch (a run shorter than one)
    return pd.DataFrame(rows, columns=["epoch", "steps", "barriers", "loss", "height", "height_se",
                                       "interior_floor", "n_diverged"])


def schedule_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (schedule, lr): final validation/test accuracy mean and SE over seeds; the
    selected lr per schedule is the one of best mean final validation accuracy."""
    last = df.sort_values("iteration").groupby("key").tail(1)
    rows = []
    for (kind, lr), g in last.groupby(["schedule", "lr"]):
        va, va_se, n = mean_se(g["val_acc"])
        te, te_se, _ = mean_se(g["test_acc"])
        rows.append(dict(schedule=kind, lr=lr, n_seeds=n, val_acc=va, val_se=va_se, test_acc=te,
                         test_se=te_se))
    t = pd.DataFrame(rows)
    if len(t):
        best = t.loc[t.groupby("schedule")["val_acc"].idxmax()]
        t["selected"] = t.index.isin(best.index)
    return t
