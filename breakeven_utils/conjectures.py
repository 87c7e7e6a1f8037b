"""Break-even paper, Sec. 4.2 / App. E-G: the sweeps behind notebook 2 and its verdict table.

Conjecture 1 (variance reduction): along the SGD trajectory the maximum lambda_K^1
and lambda_H^1 are smaller for a larger learning rate eta or a smaller batch size S
(and, App. F, a larger momentum beta). Conjecture 2 (pre-conditioning): the maximum
lambda_K^*/lambda_K^1 is larger, and the maximum Tr(K) smaller, for a larger eta or
a smaller S.

``sweeps(s)`` turns the profile's ``conjectures`` section into :class:`Sweep`
objects (RunConfigs plus the varied parameter); ``verdict_table(df)`` computes
the maxima per setting and, per sweep, whether each predicted ordering holds
(monotone over every setting of the sweep), from the tidy table of
``records.sweep`` with the columns ``sweep``, ``value``, ``seed``, ``status``,
``train_acc``, ``lambda_K_1``, ``lambda_K_ratio``, ``trace_K``, ``lambda_H_1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "settings", "Sweep", "sweeps", "skipped", "PAPER_VALUES", "PREDICTIONS",
    "setting_maxima", "ordering", "verdict_table", "tidy",
]

VARIED = ("lr", "batch_size", "momentum")
PARAM_SYMBOL = {"lr": "eta", "batch_size": "S", "momentum": "beta"}

#: direction of the predicted change of each maximum as the varied parameter grows:
#: -1 = decreases, +1 = increases. A larger S acts like a smaller eta.
PREDICTIONS = {
    # quantity: (conjecture, sign for growing eta/beta)
    "max_lambda_K_1": ("1", -1),
    "max_lambda_H_1": ("1", -1),
    "max_lambda_K_ratio": ("2", +1),
    "max_trace_K": ("2", -1),
}
_PARAM_SIGN = {"lr": +1, "momentum": +1, "batch_size": -1}

#: values the paper's text reports (Sec. 4.2, SimpleCNN on CIFAR-10)
PAPER_VALUES = {
    ("simplecnn_eta", 0.1): {"max_lambda_K_1": 0.68, "max_lambda_K_ratio": 0.37, "max_lambda_H_1": 26.27},
    ("simplecnn_eta", 0.01): {"max_lambda_K_1": 3.30, "max_lambda_K_ratio": 0.24, "max_lambda_H_1": 211.17},
    ("simplecnn_S", 10): {"max_trace_K": 5.56},
    ("simplecnn_S", 100): {"max_trace_K": 10.86},
}


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``conjectures`` section and ``overrides``."""
    from .profiles import get_profile

    return get_profile(profile, section="conjectures", **overrides)


@dataclass
class Sweep:
    """One sweep: ``configs[i]`` trains with ``param`` = ``values[i]`` (per seed)."""

    name: str
    label: str
    param: str
    figures: str
    configs: list = field(default_factory=list)
    values: list = field(default_factory=list)
    lambda_H: bool = False
    dataset: str = ""

    def __post_init__(self):
        if self.param not in VARIED:
            raise ValueError(f"param must be one of {VARIED}, got {self.param!r}")
        if len(self.configs) != len(self.values):
            raise ValueError("configs and values differ in length")


