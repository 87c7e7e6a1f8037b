"""Break-even paper, Sec. 4.3 and App. H: BatchNorm needs a high learning rate (notebook 3).

SimpleCNN-BN (BatchNorm after every layer but the last) and plain SimpleCNN on
CIFAR-10, Keras initialisation, SGD. Sweeps: eta in {0.001, 0.01, 0.1, 1.0} for
SimpleCNN-BN and {0.01, 1.0} for SimpleCNN at S = 128 (Fig. 7); S in {10, 32,
128, 512} for SimpleCNN-BN at eta = 0.01 (App. H, Fig. 26). Along every run:
||g||/||g_5|| (the step's mini-batch gradient against its projection on the top-5
eigenvectors of the Gram estimate of K, App. C, L = 25, M = 128), lambda_K^1,
lambda_K^*/lambda_K^1, Tr(K), lambda_H^1 (SimpleCNN-BN), ||gamma|| of the last BN
layer, training and validation accuracy.

BatchNorm mode: K and H are measured with batch statistics (train mode), as the
paper's Keras code computed them, with running statistics frozen during the
measurement (``curvature.measurement_mode``); accuracies use running statistics
(eval mode); ||g||/||g_5|| uses the gradient of the SGD step itself.

``settings`` / ``sweeps`` / ``run_configs`` build and validate every run without
training; ``maxima``, ``early_changes`` and ``claims`` compute the verdict table
from the tidy table of ``records.sweep`` (columns ``sweep``, ``value``, ``seed``,
``status``, ``iteration`` and the metric columns), so they can be tested on
tables made by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import claims as cl
from .break_even import solver_bound
from .conjectures import Sweep, tidy

__all__ = [
    "settings", "check_settings", "has_batchnorm", "check_config", "measure_at", "sweeps",
    "run_configs", "tidy", "run_table", "legend_labels", "smoothed_stats", "maxima",
    "early_changes", "claims", "panel", "palette_for", "figure", "comparison",
    "FIGURES", "PAPER_VALUES", "BN_MODES_TEXT",
    "G5_READING",
]

BN_MODEL, PLAIN_MODEL = "simple_cnn_bn", "simple_cnn"
METRICS_BN = ("train", "val", "K", "g_over_g5", "gamma_norm", "lambda_H")
METRICS_PLAIN = ("train", "val", "K", "g_over_g5")
VERDICTS = cl.VERDICTS

#: written on every figure of notebook 3
BN_MODES_TEXT = ("BatchNorm: batch statistics (train mode, running statistics frozen) for K, H; "
                 "running statistics (eval mode) for accuracies; K's eigenvectors from the Gram "
                 "estimate (App. C)")

_G5_QUOTE = ("Sec. 4.3: \"First, the maximum and minimum values of ||g||/||g_5|| are 1.90 (1.37) "
             "and 2.02 (1.09), respectively.\"")
#: how the table reads the sentence above (README of the papers: two readings exist)
G5_READING = ("sentence read per setting: SimpleCNN-BN eta=0.001 max 1.90 (min 1.37), SimpleCNN eta=0.01 "
              "max 2.02 (min 1.09); the per-statistic reading gives SimpleCNN-BN a minimum above its maximum")

#: the notebook's figure files (without extension), by the paper's figure
FIGURES = {"fig7a": "fig7a_g5_lambda_h_lambda_k_eta", "fig7b": "fig7b_gamma_lambda_k_ratio_early_eta",
           "fig26a": "fig26a_g5_lambda_h_lambda_k_S", "fig26b": "fig26b_gamma_lambda_k_ratio_S",
           "acc": "accuracy_trace_k_all_runs", "sec43": "sec43_bn_small_eta_vs_plain"}

#: numbers the paper's text reports: key -> (value, the sentence it comes from)
PAPER_VALUES = {
    "g_over_g5_max_bn_0.001": (1.90, _G5_QUOTE),
    "g_over_g5_min_bn_0.001": (1.37, _G5_QUOTE),
    "g_over_g5_max_plain_0.01": (2.02, _G5_QUOTE),
    "g_over_g5_min_plain_0.01": (1.09, _G5_QUOTE),
    "lambda_K_1_max_bn_0.001": (12.05, "Sec. 4.3: \"Second, the maximum and minimum values of "
                                       "lambda_K^1 are 12.05 and 3.30, respectively.\""),
    "lambda_K_1_max_plain_0.01": (3.30, "Sec. 4.3 (same sentence); Sec. 4.2 gives 3.30 for SimpleCNN "
                                        "at eta=0.01"),
    "lambda_K_ratio_max_bn_0.001": (0.343, "Sec. 4.3: \"Finally, lambda_K^*/lambda_K^1 reaches 0.343 "
                                           "in the first setting, and 0.24 in the second setting.\""),
    "lambda_K_ratio_max_plain_0.01": (0.24, "Sec. 4.3 (same sentence)"),
}


# ----------------------------------------------------------------------------- settings and runs


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``batchnorm`` section and ``overrides``,
    validated by :func:`check_settings` (bad input fails here, before any training)."""
    from .profiles import get_profile

    s = get_profile(profile, section="batchnorm", **overrides)
    check_settings(s)
    return s


