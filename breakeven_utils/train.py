"""The recorder's loop: one training loop for every trajectory the papers study.

:func:`train` runs a :class:`~breakeven_utils.config.RunConfig` in memory:
it builds the model, the update rule and the learning-rate schedule, steps
through the mini-batches, measures at the scheduled iterations, checkpoints,
resumes exactly, and ends a run whose loss, gradient or parameters stop being
finite with status ``'diverged'`` (no exception). ``records.run`` adds the
on-disk run store (caching, checkpoints, resume) on top of it.

Iteration ``t`` is the state after ``t`` steps. A measurement at ``t`` reads the
state theta_t; the step-metrics of the row (``delta_loss``, ``grad_norm``,
``grad_cos``, ``g_over_g5``, ``lr``) describe the step from theta_t to
theta_{t+1}, so the last row (no step after it) has NaN there.

The recorder's rooms (a downward stack, no cycles)::

    records -> train -> config -> {rules, metrics} -> {curvature, noise, models, data}

* ``config``: :class:`RunConfig`, validation, (de)serialisation, run key,
  :func:`config_from_profile`, the plugin loader :func:`load_plugins`;
* ``rules``: :class:`UpdateRule` and its registry, SGD/momentum, GD, GD + noise,
  the learning-rate :class:`Schedule`;
* ``metrics``: the measurement schedule, :class:`MeasureContext`, the metric
  registry and every built-in metric;
* ``train`` (here): the loop, resume and divergence handling.

Every name of those rooms that was importable from ``breakeven_utils.train``
before the split still is (re-exported below).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .config import (  # noqa: F401  (re-exported)
    BN_MODES,
    PLUGIN_MODULES,
    TRAIN_EVAL_ON,
    RunConfig,
    _is_int,
    config_from_profile,
    load_plugins,
)
from .metrics import (  # noqa: F401  (re-exported)
    _K_M,
    _METRIC_ALIASES,
    _PRE_METRICS,
    _STEP_METRICS,
    _USER_METRICS,
    DEFAULT_METRICS,
    METRIC_COLUMNS,
    METRICS,
    MeasureContext,
    _final_H_spectrum,
    _grad_vector,
    _metric_names,
    _params_vector,
    evaluate,
    measurement_iterations,
    register_metric,
)
from .rules import (  # noqa: F401  (re-exported)
    OPTIMIZERS,
    SCHEDULES,
    UPDATE_RULES,
    WEIGHT_DECAY_ON,
    GDNoiseRule,
    RuleContext,
    Schedule,
    SGDRule,
    UpdateRule,
    max_gradient_variance,
    register_rule,
    weight_decay_mask,
)

__all__ = [
    "RunConfig",
    "config_from_profile",
    "OPTIMIZERS",
    "SCHEDULES",
    "METRICS",
    "METRIC_COLUMNS",
    "UPDATE_RULES",
    "UpdateRule",
    "SGDRule",
    "GDNoiseRule",
    "register_rule",
    "register_metric",
    "Schedule",
    "measurement_iterations",
    "max_gradient_variance",
    "train",
    "TrainOutput",
    "Diverged",
]


class Diverged(Exception):
    """Raised inside the loop on a non-finite loss; caught by :func:`train`."""

    def __init__(self, iteration: int, what: str):
        super().__init__(f"{what} is not finite at iteration {iteration}")
        self.iteration = iteration


@dataclass
class TrainOutput:
    """In-memory result of :func:`train`.

    rows: one dict per measurement (``iteration``, ``epoch``, ``lr`` + metric columns).
    arrays: name -> list of per-measurement arrays (``H_top``: top-k Hessian
    eigenvalues; ``K_eigs``: the L-1 non-zero eigenvalues of K^M, descending),
    with ``<name>_iteration`` the measurement iterations they belong to.
    softmax: list of (n_test x C) float32 arrays, ``softmax_iteration`` in arrays.
    status: 'done' | 'diverged'; crossings: {threshold: {'iteration', 'epoch'}}.
    """

    rows: list
    arrays: dict
    softmax: list
    status: str
    diverged_at: int | None
    crossings: dict
    seconds: float
    measure_seconds: float
    iterations: int
    info: dict = field(default_factory=dict)


def _build(config: RunConfig, data, device):
    from .models import build_model
    x = data.train.x
    kw = dict(config.model_kwargs)
    if x.dim() == 4:
        kw.setdefault("in_channels", x.shape[1])
        kw.setdefault("image_size", x.shape[-1])
    model = build_model(config.model, num_classes=data.num_classes, init=config.init,
                        seed=config.seed, **kw)
    return model.to(device)


def load_run_data(config: RunConfig, device="cpu"):
    from .data import load_data
    return load_data(config.dataset, n_train=config.n_train, n_val=config.n_val,
                     n_test=config.n_test, n_measure=config.n_measure, seed=config.data_seed,
                     normalize=config.normalize, device=device)


def train(config: RunConfig, *, data=None, device: str | torch.device = "cpu",
          resume: dict | None = None, checkpoint: Callable[[dict], None] | None = None,
          checkpoint_every: int | str | None = "measure",
          hooks: Iterable[Callable[[dict], None]] = (), progress: bool = True,
          desc: str | None = None) -> TrainOutput:
    """Train ``config`` and measure along the way; returns a :class:`TrainOutput`.

    resume: a state produced by ``checkpoint`` (continue exactly where it was taken).
    checkpoint: called with a picklable state dict at iterations chosen by
        ``checkpoint_every``: ``'measure'`` (before every measurement), an int n
        (every n iterations), or None (never). States are taken between steps,
        so a resumed run reproduces the uninterrupted one exactly (on CPU).
    hooks: called after every step with ``{'iteration', 'epoch', 'loss', 'batch_size',
        'lr', 'model'}``; an exception from a hook aborts the run (tests use this
        to simulate a kill).
    A non-finite loss, gradient or measured training loss ends the run with
    status 'diverged' (no exception).
    """
    with torch.random.fork_rng(devices=[]):  # global CPU RNG (dropout): seeded, then restored
        torch.manual_seed(config.seed)
        return _train_impl(config, data=data, device=device, resume=resume,
                           checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                           hooks=hooks, progress=progress, desc=desc)


def _train_impl(config, *, data, device, resume, checkpoint, checkpoint_every, hooks, progress,
                desc) -> TrainOutput:
    from tqdm.auto import tqdm

    config.validate()
    if not (checkpoint_every is None or checkpoint_every == "measure"
            or (_is_int(checkpoint_every) and checkpoint_every > 0)):
        raise ValueError(f"checkpoint_every must be 'measure', a positive integer or None, "
                         f"got {checkpoint_every!r}")
    if data is None:
        data = load_run_data(config, device)
    n_train = len(data.train)
    if config.optimizer == "sgd" and config.batch_size > n_train:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {n_train} training examples")
    if config.schedule == "plateau" and len(data.val) == 0:
        raise ValueError("the plateau schedule needs a validation set")
    bs = n_train if config.full_batch else config.batch_size
    if "K" in config.metrics:
        M = _K_M(config, n_train)
        if config.K_L * M > n_train:
            raise ValueError(f"K needs K_L*K_M = {config.K_L}*{M} <= n_train = {n_train} "
                             "(mini-batches drawn without replacement); lower K_L or set K_M")
    if config.hessian_n is not None and config.hessian_n > len(data.measure):
        raise ValueError(f"hessian_n={config.hessian_n} exceeds the {len(data.measure)} "
                         "examples of the measurement set")
    from .data import BatchIterator
    batches = BatchIterator(data.train, bs, seed=config.seed, augment=config.augment,
                            shuffle=not config.full_batch, drop_last=True)
    bpe = len(batches)
    total = min(config.max_iters or math.inf, (config.max_epochs or math.inf) * bpe)
    total = int(total)
    measure_at = measurement_iterations(config, bpe, total)
    measure_set = set(measure_at)

    t_start = time.perf_counter()
    model = _build(config, data, device)
    loss_fn = nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    load_plugins()  # rules registered by notebook modules (a config unpickled in a worker)
    rule_cls = UPDATE_RULES[config.rule_name]
    rule = rule_cls(params, config, mask=weight_decay_mask(model, config.weight_decay_on),
                    **config.rule_kwargs)
    sched = Schedule(config, bpe)
    rctx = RuleContext(model, loss_fn, data, config)
    metrics = config.metrics
    want = set(metrics)

    if resume is not None:
        model.load_state_dict(resume["model"])
        rule.load_state_dict(resume["rule"])
        sched.load_state_dict(resume["schedule"])
        torch.set_rng_state(resume["torch_rng"])
        S = resume["loop"]
        S["n_resumes"] = S.get("n_resumes", 0) + 1
    else:
        S = {"iteration": 0, "epoch": 0, "batch": 0, "rows": [], "arrays": {}, "softmax": [],
             "crossings": {}, "theta0": _params_vector(model).clone(), "prev_grad": None,
             "mstate": {}, "n_measure": 0, "measure_seconds": 0.0, "seconds": 0.0,
             "epoch_started": -1, "stopped": False, "n_resumes": 0}
        rule.on_start(rctx)
    seconds_before = S["seconds"]
    resumed_at = S["iteration"] if resume is not None else -1  # no checkpoint right after resuming

    def snapshot() -> dict:
        return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "rule": rule.state_dict(), "schedule": sched.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "loop": {**S, "seconds": seconds_before + time.perf_counter() - t_start}}

    def measure(t: int) -> dict:
        t0 = time.perf_counter()
        lr = sched(t) if t < total else sched(max(t - 1, 0))
        row = {"iteration": t, "epoch": t / bpe, "lr": lr}
        if not all(torch.isfinite(p).all() for p in params):
            raise Diverged(t, "a parameter")
        ctx = MeasureContext(model, loss_fn, data, config, t, t / bpe, lr, S["theta0"], {},
                             S["mstate"])
        timing = S.setdefault("metric_seconds", {})
        for name, fn in list(_PRE_METRICS.items()) + [(m, _USER_METRICS[m]) for m in metrics
                                                      if m in _USER_METRICS]:
            if name in want:
                t1 = time.perf_counter()
                row.update(fn(ctx))
                timing[name] = timing.get(name, 0.0) + time.perf_counter() - t1
        for name, arr in ctx.cache.get("arrays", {}).items():
            S["arrays"].setdefault(name, []).append(arr)
            S["arrays"].setdefault(name + "_iteration", []).append(t)
        if "softmax" in want and S["n_measure"] % config.softmax_every == 0:
            _, _, probs = evaluate(model, loss_fn, data.test.x, data.test.y, softmax=True)
            S["softmax"].append(probs.astype(np.float32))
            S["arrays"].setdefault("softmax_iteration", []).append(t)
        if "delta_loss" in want:  # Delta L: loss on the measurement set before minus after the step
            if "train_loss" in row:
                row["_loss_before"] = row["train_loss"]
            else:
                m = data.train if config.train_eval_on == "train" else data.measure
                row["_loss_before"] = evaluate(model, loss_fn, m.x, m.y)[0]
        if "train" in want:
            if not math.isfinite(row["train_loss"]):
                raise Diverged(t, "the training loss")
            for thr in config.acc_thresholds:
                k = repr(thr)
                if k not in S["crossings"] and row["train_acc"] > thr:
                    S["crossings"][k] = {"iteration": t, "epoch": t / bpe}
        S["n_measure"] += 1
        ctx.cache.pop("arrays", None)
        S["_ctx_cache"] = ctx.cache  # K vectors for g_over_g5 (dropped before checkpoint)
        S["measure_seconds"] += time.perf_counter() - t0
        return row

    def finish_row(row):
        row.pop("_loss_before", None)
        for c in _STEP_METRICS:
            if c in want:
                row.setdefault(c, float("nan"))
        S["rows"].append(row)

    status, diverged_at = "done", None
    bar = tqdm(total=total, initial=S["iteration"], disable=not progress, desc=desc,
               leave=False, dynamic_ncols=True)
    need_grad_vec = bool(want & {"grad_cos", "grad_norm", "g_over_g5"})
    try:
        while S["iteration"] < total and not S["stopped"]:
            e = S["epoch"]
            if S["epoch_started"] != e:
                rctx.epoch, rctx.iteration = e, S["iteration"]
                rule.on_epoch_start(rctx)
                S["epoch_started"] = e
            it = batches.epoch(e)
            for _ in range(S["batch"]):
                next(it)
            for x, y in it:
                t = S["iteration"]
                row = None
                if checkpoint is not None and t > resumed_at and (
                        (checkpoint_every == "measure" and t in measure_set)
                        or (isinstance(checkpoint_every, int) and t % checkpoint_every == 0)):
                    S.pop("_ctx_cache", None)
                    checkpoint(snapshot())
                if t in measure_set:
                    row = measure(t)
                    S["_pending"] = row
                    if config.target_train_acc is not None and row["train_acc"] >= config.target_train_acc:
                        finish_row(row)
                        S.pop("_pending", None)
                        S["stopped"] = True
                        break
                lr = sched(t)
                model.train()
                for p in params:
                    p.grad = None
                if config.full_batch and config.gd_chunk is not None and config.gd_chunk < len(y):
                    loss_val = 0.0
                    for xs, ys in zip(x.split(config.gd_chunk), y.split(config.gd_chunk)):
                        part = loss_fn(model(xs), ys) * (len(ys) / len(y))
                        part.backward()
                        loss_val += float(part.detach())
                else:
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    loss_val = float(loss.detach())
                if not math.isfinite(loss_val):
                    raise Diverged(t, "the mini-batch loss")
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                g_vec = None
                if row is not None or (need_grad_vec and "grad_cos" in want and (t + 1) in measure_set):
                    g_vec = torch.cat([g.reshape(-1) for g in grads]).detach().clone()
                if row is not None:
                    if "grad_norm" in want:
                        row["grad_norm"] = float(g_vec.norm())
                    if "grad_cos" in want:
                        pg = S["prev_grad"]
                        row["grad_cos"] = (float(torch.dot(pg, g_vec) / (pg.norm() * g_vec.norm()))
                                           if pg is not None else float("nan"))
                    if "g_over_g5" in want:
                        from .noise import gradient_norm_ratio
                        V = S.get("_ctx_cache", {}).get("K_vectors")
                        if V is not None:
                            row["g_over_g5"] = gradient_norm_ratio(g_vec, V, k=5)
                rctx.iteration = t
                rule(params, grads, lr, rctx)
                gn_ok = all(torch.isfinite(p).all() for p in params) if row is not None else True
                if not gn_ok:
                    raise Diverged(t + 1, "a parameter")
                if row is not None:
                    if "delta_loss" in want:
                        m = data.train if config.train_eval_on == "train" else data.measure
                        after, _ = evaluate(model, loss_fn, m.x, m.y)
                        row["delta_loss"] = row.pop("_loss_before") - after
                    finish_row(row)
                    S.pop("_pending", None)
                # previous gradient for grad_cos: keep only when the next step is measured
                S["prev_grad"] = g_vec if (t + 1) in measure_set and "grad_cos" in want else None
                S["iteration"] += 1
                S["batch"] += 1
                bar.update(1)
                info = {"iteration": S["iteration"], "epoch": e, "loss": loss_val,
                        "batch_size": len(y), "lr": lr, "model": model}
                for h in hooks:
                    h(info)
                if S["iteration"] >= total:
                    break
            else:
                # the epoch ran to its end
                S["epoch"] += 1
                S["batch"] = 0
                if config.schedule == "plateau":
                    vl, _ = evaluate(model, loss_fn, data.val.x, data.val.y)
                    if not math.isfinite(vl):
                        raise Diverged(S["iteration"], "the validation loss")
                    sched.observe(vl)
                continue
            if S["batch"] >= bpe:
                S["epoch"] += 1
                S["batch"] = 0
        if not S["stopped"] and S["iteration"] >= total and total in measure_set and \
                (not S["rows"] or S["rows"][-1]["iteration"] != total):
            finish_row(measure(total))
    except Diverged as d:
        status, diverged_at = "diverged", d.iteration
        if S.get("_pending") is not None:  # measured, but its step diverged
            finish_row(S["_pending"])
    finally:
        bar.close()
    S.pop("_ctx_cache", None)
    S.pop("_pending", None)
    if "H_spectrum" in want:
        _final_H_spectrum(model, loss_fn, data, config, S["mstate"], S["arrays"])
    return TrainOutput(
        rows=S["rows"], arrays=S["arrays"], softmax=S["softmax"], status=status,
        diverged_at=diverged_at, crossings=S["crossings"],
        seconds=seconds_before + time.perf_counter() - t_start,
        measure_seconds=S["measure_seconds"], iterations=S["iteration"],
        info={"batches_per_epoch": bpe, "total_iters": total, "n_resumes": S["n_resumes"],
              "n_measurements": S["n_measure"], "metric_seconds": S.get("metric_seconds", {}),
              "n_parameters": sum(p.numel() for p in params),
              **({"sigma2": rule.sigma2, "v_max": rule.v_max} if hasattr(rule, "sigma2") else {})})