def _config(s: dict, fam: dict, *, lr, batch_size, seed, K_M, momentum=0.0, lambda_H=False,
            schedule="constant", milestones=(), model=None, dataset=None, **extra):
    from .train import RunConfig

    metrics = ["train", "val", "K"] + (["lambda_H"] if lambda_H else [])
    return RunConfig(
        dataset=dataset or fam.get("dataset", s["dataset"]),
        n_train=fam.get("n_train", s["n_train"]), n_val=fam.get("n_val", s["n_val"]),
        n_test=fam.get("n_test", s["n_test"]), n_measure=fam.get("n_measure", s["n_measure"]),
        data_seed=0, normalize=fam.get("normalize", "standard"), augment=bool(fam.get("augment", False)),
        model=model or fam["model"], model_kwargs=dict(fam.get("model_kwargs", {})),
        optimizer="sgd", lr=float(lr), momentum=float(momentum), batch_size=int(batch_size),
        weight_decay=float(fam.get("weight_decay", 0.0)),
        weight_decay_on=fam.get("weight_decay_on", "all"),
        schedule=schedule, milestones=tuple(milestones), gamma=0.1,
        seed=int(seed), max_epochs=int(fam.get("max_epochs", s["max_epochs"])),
        measure_every=int(fam.get("measure_every", s["measure_every"])),
        measure_dense_until=fam.get("measure_dense_until", s["measure_dense_until"]),
        measure_every_epochs=1,
        metrics=tuple(metrics), hessian_k=1, hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"],
        K_L=int(s["K_L"]), K_M=int(K_M), acc_thresholds=(float(s["acc_threshold"]),), **extra)


def _vary(name, label, param, figures, s, fam, values, fixed, K_M_fixed=None, **kw):
    cfgs, vals = [], []
    for v in values:
        for seed in s["seeds"]:
            args = dict(fixed, **{param: v})
            K_M = K_M_fixed if K_M_fixed is not None else args["batch_size"]
            cfgs.append(_config(s, fam, seed=seed, K_M=K_M, **args, **kw))
            vals.append(v)
    return Sweep(name, label, param, figures, cfgs, vals, lambda_H=bool(kw.get("lambda_H")),
                 dataset=cfgs[0].dataset if cfgs else "")


def skipped(s: dict) -> dict:
    """{sweep family: reason} for the families this profile does not run."""
    out = dict(s.get("unavailable", {}))
    for fam in ("simple_cnn", "resnet32", "mlp", "momentum", "decay"):
        reason = (s.get(fam) or {}).get("skip")
        if reason:
            out[fam] = reason
    return out


def sweeps(s: dict) -> list[Sweep]:
    """The profile's sweeps (families with a ``skip`` reason are left out, see :func:`skipped`).

    SimpleCNN and ResNet-32: eta varied at S = ``batch_for_eta`` (K with M = S) and S
    varied at eta = ``lr_for_S`` (K with M = ``K_M``, 128 in the paper); MLP on
    Fashion-MNIST: eta varied at S = 64; momentum (App. F): beta varied at eta =
    ``lr``, and eta varied at beta = ``fixed_beta``; decay (App. G): eta varied,
    divided by 10 at epoch ``decay_epoch``.
    """
    out = []
    fams = {"simple_cnn": ("simplecnn", "SimpleCNN", "Fig. 4, 5, 10, 11"),
            "resnet32": ("resnet32", "ResNet-32", "Fig. 4, 5, 12, 13")}
    for key, (short, nice, figs) in fams.items():
        fam = s.get(key) or {}
        if not fam or fam.get("skip"):
            continue
        fam = dict(fam, model=fam.get("model", key))
        lh = bool(fam.get("lambda_H", False))
        out.append(_vary(f"{short}_eta", f"{nice}, vary eta (S={fam['batch_for_eta']})", "lr", figs, s, fam,
                         fam["lrs"], dict(batch_size=fam["batch_for_eta"]), lambda_H=lh))
        out.append(_vary(f"{short}_S", f"{nice}, vary S (eta={fam['lr_for_S']:g})", "batch_size", figs, s,
                         fam, fam["batch_sizes"], dict(lr=fam["lr_for_S"]), K_M_fixed=s["K_M"],
                         lambda_H=lh))
    fam = s.get("mlp") or {}
    if fam and not fam.get("skip"):
        fam = dict(fam, model="mlp")
        out.append(_vary("mlp_eta", f"MLP, vary eta (S={fam['batch_size']})", "lr", "Fig. 18, 19", s, fam,
                         fam["lrs"], dict(batch_size=fam["batch_size"]),
                         lambda_H=bool(fam.get("lambda_H", False))))
    fam = s.get("momentum") or {}
    if fam and not fam.get("skip"):
        own = ("betas", "lr", "fixed_beta", "fixed_lrs")
        base = dict(s["simple_cnn"], **{k: v for k, v in fam.items() if k not in own})
        base.setdefault("model", "simple_cnn")
        out.append(_vary("momentum_beta", f"SimpleCNN, vary beta (eta={fam['lr']:g})", "momentum",
                         "Fig. 20, 21", s, base, fam["betas"],
                         dict(lr=fam["lr"], batch_size=base["batch_for_eta"])))
        out.append(_vary("momentum_eta", f"SimpleCNN, beta={fam['fixed_beta']:g}, vary eta", "lr",
                         "Fig. 22, 23", s, base, fam["fixed_lrs"],
                         dict(momentum=fam["fixed_beta"], batch_size=base["batch_for_eta"])))
    fam = s.get("decay") or {}
    if fam and not fam.get("skip"):
        base = dict(s["simple_cnn"], **{k: v for k, v in fam.items() if k not in ("lrs", "decay_epoch")})
        base.setdefault("model", "simple_cnn")
        out.append(_vary("decay_eta", f"SimpleCNN, eta/10 after epoch {fam['decay_epoch']}, vary eta", "lr",
                         "Fig. 24, 25", s, base, fam["lrs"], dict(batch_size=base["batch_for_eta"]),
                         schedule="step", milestones=(int(fam["decay_epoch"]),)))
    return out


