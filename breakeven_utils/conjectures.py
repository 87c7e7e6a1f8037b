"""Break-even paper, Sec. 4.2 / App. E-G: the sweeps behind notebook 2 and its verdict table.

Conjecture 1 (variance reduction): along the SGD trajectory the maximum lambda_K^1
and lambda_H^1 are smaller for a larger learning rate eta or a smaller batch size S
(and, App. F, a larger momentum beta). Conjecture 2 (pre-conditioning): the maximum
lambda_K^*/lambda_K^1 is larger, and the maximum Tr(K) smaller, for a larger eta or
a smaller S.

``sweeps(s)`` turns the profile's ``conjectures`` section into :class:`Sweep`
objects (RunConfigs plus the varied parameter); ``setting_maxima(df)`` computes
the smoothed maxima per setting with their standard errors (the data table),
from the tidy table of ``records.sweep`` with the columns ``sweep``, ``value``,
``seed``, ``status``, ``train_acc``, ``lambda_K_1`` (+ ``lambda_K_1_se``),
``lambda_K_ratio``, ``trace_K`` (+ ``trace_K_se``), ``lambda_H_1``; and
``claims_conjectures(mx)`` the claims (breakeven_utils.claims.Claim): per sweep,
whether each predicted ordering holds beyond the noise. The paper's numbers are
in break_even.PAPER_VALUES.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "settings", "Sweep", "sweeps", "skipped", "QUANTITIES", "PREDICTIONS", "WINDOW",
    "batch_normalised", "setting_maxima", "claim_figure", "claims_conjectures", "tidy",
]

VARIED = ("lr", "batch_size", "momentum")
PARAM_SYMBOL = {"lr": "eta", "batch_size": "S", "momentum": "beta"}

#: per maximum: (metric column, conjecture, direction of its predicted change as eta or beta
#: grows: -1 decreases, +1 increases; a larger S acts like a smaller eta, name)
QUANTITIES = {
    "max_lambda_K_1": ("lambda_K_1", "1", -1, "lambda_K^1"),
    "max_lambda_H_1": ("lambda_H_1", "1", -1, "lambda_H^1"),
    "max_lambda_K_ratio": ("lambda_K_ratio", "2", +1, "lambda_K^*/lambda_K^1"),
    "max_trace_K": ("trace_K", "2", -1, "Tr(K)"),
}
PREDICTIONS = {q: (conj, sign) for q, (_c, conj, sign, _n) in QUANTITIES.items()}
_PARAM_SIGN = {"lr": +1, "momentum": +1, "batch_size": -1}

#: moving-average window (measurements) of the curves drawn and of the maxima compared
#: (break_even.WINDOW: cpu trajectories hold about 10 measurements per run)
WINDOW = 3


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
    quantity of :data:`PREDICTIONS` the seed mean of the maxima of the smoothed curve
    (``max_<q>``; moving average over ``window`` measurements, claims.smoothed_max), its
    standard error ``max_<q>_se`` and its kind ``max_<q>_se_kind`` (break_even.max_with_se:
    seed spread, else the bootstrap SEs of the K metric, else none), the seed mean of the raw
    maxima ``raw_max_<q>``, whether every seed peaked at its first measurement considered
    (``max_<q>_at_start``: no growth within the budget), the number of seeds, and the training
    accuracy at the smoothed peak of lambda_K^1. Diverged runs are counted in ``n_diverged`` and
    left out. ``after_transient``: sweep names whose maxima are taken after the initial
    transient (claims.transient_end); default: the sweeps of batch-normalised networks.
    """
    from .break_even import max_with_se
    from .claims import smooth, transient_end

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


def _paper(sw: str, q: str, values) -> str:
    from .break_even import paper_value

    sym = _symbol(sw)
    got = [(v, paper_value((sw, _num(v), q))) for v in values]
    extra = [(k[1], paper_value(k)) for k in _paper_keys(sw, q) if k[1] not in {_num(v) for v in values}]
    parts = [f"{sym}={float(v):g}: {x:g}" for v, x in got + extra if x is not None]
    return "; ".join(parts)


def _paper_keys(sw, q):
    from .break_even import PAPER_VALUES

    return [k for k in PAPER_VALUES if isinstance(k, tuple) and k[0] == sw and k[2] == q]


def _symbol(sw: str) -> str:
    return PARAM_SYMBOL[_param_from_name(sw)]


def claim_figure(sweep: str, q: str) -> tuple[str, str, str]:
    """(paper section, figure, file name in the notebook's output folder) showing quantity ``q``
    (a key of :data:`PREDICTIONS`) of ``sweep``; the names notebook 2 saves its figures under."""
    fam = sweep.split("_")[0]
    if fam in ("simplecnn", "resnet32"):
        if q == "max_trace_K":
            n = {"simplecnn_eta": 10, "simplecnn_S": 11, "resnet32_eta": 12, "resnet32_S": 13}.get(sweep, 10)
            return "4.2", f"Fig. {n}", f"fig{n}_{sweep}_acc_trace_k.png"
        if q == "max_lambda_H_1":
            return "4.2", "Fig. 5", "fig5_lambda_h.png"
        return "4.2", "Fig. 4", "fig4_lambda_k_ratio.png"
    if fam == "mlp":
        return "App. E", "Fig. 18", "fig18_mlp_k_h.png"
    if sweep == "momentum_beta":
        return "App. F", "Fig. 20", "fig20_momentum_beta_k.png"
    if sweep == "momentum_eta":
        return "App. F", "Fig. 22", "fig22_momentum_eta_k.png"
    return "App. G", "Fig. 24", "fig24_decay_k.png"


def claims_conjectures(mx: pd.DataFrame, labels: dict | None = None, param_of: dict | None = None) -> list:
    """One claims.Claim per sweep and predicted ordering (:data:`PREDICTIONS`), from
    :func:`setting_maxima`: does the smoothed maximum move the predicted way across every
    consecutive pair of settings by more than their combined uncertainty
    (claims.ordering_verdict; the margins used are in the reason)? ``labels``: {sweep: setting
    text (model, what varies, data set)}; ``param_of``: {sweep: varied parameter}, default from the name.
    Not testable: no finite value (not measured), fewer than two settings, or every setting
    peaking at its first measurement considered (no growth within the budget).
    """
    from .claims import UNTESTABLE, Claim, ordering_verdict

    out = []
    for sw, g in mx.groupby("sweep", sort=False):
        param = (param_of or {}).get(sw) or _param_from_name(sw)
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
            word = "smaller" if sign * _PARAM_SIGN[param] < 0 else "larger"
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
                                     sign * _PARAM_SIGN[param], symbol=sym)
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
