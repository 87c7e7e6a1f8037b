"""Notebook 3's runs (break-even paper Sec. 4.3, App. H): the three sweeps (SimpleCNN-BN and
SimpleCNN over eta, SimpleCNN-BN over S) as ``common.Sweep`` objects, their measurement
schedule, the checks a RunConfig of this notebook must pass beyond ``RunConfig.validate``, and
``run_configs(profile)``: every distinct run the notebook launches (``papers.registry``,
``make plan``), validated without training."""

from __future__ import annotations

from torch import nn

from breakeven_utils.core.models import build_model
from breakeven_utils.papers.batchnorm.settings import (
    BN_MODEL,
    METRICS_BN,
    METRICS_PLAIN,
    PLAIN_MODEL,
    check_settings,
    settings,
)
from breakeven_utils.papers.common import Sweep, iteration_schedule
from breakeven_utils.recorder.config import RunConfig

__all__ = ["has_batchnorm", "check_config", "measure_at", "sweeps", "run_configs"]


def has_batchnorm(model: str, model_kwargs: dict | None = None) -> bool:
    """Does the registered ``model`` hold a BatchNorm layer with a scale gamma? (Builds
    it once on the CPU, without data.)"""
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
    and, when the profile sets ``max_iters`` (every run the same number of steps, whatever
    its eta or S), ``iteration_schedule(max_iters, *measure_iters)``, else every epoch end up
    to ``max_epochs``; None when the profile uses the shared
    ``measure_every``/``measure_dense_until`` schedule instead."""
    early = s.get("measure_early")
    if early is None:
        return None
    if s.get("max_iters") is not None:
        total = int(s["max_iters"])
        return tuple(sorted({int(t) for t in early if t <= total}
                            | set(iteration_schedule(total, *s["measure_iters"]))))
    bpe = s["n_train"] // int(batch_size)
    total = bpe * s["max_epochs"]
    return tuple(sorted({int(t) for t in early if t <= total}
                        | {e * bpe for e in range(1, s["max_epochs"] + 1)}))


def _config(s: dict, *, model: str, lr: float, batch_size: int, seed: int, metrics) -> RunConfig:
    """One run, K and H measured in BN train mode, checked by :func:`check_config`."""
    c = RunConfig(
        dataset=s["dataset"], n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"],
        n_measure=s["n_measure"], data_seed=0, normalize="standard", augment=False,
        model=model, model_kwargs=dict(s.get("model_kwargs", {})), optimizer="sgd",
        lr=float(lr), momentum=0.0, batch_size=int(batch_size), seed=int(seed),
        max_epochs=None if s.get("max_iters") is not None else int(s["max_epochs"]),
        max_iters=s.get("max_iters"), measure_every=int(s["measure_every"]),
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