def tidy(df: pd.DataFrame, sw: Sweep) -> pd.DataFrame:
    """Rows of a ``records.sweep`` table that belong to ``sw``, with ``sweep`` and ``value`` columns."""
    keys = {c.key(): v for c, v in zip(sw.configs, sw.values)}
    sub = df[df["key"].isin(keys)].copy()
    sub["value"] = sub["key"].map(keys)
    sub["sweep"] = sw.name
    return sub


# ----------------------------------------------------------------------------- verdicts


def _nanmax(x) -> float:
    x = pd.to_numeric(x, errors="coerce").to_numpy(float)
    return float(np.nanmax(x)) if np.isfinite(x).any() else np.nan


_QUANTITIES = (("max_lambda_K_1", "lambda_K_1"), ("max_lambda_K_ratio", "lambda_K_ratio"),
               ("max_trace_K", "trace_K"), ("max_lambda_H_1", "lambda_H_1"))


def setting_maxima(df: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, value), sweeps in order of appearance and values ascending: seed-mean
    maxima over the trajectory, number of seeds, training accuracy at the peak of
    lambda_K^1, and per quantity whether every seed peaked at its first measurement
    (``<q>_at_start``: the quantity never grew within the budget). Diverged runs are
    counted in ``n_diverged`` and left out of the maxima."""
    rows = []
    order = list(dict.fromkeys(df["sweep"]))
    for sw in order:
        for v, g in df[df["sweep"] == sw].groupby("value", sort=True):
            per_seed, starts, acc_peak, div, n = [], [], [], 0, 0
            for _, r in g.groupby("seed"):
                n += 1
                if (r["status"] == "diverged").any():
                    div += 1
                    continue
                r = r.sort_values("iteration")
                mx, st = {}, {}
                for q, c in _QUANTITIES:
                    x = pd.to_numeric(r[c], errors="coerce") if c in r else pd.Series(dtype=float)
                    mx[q] = _nanmax(x)
                    st[q] = bool(x.notna().any() and x.dropna().index[0] == x.idxmax())
                per_seed.append(mx)
                starts.append(st)
                k = pd.to_numeric(r["lambda_K_1"], errors="coerce")
                acc_peak.append(float(r.loc[k.idxmax(), "train_acc"]) if k.notna().any() else np.nan)
            m = pd.DataFrame(per_seed).mean() if per_seed else pd.Series(dtype=float)
            row = dict(sweep=sw, value=v, n_seeds=len(per_seed), n_diverged=div, n_runs=n)
            for q in PREDICTIONS:
                row[q] = float(m.get(q, np.nan)) if len(m) else np.nan
            row["train_acc_at_max_lambda_K_1"] = (float(np.nanmean(acc_peak))
                                                  if np.isfinite(acc_peak).any() else np.nan)
            for q in PREDICTIONS:
                row[f"{q}_at_start"] = bool(starts) and all(s[q] for s in starts)
            rows.append(row)
    return pd.DataFrame(rows)


ORDER_RTOL = 0.05  # smaller steps are within the noise of an L=25 estimate: not an ordering


def ordering(values, maxima, sign: int, rtol: float = ORDER_RTOL) -> bool:
    """True when ``maxima`` change strictly monotonically with ``values`` in the
    direction ``sign`` (+1 increasing, -1 decreasing) across every setting, each
    step by more than ``rtol`` of the larger of its two values."""
    order = np.argsort(np.asarray(values, dtype=float))
    m = np.asarray(maxima, dtype=float)[order]
    d = np.diff(m)
    scale = np.maximum(np.abs(m[1:]), np.abs(m[:-1]))
    return bool(len(d) > 0 and np.all(sign * d > rtol * scale))


def _verdict(ok, testable=True, reason=""):
    if not testable:
        return f"not testable at this scale ({reason})"
    return "holds" if ok else "does not hold"


def verdict_table(df: pd.DataFrame, param_of: dict | None = None) -> pd.DataFrame:
    """The notebook's table: one row per (sweep, setting) with the maxima, the
    paper's values where it reports them, and per sweep the verdict of each
    predicted ordering (the same verdict repeated on every row of the sweep).

    ``param_of``: {sweep name: varied parameter}; default from the sweep's name
    suffix (``_eta`` -> lr, ``_S`` -> batch_size, ``_beta`` -> momentum).
    """
    mx = setting_maxima(df)
    if mx.empty:
        return mx
    for q in PREDICTIONS:
        mx[f"paper_{q}"] = [PAPER_VALUES.get((sw, _num(v)), {}).get(q, np.nan)
                            for sw, v in zip(mx["sweep"], mx["value"])]
    verdicts = {}
    for sw, g in mx.groupby("sweep", sort=False):
        param = (param_of or {}).get(sw) or _param_from_name(sw)
        ok_rows = g[g["n_seeds"] > 0]
        diverged = [f"{PARAM_SYMBOL[param]}={_num(v):g}" for v in g.loc[g["n_seeds"] == 0, "value"]]
        note = f" (diverged, excluded: {', '.join(diverged)})" if diverged else ""
        for q, (_conj, sign) in PREDICTIONS.items():
            vals = ok_rows[["value", q]].dropna()
            at_start = bool(len(vals)) and bool(ok_rows.loc[vals.index, f"{q}_at_start"].all())
            testable = len(vals) >= 2 and not at_start
            reason = ("not measured at this profile" if ok_rows[q].isna().all()
                      else "maximum at the first measurement in every setting: no growth within the budget"
                      if at_start else f"{len(vals)} setting(s) with a finite value")
            v = _verdict(ordering(vals["value"], vals[q], sign * _PARAM_SIGN[param]), testable, reason)
            verdicts[(sw, q)] = v + (note if testable else "")
    for q, (conj, _) in PREDICTIONS.items():
        mx[f"conj{conj}_{q}"] = [verdicts[(sw, q)] for sw in mx["sweep"]]
    return mx


def _num(v):
    f = float(v)
    return int(f) if f.is_integer() and f >= 2 else f


def _param_from_name(name: str) -> str:
    for suffix, p in (("_eta", "lr"), ("_S", "batch_size"), ("_beta", "momentum")):
        if name.endswith(suffix):
            return p
    raise ValueError(f"cannot tell the varied parameter of sweep {name!r}; pass param_of")


def run_configs(profile: str = "smoke", **overrides) -> list:
    """Every distinct run notebook 2 launches at ``profile`` (all sweeps; a run shared by
    two sweeps once), validated, without training (``make plan``)."""
    cfgs = [c for sw in sweeps(settings(profile, **overrides)) for c in sw.configs]
    return list({c.key(): c for c in cfgs}.values())


__all__ += ["run_configs"]