def _numbers(s, key, kind, positive=True):
    v = s.get(key)
    if v is None or isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
        raise ValueError(f"{key} must be a list of {kind}s, got {v!r}")
    if len(v) == 0:
        raise ValueError(f"{key} is empty: give at least one {kind}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) \
                or not math.isfinite(x) or (positive and x <= 0):
            raise ValueError(f"{key} must hold positive finite numbers, got {x!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"{key} holds duplicates: {list(v)}")
    return list(v)


def check_settings(s: dict) -> None:
    """Raise ValueError for settings no run could use: an empty eta or S list, a batch
    size above the training set, K's L*M above it, ||g||/||g_5|| with L < 6."""
    _numbers(s, "bn_lrs", "learning rate")
    _numbers(s, "plain_lrs", "learning rate")
    sizes = _numbers(s, "batch_sizes", "batch size")
    for S in sizes:
        if int(S) != S:
            raise ValueError(f"batch sizes must be integers, got {S!r}")
    n = s["n_train"]
    for S in sizes + [s["batch_size"]]:
        if n is not None and S > n:
            raise ValueError(f"batch size S={S} is larger than the training set (n_train={n})")
    if not (isinstance(s["lr_for_S"], (int, float)) and s["lr_for_S"] > 0):
        raise ValueError(f"lr_for_S must be a positive number, got {s['lr_for_S']!r}")
    if s["K_L"] < 6:
        raise ValueError(f"||g||/||g_5|| needs K_L >= 6 (5 non-zero eigenvectors of K), got {s['K_L']}")
    if n is not None and s["K_L"] * s["K_M"] > n:
        raise ValueError(f"K needs K_L*K_M = {s['K_L']}*{s['K_M']} <= n_train = {n}")
    if int(s["window"]) != s["window"] or s["window"] < 1:
        raise ValueError(f"window must be a positive integer, got {s['window']!r}")


def has_batchnorm(model: str, model_kwargs: dict | None = None) -> bool:
    """Does the registered ``model`` hold a BatchNorm layer with a scale gamma? (Builds
    it once on the CPU, without data.)"""
    from torch import nn

    from .models import build_model

    m = build_model(model, seed=0, **dict(model_kwargs or {}))
    return any(isinstance(x, nn.modules.batchnorm._BatchNorm) and x.weight is not None
               for x in m.modules())


def check_config(c) -> None:
    """Notebook 3's checks on a RunConfig beyond ``RunConfig.validate``: ||gamma||
    needs a model with BatchNorm, ||g||/||g_5|| needs K (its eigenvectors)."""
    if "gamma_norm" in c.metrics and not has_batchnorm(c.model, c.model_kwargs):
        raise ValueError(f"||gamma|| (metric 'gamma_norm') needs a model with BatchNorm layers; "
                         f"model {c.model!r} has none (SimpleCNN-BN is {BN_MODEL!r})")
    if "g_over_g5" in c.metrics and "K" not in c.metrics:
        raise ValueError("||g||/||g_5|| (metric 'g_over_g5') needs metric 'K' (the top-5 eigenvectors "
                         "of K's Gram estimate)")


def measure_at(s: dict, batch_size: int) -> tuple[int, ...] | None:
    """Measurement iterations: ``measure_early`` (dense, early: Fig. 7b's iteration axis)
    and every epoch end up to ``max_epochs``; None when the profile uses the shared
    ``measure_every``/``measure_dense_until`` schedule instead."""
    early = s.get("measure_early")
    if early is None:
        return None
    bpe = s["n_train"] // int(batch_size)
    total = bpe * s["max_epochs"]
    return tuple(sorted({int(t) for t in early if t <= total}
                        | {e * bpe for e in range(1, s["max_epochs"] + 1)}))


def _config(s: dict, *, model: str, lr: float, batch_size: int, seed: int, metrics):
    from .train import RunConfig

    c = RunConfig(
        dataset=s["dataset"], n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"],
        n_measure=s["n_measure"], data_seed=0, normalize="standard", augment=False,
        model=model, model_kwargs=dict(s.get("model_kwargs", {})), optimizer="sgd",
        lr=float(lr), momentum=0.0, batch_size=int(batch_size), seed=int(seed),
        max_epochs=int(s["max_epochs"]), measure_every=int(s["measure_every"]),
        measure_dense_until=s["measure_dense_until"], measure_every_epochs=1,
        measure_at=measure_at(s, batch_size), metrics=tuple(metrics), hessian_k=1,
        hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"], hessian_bn_mode="train",
        K_L=int(s["K_L"]), K_M=int(s["K_M"]), K_bn_mode="train")
    check_config(c)
    return c


def sweeps(s: dict) -> list[Sweep]:
    """The three sweeps: ``bn_eta`` and ``plain_eta`` (Fig. 7, S = ``batch_size``) and
    ``bn_S`` (Fig. 26, eta = ``lr_for_S``); K with M = ``K_M`` in all of them. The S sweep's
    run at S = ``batch_size``, eta = ``lr_for_S`` is the eta sweep's run (one run shared by
    two sweeps). lambda_H^1 where ``lambda_H`` (SimpleCNN-BN over eta), ``lambda_H_S``
    (over S) and ``lambda_H_plain`` (SimpleCNN) say so."""
    check_settings(s)
    seeds = s["seeds"]
    no_h = tuple(m for m in METRICS_BN if m != "lambda_H")
    bn_metrics = METRICS_BN if s.get("lambda_H", True) else no_h
    s_metrics = METRICS_BN if s.get("lambda_H_S", True) else no_h
    plain_metrics = METRICS_PLAIN + (("lambda_H",) if s.get("lambda_H_plain", False) else ())
    out, shared = [], {}
    for name, label, model, metrics, lrs in (
            ("bn_eta", f"SimpleCNN-BN, vary eta (S={s['batch_size']})", BN_MODEL, bn_metrics, s["bn_lrs"]),
            ("plain_eta", f"SimpleCNN, vary eta (S={s['batch_size']})", PLAIN_MODEL, plain_metrics,
             s["plain_lrs"])):
        cfgs, vals = [], []
        for lr in lrs:
            for seed in seeds:
                c = _config(s, model=model, lr=lr, batch_size=s["batch_size"], seed=seed, metrics=metrics)
                cfgs.append(c)
                vals.append(float(lr))
                if model == BN_MODEL:
                    shared[(float(lr), seed)] = c
        out.append(Sweep(name, label, "lr", "Fig. 7", cfgs, vals, lambda_H="lambda_H" in metrics,
                         dataset=s["dataset"]))
    cfgs, vals = [], []
    for S in s["batch_sizes"]:
        for seed in seeds:
            c = shared.get((float(s["lr_for_S"]), seed)) if int(S) == int(s["batch_size"]) else None
            cfgs.append(c or _config(s, model=BN_MODEL, lr=s["lr_for_S"], batch_size=S, seed=seed,
                                     metrics=s_metrics))
            vals.append(int(S))
    out.append(Sweep("bn_S", f"SimpleCNN-BN, vary S (eta={s['lr_for_S']:g})", "batch_size", "Fig. 26",
                     cfgs, vals, lambda_H="lambda_H" in s_metrics, dataset=s["dataset"]))
    return out


def run_configs(profile: str, **overrides) -> list:
    """Every distinct run notebook 3 launches at ``profile`` (validated, not trained)."""
    unique = {}
    for sw in sweeps(settings(profile, **overrides)):
        for c in sw.configs:
            unique.setdefault(c.key(), c)
    return list(unique.values())


# ----------------------------------------------------------------------------- tables


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by sweep (in order of appearance), then value and seed."""
    order = {sw: i for i, sw in enumerate(dict.fromkeys(df["sweep"]))}
    return df.assign(_o=df["sweep"].map(order)).sort_values(["_o", "value", "seed"], kind="stable")


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep, value, seed): status, iteration of divergence, measurements,
    final training/validation accuracy."""
    rows = []
    for (sw, v, seed), g in _ordered(df).groupby(["sweep", "value", "seed"], sort=False):
        g = g.sort_values("iteration")
        div = g["diverged_at"].dropna()
        rows.append(dict(sweep=sw, value=v, seed=seed, status=g["status"].iloc[0],
                         diverged_at=int(div.iloc[0]) if len(div) else None,
                         iterations=int(g["iteration"].max()), epochs=float(g["epoch"].max()),
                         measurements=len(g), final_train_acc=float(g["train_acc"].iloc[-1]),
                         final_val_acc=float(g["val_acc"].iloc[-1])))
    return pd.DataFrame(rows)


def legend_labels(df: pd.DataFrame, symbol: str = "η") -> dict:
    """{value: legend text} for one sweep's rows, e.g. 'η = 1 (diverged at iteration 7)'."""
    out = {}
    for v, g in df.groupby("value", sort=True):
        text = f"{symbol} = {float(v):g}"
        div = g.loc[g["status"] == "diverged", "diverged_at"].dropna()
        if len(div):
            its = ", ".join(str(int(i)) for i in sorted(set(div)))
            text += f" (diverged at iteration {its})"
        out[v] = text
    return out


def smoothed_stats(iterations, values, window: int, after_transient: bool = False, ses=None) -> dict:
    """Raw and moving-average-smoothed maximum/minimum of one trajectory
    (``claims.smoothed_max``; with ``after_transient`` the maximum is taken after the
    initial decay, ``claims.transient_end``: BN networks start with a high lambda_K^1,
    Sec. 4.3). ``ses``: per-measurement standard errors (e.g. a bootstrap over K's L
    mini-batch gradients) -> ``se`` of the smoothed maximum, else NaN. NaNs for an
    empty trajectory."""
    it = np.asarray(iterations, dtype=float)
    v = np.asarray(values, dtype=float)
    e = np.full(v.shape, np.nan) if ses is None else np.asarray(ses, dtype=float)
    ok = np.isfinite(v)
    it, v, e = it[ok], v[ok], e[ok]
    if v.size == 0:
        return dict(raw_max=np.nan, raw_min=np.nan, max=np.nan, min=np.nan, argmax=np.nan, se=np.nan,
                    start=np.nan, n=0, transient_end=np.nan)
    order = np.argsort(it, kind="stable")
    it, v, e = it[order], v[order], e[order]
    sm = cl.smooth(v, window)
    mx = cl.smoothed_max(v, window, after_transient=after_transient, ses=e)
    return dict(raw_max=float(v.max()), raw_min=float(v.min()), max=mx.value, min=float(sm.min()),
                argmax=float(it[mx.index]), se=mx.se, start=float(sm[0]), n=int(v.size),
                transient_end=float(it[mx.start]))


_MAX_Q = {"lambda_K_1": True, "lambda_K_ratio": False, "trace_K": False, "lambda_H_1": True,
          "g_over_g5": False, "gamma_norm": False}  # column -> maximum after the initial transient


def maxima(df: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per (sweep, value): seed-mean smoothed maxima (``max_<q>``; lambda_K^1 and
    lambda_H^1 after the initial transient) and minima, raw maxima beside them, and a
    standard error per maximum ``se_<q>``: the seed spread with >= 2 seeds
    (``claims.mean_se``), else from per-measurement standard errors in a column
    ``<q>_se`` where the recorder writes one (bootstrap over K's mini-batch gradients),
    else for lambda_H^1 the Lanczos stopping bound (``break_even.solver_bound``, as notebooks
    1-2), else NaN (the verdicts then use ``claims.FALLBACK_RTOL``). Diverged runs are counted
    and left out."""
    rows = []
    for (sw, v), g in _ordered(df).groupby(["sweep", "value"], sort=False):
        per = {q: [] for q in _MAX_Q if q in g}
        n_div = 0
        for _, r in g.groupby("seed"):
            if (r["status"] == "diverged").any():
                n_div += 1
                continue
            for q in per:
                ses = r[f"{q}_se"] if f"{q}_se" in r else None
                per[q].append(smoothed_stats(r["iteration"], r[q], window, after_transient=_MAX_Q[q],
                                             ses=ses))
        row = dict(sweep=sw, value=v, n_seeds=len(next(iter(per.values()), [])), n_diverged=n_div)
        for q, st in per.items():
            for k in ("max", "raw_max", "min", "raw_min", "start", "argmax"):
                vals = [x[k] for x in st]
                row[f"{k}_{q}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            mean, se, n = cl.mean_se([x["max"] for x in st])
            if n < 2:
                ses = [x["se"] for x in st if np.isfinite(x["se"])]
                se = float(ses[0]) if ses else solver_bound(g, q, mean)[0]
            row[f"se_{q}"] = se
        rows.append(row)
    return pd.DataFrame(rows)


def early_changes(df: pd.DataFrame, q: str, until: int, window: int) -> pd.DataFrame:
    """Per (sweep, value): the smoothed ``q`` at the first measurement (``start``) and its
    minimum over the measurements with iteration <= ``until`` (``early_min``), seed
    means (diverged runs left out), their ratio, and standard errors of both (seed
    spread with >= 2 seeds, else from a ``<q>_se`` column, else NaN)."""
    rows = []
    for (sw, v), g in df.groupby(["sweep", "value"], sort=False):
        starts, mins, se_s, se_m = [], [], [], []
        for _, r in g.groupby("seed"):
            if (r["status"] == "diverged").any() or q not in r:
                continue
            r = r.sort_values("iteration")
            x = r[q].to_numpy(float)
            e = r[f"{q}_se"].to_numpy(float) if f"{q}_se" in r else np.full(x.shape, np.nan)
            ok = np.isfinite(x)
            it, x, e = r["iteration"].to_numpy(float)[ok], x[ok], e[ok]
            if x.size == 0:
                continue
            sm = cl.smooth(x, window)
            idx = np.flatnonzero(it <= until)
            k = int(idx[np.argmin(sm[idx])])
            starts.append(float(sm[0]))
            mins.append(float(sm[k]))
            se_s.append(_window_se(e, 0, window))
            se_m.append(_window_se(e, k, window))
        row = dict(sweep=sw, value=v, start=np.nan, early_min=np.nan, ratio=np.nan, se_start=np.nan,
                   se_min=np.nan)
        if starts:
            s0, m0 = float(np.mean(starts)), float(np.mean(mins))
            row.update(start=s0, early_min=m0, ratio=m0 / s0 if s0 != 0 else np.nan)
            for name, vals, ses in (("se_start", starts, se_s), ("se_min", mins, se_m)):
                _, se, n = cl.mean_se(vals)
                row[name] = se if n >= 2 else ses[0]
        rows.append(row)
    return pd.DataFrame(rows)


def _window_se(e, i, window):
    """SE of the centred moving average at index i from per-point SEs (claims.smooth's window)."""
    lo, hi = max(0, i - (window - 1) // 2), min(len(e), i + window // 2 + 1)
    w = e[lo:hi]
    return float(math.sqrt(np.sum(w ** 2)) / len(w)) if len(w) else np.nan


# ----------------------------------------------------------------------------- verdicts

def _compare(a, b, se_a, se_b, sign: int):
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
        for q, conj, sym, sign, after in (
                ("lambda_K_1", "1", "lambda_K^1", -1, True), ("lambda_H_1", "1", "lambda_H^1", -1, True),
                ("lambda_K_ratio", "2", "lambda_K^*/lambda_K^1", +1, False)):
            use, note = sorted(vals), ""
            if sw == "bn_S" and q == "lambda_K_ratio" and min(vals) <= 10:
                use = [v for v in use if v > min(vals)]
                note = f"; S={min(vals):g} left out (the paper's S=10 exception, tested in its own row)"
            n_finite = sum(np.isfinite(get(sw, v, f"max_{q}")) for v in use)
            ffile = FIGURES[("fig7a" if sw == "bn_eta" else "fig26a") if q != "lambda_K_ratio"
                            else ("fig7b" if sw == "bn_eta" else "fig26b")] + ".png"
            direction = "decreases" if sign * sign_param < 0 else "increases"
            claim = (f"Conj. {conj}: max {sym} of SimpleCNN-BN {direction} with {param}")
            setting = (f"{param} in {{{', '.join(f'{v:g}' for v in sorted(vals))}}}; max "
                       f"{'after the initial transient, ' if after else ''}{win}{note}")
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
            m = [get(sw, v, f"max_{q}") for v in use]
            se = [get(sw, v, f"se_{q}") for v in use]
            verdict, reason, _ = cl.ordering_verdict(use, m, se, sign * sign_param, symbol=param)
            ours = "; ".join(f"{param}={v:g}: {_fmt(a)} (raw {_fmt(get(sw, v, f'raw_max_{q}'))})"
                             for v, a in zip(use, m))
            out.append(_claim(sec, fig, claim, setting, paper, ours, verdict, reason, ffile))
    # BN at the smallest eta vs no BN at eta=0.01 (Sec. 4.3)
    p_lr = 0.01
    setting = f"SimpleCNN-BN eta={lo_bn:g} vs SimpleCNN eta={p_lr:g}, S={s['batch_size']}; {win}"
    for q, sym, sign, kp in (("lambda_K_1", "lambda_K^1", +1, "lambda_K_1_max"),
                             ("lambda_K_ratio", "lambda_K^*/lambda_K^1", +1, "lambda_K_ratio_max")):
        a, b = get("bn_eta", lo_bn, f"max_{q}"), get("plain_eta", p_lr, f"max_{q}")
        verdict, reason = _compare(a, b, get("bn_eta", lo_bn, f"se_{q}"), get("plain_eta", p_lr, f"se_{q}"),
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
    parts = [_compare(c, a_max, se_c, get("bn_eta", lo_bn, "se_g_over_g5"), +1),
             _compare(c, b_max, se_c, get("plain_eta", p_lr, "se_g_over_g5"), +1)]
    out.append(_claim("4.3", "Fig. 7a", f"max ||g||/||g_5|| of SimpleCNN-BN at eta={hi_bn:g} exceeds both "
                      f"SimpleCNN-BN at eta={lo_bn:g} and SimpleCNN at eta={p_lr:g}",
                      f"S={s['batch_size']}; {win}", "Fig. 7a (no number in text)",
                      f"{_fmt(c)} vs {_fmt(a_max)} and {_fmt(b_max)}", *_all(parts),
                      figure_file=FIGURES["sec43"] + ".png"))
    kk = [_compare(get("bn_eta", hi_bn, "max_lambda_K_1"), get("plain_eta", p_lr, "max_lambda_K_1"),
                   get("bn_eta", hi_bn, "se_lambda_K_1"), get("plain_eta", p_lr, "se_lambda_K_1"), -1),
          _compare(get("bn_eta", hi_bn, "max_lambda_K_ratio"), get("plain_eta", p_lr, "max_lambda_K_ratio"),
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
    return out


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
        decays = {}
        for v in lrs:
            if v not in k.index or not np.isfinite(k.loc[v, "ratio"]):
                decays[v] = None
                continue
            verdict_v, _ = _compare(k.loc[v, "start"], k.loc[v, "early_min"], k.loc[v, "se_start"],
                                    k.loc[v, "se_min"], +1)
            decays[v] = verdict_v == cl.HOLDS
        ours = "; ".join(f"eta={v:g}: start {_fmt(k.loc[v, 'start']) if v in k.index else 'n/a'}, "
                         f"early min {_fmt(k.loc[v, 'early_min']) if v in k.index else 'n/a'}" for v in lrs)
        if any(decays[v] is None for v in lrs):
            verdict, reason = cl.UNTESTABLE, "a run diverged or was not measured"
        elif all(decays[v] for v in lrs[1:]) and not decays[lrs[0]]:
            verdict, reason = cl.HOLDS, ""
        else:
            verdict = cl.FAILS
            reason = "decaying: " + (", ".join(f"{v:g}" for v in lrs if decays[v]) or "none")
    else:
        ours, verdict, reason = "not measured", cl.UNTESTABLE, "lambda_K^1 not measured"
    out.append(_claim("4.3", "Fig. 7b", "lambda_K^1 of SimpleCNN-BN starts high and decays for all but the "
                      "smallest eta", setting, "Fig. 7b (no number in text)", ours, verdict, reason,
                      FIGURES["fig7b"] + ".png"))
    return out


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
            parts.append(_compare(a, get("bn_S", S, f"max_{q}"), se_a, get("bn_S", S, f"se_{q}"), -1))
        ours.append(f"{sym}: " + ", ".join(f"S={S}: {_fmt(get('bn_S', S, f'max_{q}'))}" for S in sizes))
    return [_claim("App. H", "Fig. 26", f"S={S0} is the exception: its max ||g||/||g_5|| and max "
                   f"lambda_K^*/lambda_K^1 are smaller than for every larger S",
                   f"SimpleCNN-BN, eta={s['lr_for_S']:g}, S in {sizes}; {win}", "App. H (no number in text)",
                   "; ".join(ours), *_all(parts), figure_file=FIGURES["fig26a"] + ".png")]


def _key(v):
    return round(float(v), 12)


# ----------------------------------------------------------------------------- plotting


def comparison(df: pd.DataFrame, s: dict, plain_lr: float = 0.01) -> tuple[pd.DataFrame, dict]:
    """Sec. 4.3's comparison: the rows of SimpleCNN-BN at the smallest and the largest eta
    and of SimpleCNN at ``plain_lr``, with a ``curve`` column, and legend prefixes."""
    lo, hi = min(s["bn_lrs"]), max(s["bn_lrs"])
    parts = [df[(df["sweep"] == "bn_eta") & np.isclose(df["value"], lo)].assign(curve="bn_low"),
             df[(df["sweep"] == "plain_eta") & np.isclose(df["value"], plain_lr)].assign(curve="plain"),
             df[(df["sweep"] == "bn_eta") & np.isclose(df["value"], hi)].assign(curve="bn_high")]
    names = {"bn_low": "SimpleCNN-BN,", "plain": "SimpleCNN,", "bn_high": "SimpleCNN-BN,"}
    return pd.concat(parts, ignore_index=True), names



def palette_for(values, param: str) -> dict:
    """Colour per sweep value: the shared learning-rate colours (plotting.LR_COLORS) for
    eta, the colour cycle in ascending order for S."""
    import matplotlib.pyplot as plt

    from .plotting import lr_color

    vals = sorted(set(float(v) if param == "lr" else int(v) for v in values))
    if param == "lr":
        return {v: lr_color(v) for v in vals}
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {v: cycle[i % len(cycle)] for i, v in enumerate(vals)}


def panel(ax, d: pd.DataFrame, y: str, *, param: str = "lr", x: str = "epoch", window: int = 3,
          ylabel: str | None = None, xmax: float | None = None, logy: bool = False, title: str = "",
          hue: str = "value", names: dict | None = None):
    """One figure panel: ``y`` against ``x`` per sweep value (smoothed line over faint raw
    points, one line per seed), legend naming diverged runs and their iteration. ``hue``:
    another column to tell curves apart (e.g. 'curve'), ``names``: {hue value: legend
    prefix}, e.g. {'bn': 'SimpleCNN-BN,'}; colours then follow the hue's order."""
    from .plotting import SYMBOLS, curves

    ylabel = ylabel if ylabel is not None else SYMBOLS.get(y, y)
    d = d.dropna(subset=[y]) if y in d else d.iloc[:0]
    if xmax is not None:
        d = d[d[x] <= xmax]
    if d.empty:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel=SYMBOLS.get(x, x), ylabel=ylabel, title=title)
        return ax
    if hue == "value":
        labels = legend_labels(d, "η" if param == "lr" else "S")
        cols = palette_for(d["value"], param)
        d = d.sort_values("value", ascending=(param != "lr"), kind="stable")
        d = d.assign(_label=d["value"].map(labels))
        palette = {labels[v]: cols[float(v) if param == "lr" else int(v)] for v in labels}
    else:
        import matplotlib.pyplot as plt

        keys = list(dict.fromkeys(d[hue]))
        labels = {k: f"{(names or {}).get(k, k)} "
                     f"{next(iter(legend_labels(d[d[hue] == k], 'η' if param == 'lr' else 'S').values()))}"
                  for k in keys}
        cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        palette = {labels[k]: cycle[i % len(cycle)] for i, k in enumerate(keys)}
        d = d.assign(_label=d[hue].map(labels))
    curves(d, x, y, "_label", units="seed", window=window, ax=ax, ylabel=ylabel, logy=logy,
           xlabel=SYMBOLS.get(x, x), palette=palette)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def figure(panels: list[dict], title: str, footer: str, *, ncols: int | None = None):
    """A figure of ``panels`` (each a dict of :func:`panel`'s arguments: ``d``, ``y`` and
    optional ``param``, ``x``, ``xmax``, ``title``, ``window``, ``logy``, ``vline``: an
    x position drawn dotted, e.g. the end of the early window) with a suptitle and the
    footer (data, profile, seeds, BatchNorm modes) under it."""
    from .plotting import annotate, subplots

    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = subplots(ncols, nrows)
    axes = np.atleast_1d(axes).ravel()
    for ax, p in zip(axes, panels):
        p = dict(p)
        vline = p.pop("vline", None)
        panel(ax, p.pop("d"), p.pop("y"), **p)
        if vline is not None:
            ax.axvline(vline, color="0.5", ls=":", lw=1.0)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    annotate(fig, footer)
    return fig
