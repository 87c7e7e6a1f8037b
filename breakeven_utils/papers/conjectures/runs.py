"""Notebook 2's runs (break-even paper Sec. 4.2, App. E-G): the profile's sweeps as
``common.Sweep`` objects (RunConfigs plus the varied parameter), the families it skips, and
``run_configs(profile)``: every distinct run the notebook launches (``papers.registry``,
``make plan``)."""

from __future__ import annotations

from breakeven_utils.papers.common import Sweep, iteration_schedule
from breakeven_utils.papers.conjectures.settings import settings
from breakeven_utils.recorder.config import RunConfig

__all__ = ["sweeps", "skipped", "run_configs"]


def _config(s: dict, fam: dict, *, lr, batch_size, seed, K_M, momentum=0.0, lambda_H=False,
            schedule="constant", milestones=(), model=None, dataset=None, **extra) -> RunConfig:
    """One run of sweep family ``fam`` (its keys override the profile's shared ones)."""
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
        seed=int(seed), **_budget(s, fam),
        measure_every=int(fam.get("measure_every", s["measure_every"])),
        measure_dense_until=fam.get("measure_dense_until", s["measure_dense_until"]),
        measure_every_epochs=1,
        metrics=tuple(metrics), hessian_k=1, hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"],
        K_L=int(s["K_L"]), K_M=int(K_M), acc_thresholds=(float(s["acc_threshold"]),), **extra)


def _budget(s: dict, fam: dict) -> dict:
    """The training budget: ``max_iters`` steps for every run of the family when it sets one
    (runs compared over S take the same number of steps, not a fraction of them), measured at
    ``iteration_schedule(max_iters, *measure_iters)``; else ``max_epochs``, measured every
    ``measure_every`` steps up to ``measure_dense_until``, then every epoch."""
    if fam.get("max_iters") is None:
        return {"max_epochs": int(fam.get("max_epochs", s["max_epochs"]))}
    n = int(fam["max_iters"])
    return {"max_epochs": None, "max_iters": n, "measure_at": iteration_schedule(n, *fam["measure_iters"])}


def _vary(name, label, param, figures, s, fam, values, fixed, K_M_fixed=None, **kw):
    """A Sweep over ``param`` = each of ``values`` (per seed), the rest ``fixed``; K with M = S
    unless ``K_M_fixed``."""
    cfgs, vals = [], []
    for v in values:
        for seed in fam.get("seeds", s["seeds"]):
            args = dict(fixed, **{param: v})
            K_M = K_M_fixed if K_M_fixed is not None else args["batch_size"]
            cfgs.append(_config(s, fam, seed=seed, K_M=K_M, **args, **kw))
            vals.append(v)
    return Sweep(name, label, param, figures, cfgs, vals, lambda_H=bool(kw.get("lambda_H")),
                 dataset=cfgs[0].dataset if cfgs else "")


def _model_of(fam: dict) -> dict:
    """A family's model keys without its own budget and seeds (the momentum and decay sweeps
    reuse SimpleCNN's model, with the profile's budget and seeds unless they set their own)."""
    return {k: v for k, v in fam.items() if k not in ("seeds", "max_iters", "measure_iters")}


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
        base = dict(_model_of(s["simple_cnn"]), **{k: v for k, v in fam.items() if k not in own})
        base.setdefault("model", "simple_cnn")
        out.append(_vary("momentum_beta", f"SimpleCNN, vary beta (eta={fam['lr']:g})", "momentum",
                         "Fig. 20, 21", s, base, fam["betas"],
                         dict(lr=fam["lr"], batch_size=base["batch_for_eta"])))
        out.append(_vary("momentum_eta", f"SimpleCNN, beta={fam['fixed_beta']:g}, vary eta", "lr",
                         "Fig. 22, 23", s, base, fam["fixed_lrs"],
                         dict(momentum=fam["fixed_beta"], batch_size=base["batch_for_eta"])))
    fam = s.get("decay") or {}
    if fam and not fam.get("skip"):
        base = dict(_model_of(s["simple_cnn"]),
                    **{k: v for k, v in fam.items() if k not in ("lrs", "decay_epoch")})
        base.setdefault("model", "simple_cnn")
        out.append(_vary("decay_eta", f"SimpleCNN, eta/10 after epoch {fam['decay_epoch']}, vary eta", "lr",
                         "Fig. 24, 25", s, base, fam["lrs"], dict(batch_size=base["batch_for_eta"]),
                         schedule="step", milestones=(int(fam["decay_epoch"]),)))
    return out


def run_configs(profile: str = "smoke", **overrides) -> list:
    """Every distinct run notebook 2 launches at ``profile`` (all sweeps; a run shared by
    two sweeps once), validated, without training (``make plan``)."""
    cfgs = [c for sw in sweeps(settings(profile, **overrides)) for c in sw.configs]
    return list({c.key(): c for c in cfgs}.values())
