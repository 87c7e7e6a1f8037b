"""The recorder's loop: one training loop for every trajectory the papers study.

:func:`train` runs a :class:`~breakeven_utils.recorder.config.RunConfig` in memory:
it builds the model, the update rule and the learning-rate schedule, steps
through the mini-batches, measures at the scheduled iterations, checkpoints,
resumes exactly, and ends a run whose loss, gradient or parameters stop being
finite with status ``'diverged'`` (no exception). ``store.runs.run`` adds the
on-disk run store (caching, checkpoints, resume, ``init_from`` parents) on top of it.

Iteration ``t`` is the state after ``t`` steps. A measurement at ``t`` reads the
state theta_t; the step-metrics of the row (``delta_loss``, ``grad_norm``,
``grad_cos``, ``g_over_g5``, ``lr``) describe the step from theta_t to
theta_{t+1}, so the last row (no step after it) has NaN there.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from breakeven_utils.core.console import tqdm
from breakeven_utils.core.data import BatchIterator, load_data
from breakeven_utils.core.device import resolve_device
from breakeven_utils.core.models import build_model
from breakeven_utils.core.params import parameters_vector
from breakeven_utils.curvature import gradient_norm_ratio
from breakeven_utils.recorder.config import RunConfig, is_int
from breakeven_utils.recorder.metrics import (
    K_M,
    PRE_METRICS,
    STEP_METRICS,
    USER_METRICS,
    MeasureContext,
    evaluate,
    final_H_spectrum,
    measurement_iterations,
)
from breakeven_utils.recorder.plugins import load_plugins
from breakeven_utils.recorder.rules import UPDATE_RULES, RuleContext, UpdateRule, weight_decay_mask
from breakeven_utils.recorder.schedules import Schedule

__all__ = ["train", "TrainOutput", "Diverged", "build_run_model", "load_run_data"]


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


def build_run_model(config: RunConfig, data, device):
    """The model of ``config`` (architecture, initialisation, seed) for the input shape of
    ``data``, on ``device``."""
    x = data.train.x
    kw = dict(config.model_kwargs)
    if x.dim() == 4:
        kw.setdefault("in_channels", x.shape[1])
        kw.setdefault("image_size", x.shape[-1])
    model = build_model(config.model, num_classes=data.num_classes, init=config.init,
                        seed=config.seed, **kw)
    return model.to(device)


def load_run_data(config: RunConfig, device="cpu"):
    """The data set of ``config`` on ``device`` ('auto': CUDA when present, else CPU)."""
    return load_data(config.dataset, n_train=config.n_train, n_val=config.n_val,
                     n_test=config.n_test, n_measure=config.n_measure, seed=config.data_seed,
                     normalize=config.normalize, device=resolve_device(device))


def train(config: RunConfig, *, data=None, device: str | torch.device = "auto",
          resume: dict | None = None, checkpoint: Callable[[dict], None] | None = None,
          checkpoint_every: int | str | None = "measure",
          hooks: Iterable[Callable[[dict], None]] = (), progress: bool = True,
          desc: str | None = None, init_state: dict | None = None) -> TrainOutput:
    """Train ``config`` and measure along the way; returns a :class:`TrainOutput`.

    resume: a state produced by ``checkpoint`` (continue exactly where it was taken).
    checkpoint: called with a picklable state dict at iterations chosen by
        ``checkpoint_every``: ``'measure'`` (before every measurement), an int n
        (every n iterations), or None (never). States are taken between steps,
        so a resumed run reproduces the uninterrupted one exactly (on CPU).
    hooks: called after every step with ``{'iteration', 'epoch', 'loss', 'batch_size',
        'lr', 'model'}``; an exception from a hook aborts the run (tests use this
        to simulate a kill).
    A non-finite loss, gradient or measured training loss, or a metric raising
    ``FloatingPointError`` (non-finite gradients behind K, a non-finite Hessian
    eigenvalue), ends the run with status 'diverged' (no exception).
    device: 'auto' (CUDA when present, else CPU; with ``data`` given, the data's
        device), 'cpu', 'cuda[:N]' (``device.resolve_device``).
    """
    if data is not None and (device is None or str(device).lower() == "auto"):
        device = data.train.x.device
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):  # global CPU RNG (dropout): seeded, then restored
        torch.manual_seed(config.seed)
        return _train_impl(config, data=data, device=device, resume=resume,
                           checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                           hooks=hooks, progress=progress, desc=desc, init_state=init_state)


# ----------------------------------------------------------------------------- the loop, step by step


@dataclass
class _Run:
    """What the steps of one :func:`train` call share. ``S`` is the loop state
    (iteration, epoch, batch, rows, ...): everything a checkpoint must keep."""

    config: RunConfig
    data: Any
    batches: Any  # data.BatchIterator
    bpe: int  # batches per epoch
    total: int  # iterations to run
    measure_set: set
    model: nn.Module
    loss_fn: Callable
    params: list
    rule: UpdateRule
    sched: Schedule
    rctx: RuleContext
    want: set
    t_start: float
    checkpoint: Callable[[dict], None] | None = None
    checkpoint_every: int | str | None = "measure"
    hooks: Iterable[Callable[[dict], None]] = ()
    S: dict = field(default_factory=dict)
    seconds_before: float = 0.0
    resumed_at: int = -1  # no checkpoint right after resuming
    bar: Any = None


def _train_impl(config, *, data, device, resume, checkpoint, checkpoint_every, hooks, progress,
                desc, init_state=None) -> TrainOutput:
    r = _prepare(config, data, device, checkpoint_every)
    if config.init_from is not None and resume is None:
        _start_from(r.model, config, init_state)
    r.checkpoint, r.checkpoint_every, r.hooks = checkpoint, checkpoint_every, hooks
    _restore_or_start(r, resume)
    status, diverged_at = "done", None
    r.bar = tqdm(total=r.total, initial=r.S["iteration"], disable=not progress, desc=desc,
                 leave=False, dynamic_ncols=True)
    try:
        _run_epochs(r)
        _final_measurement(r)
    except Diverged as d:
        status, diverged_at = "diverged", d.iteration
        if r.S.get("_pending") is not None:  # measured, but its step diverged
            _finish_row(r, r.S["_pending"])
    finally:
        r.bar.close()
    return _finish(r, status, diverged_at)


def _start_from(model: nn.Module, config: RunConfig, init_state: dict | None) -> None:
    """``config.init_from``: load the parent trajectory's model state after t steps
    (``init_state``, which ``store.runs.run`` reads from the run store). Only the model
    starts there: the update rule and schedule start fresh, theta_0 is this state."""
    if init_state is None:
        raise ValueError("this config starts from another run's state (init_from): pass init_state= "
                         "(store.runs.state_at) or run it through store.runs.run, which finds it")
    model.load_state_dict(init_state["model"])


def _prepare(config: RunConfig, data, device, checkpoint_every) -> _Run:
    """Check the request against the data (before any compute), then build the
    batches, the measurement iterations, the model, the update rule and the schedule."""
    config.validate()
    if not (checkpoint_every is None or checkpoint_every == "measure"
            or (is_int(checkpoint_every) and checkpoint_every > 0)):
        raise ValueError(f"checkpoint_every must be 'measure', a positive integer or None, "
                         f"got {checkpoint_every!r}")
    if data is None:
        data = load_run_data(config, device)
    n_train = len(data.train)
    if config.optimizer == "sgd" and config.batch_size > n_train:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {n_train} training examples")
    if config.schedule == "plateau" and len(data.val) == 0:
        raise ValueError("the plateau schedule needs a validation set")
    if "K" in config.metrics:
        M = K_M(config, n_train)
        if config.K_L * M > n_train:
            raise ValueError(f"K needs K_L*K_M = {config.K_L}*{M} <= n_train = {n_train} "
                             "(mini-batches drawn without replacement); lower K_L or set K_M")
    if config.hessian_n is not None and config.hessian_n > len(data.measure):
        raise ValueError(f"hessian_n={config.hessian_n} exceeds the {len(data.measure)} "
                         "examples of the measurement set")
    bs = n_train if config.full_batch else config.batch_size
    batches = BatchIterator(data.train, bs, seed=config.seed, augment=config.augment,
                            shuffle=not config.full_batch, drop_last=True)
    bpe = len(batches)
    total = int(min(config.max_iters or math.inf, (config.max_epochs or math.inf) * bpe))
    measure_set = set(measurement_iterations(config, bpe, total))

    t_start = time.perf_counter()
    model = build_run_model(config, data, device)
    if "gamma_norm" in config.metrics and not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None for m in model.modules()):
        raise ValueError(f"metric 'gamma_norm' (||gamma|| of the last BatchNorm layer) needs a model with "
                         f"BatchNorm; {config.model!r} has none")
    loss_fn = nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    load_plugins()  # rules registered by notebook modules (a config unpickled in a worker)
    rule = UPDATE_RULES[config.rule_name](
        params, config, mask=weight_decay_mask(model, config.weight_decay_on), **config.rule_kwargs)
    return _Run(config=config, data=data, batches=batches, bpe=bpe, total=total,
                measure_set=measure_set, model=model, loss_fn=loss_fn, params=params, rule=rule,
                sched=Schedule(config, bpe), rctx=RuleContext(model, loss_fn, data, config),
                want=set(config.metrics), t_start=t_start)


def _restore_or_start(r: _Run, resume: dict | None) -> None:
    """Load a checkpointed state (model, rule, schedule, RNG, loop), or start at theta_0."""
    if resume is not None:
        r.model.load_state_dict(resume["model"])
        r.rule.load_state_dict(resume["rule"])
        r.sched.load_state_dict(resume["schedule"])
        torch.set_rng_state(resume["torch_rng"].cpu())  # CPU state, even if loaded onto a GPU
        S = resume["loop"]
        S["n_resumes"] = S.get("n_resumes", 0) + 1
    else:
        S = {"iteration": 0, "epoch": 0, "batch": 0, "rows": [], "arrays": {}, "softmax": [],
             "crossings": {}, "theta0": parameters_vector(r.model).clone(), "prev_grad": None,
             "mstate": {}, "n_measure": 0, "measure_seconds": 0.0, "seconds": 0.0,
             "epoch_started": -1, "stopped": False, "n_resumes": 0}
        r.rule.on_start(r.rctx)
    r.S = S
    r.seconds_before = S["seconds"]
    r.resumed_at = S["iteration"] if resume is not None else -1


def _snapshot(r: _Run) -> dict:
    return {"model": {k: v.detach().clone() for k, v in r.model.state_dict().items()},
            "rule": r.rule.state_dict(), "schedule": r.sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "loop": {**r.S, "seconds": r.seconds_before + time.perf_counter() - r.t_start}}


def _maybe_checkpoint(r: _Run, t: int) -> None:
    every = r.checkpoint_every
    if r.checkpoint is not None and t > r.resumed_at and (
            (every == "measure" and t in r.measure_set)
            or (isinstance(every, int) and t % every == 0)):
        r.S.pop("_ctx_cache", None)
        r.checkpoint(_snapshot(r))


def _run_epochs(r: _Run) -> None:
    """Epochs until ``total`` iterations or the target accuracy (rule hook at each epoch start)."""
    S = r.S
    while S["iteration"] < r.total and not S["stopped"]:
        e = S["epoch"]
        if S["epoch_started"] != e:
            r.rctx.epoch, r.rctx.iteration = e, S["iteration"]
            r.rule.on_epoch_start(r.rctx)
            S["epoch_started"] = e
        if _run_batches(r, e):
            _end_of_epoch(r)
        elif S["batch"] >= r.bpe:
            S["epoch"] += 1
            S["batch"] = 0


def _run_batches(r: _Run, e: int) -> bool:
    """The rest of epoch ``e`` (skipping the batches done before a resume):
    checkpoint, measure, step. True when the epoch ran to its end."""
    S, c = r.S, r.config
    it = r.batches.epoch(e)
    for _ in range(S["batch"]):
        next(it)
    for x, y in it:
        t = S["iteration"]
        _maybe_checkpoint(r, t)
        row = None
        if t in r.measure_set:
            row = _measure(r, t)
            S["_pending"] = row
            if c.target_train_acc is not None and row["train_acc"] >= c.target_train_acc:
                _finish_row(r, row)
                S.pop("_pending", None)
                S["stopped"] = True
                return False
        _step(r, x, y, row, e)
        if S["iteration"] >= r.total:
            return False
    return True


def _measure(r: _Run, t: int) -> dict:
    """The pre-step metrics of the row at iteration ``t`` (state theta_t)."""
    S, c, want, data = r.S, r.config, r.want, r.data
    t0 = time.perf_counter()
    lr = r.sched(t) if t < r.total else r.sched(max(t - 1, 0))
    row = {"iteration": t, "epoch": t / r.bpe, "lr": lr}
    if not all(torch.isfinite(p).all() for p in r.params):
        raise Diverged(t, "a parameter")
    ctx = MeasureContext(r.model, r.loss_fn, data, c, t, t / r.bpe, lr, S["theta0"], {}, S["mstate"],
                         rule=r.rule)
    timing = S.setdefault("metric_seconds", {})
    for name, fn in list(PRE_METRICS.items()) + [(m, USER_METRICS[m]) for m in c.metrics
                                                  if m in USER_METRICS]:
        if name in want:
            t1 = time.perf_counter()
            try:
                row.update(fn(ctx))
            except FloatingPointError as e:  # non-finite gradients / HVPs of a diverging state
                raise Diverged(t, f"metric {name!r}: {e}") from e
            timing[name] = timing.get(name, 0.0) + time.perf_counter() - t1
            if name == "train" and not math.isfinite(row["train_loss"]):
                raise Diverged(t, "the training loss")  # before the costly curvature metrics
    for name, arr in ctx.cache.get("arrays", {}).items():
        S["arrays"].setdefault(name, []).append(arr)
        S["arrays"].setdefault(name + "_iteration", []).append(t)
    if "softmax" in want and S["n_measure"] % c.softmax_every == 0:
        _, _, probs = evaluate(r.model, r.loss_fn, data.test.x, data.test.y, softmax=True)
        S["softmax"].append(probs.astype(np.float32))
        S["arrays"].setdefault("softmax_iteration", []).append(t)
    if "delta_loss" in want:  # Delta L: loss on the measurement set before minus after the step
        if "train_loss" in row:
            row["_loss_before"] = row["train_loss"]
        else:
            m = data.train if c.train_eval_on == "train" else data.measure
            row["_loss_before"] = evaluate(r.model, r.loss_fn, m.x, m.y)[0]
    if "train" in want:
        if not math.isfinite(row["train_loss"]):
            raise Diverged(t, "the training loss")
        for thr in c.acc_thresholds:
            k = repr(thr)
            if k not in S["crossings"] and row["train_acc"] > thr:
                S["crossings"][k] = {"iteration": t, "epoch": t / r.bpe}
    S["n_measure"] += 1
    ctx.cache.pop("arrays", None)
    S["_ctx_cache"] = ctx.cache  # K vectors for g_over_g5 (dropped before checkpoint)
    S["measure_seconds"] += time.perf_counter() - t0
    return row


def _finish_row(r: _Run, row: dict) -> None:
    row.pop("_loss_before", None)
    for col in STEP_METRICS:
        if col in r.want:
            row.setdefault(col, float("nan"))
    r.S["rows"].append(row)


def _gradient(r: _Run, x, y, t: int) -> tuple[float, list]:
    """Mini-batch (or full-batch, chunked) loss and gradient at theta_t."""
    c = r.config
    r.model.train()
    for p in r.params:
        p.grad = None
    if c.full_batch and c.gd_chunk is not None and c.gd_chunk < len(y):
        loss_val = 0.0
        for xs, ys in zip(x.split(c.gd_chunk), y.split(c.gd_chunk)):
            part = r.loss_fn(r.model(xs), ys) * (len(ys) / len(y))
            part.backward()
            loss_val += float(part.detach())
    else:
        loss = r.loss_fn(r.model(x), y)
        loss.backward()
        loss_val = float(loss.detach())
    if not math.isfinite(loss_val):
        raise Diverged(t, "the mini-batch loss")
    return loss_val, [p.grad if p.grad is not None else torch.zeros_like(p) for p in r.params]


def _gradient_metrics(r: _Run, row: dict, g_vec: torch.Tensor) -> None:
    """Step metrics read off the step's gradient: ||g||, cos(g_{t-1}, g_t), ||g||/||g_5||."""
    if "grad_norm" in r.want:
        row["grad_norm"] = float(g_vec.norm())
    if "grad_cos" in r.want:
        pg = r.S["prev_grad"]
        row["grad_cos"] = (float(torch.dot(pg, g_vec) / (pg.norm() * g_vec.norm()))
                           if pg is not None else float("nan"))
    if "g_over_g5" in r.want:
        V = r.S.get("_ctx_cache", {}).get("K_vectors")
        if V is not None:
            row["g_over_g5"] = gradient_norm_ratio(g_vec, V, k=5)


def _step(r: _Run, x, y, row: dict | None, e: int) -> None:
    """theta_t -> theta_{t+1} by the update rule; completes a measured row with its
    step metrics (Delta L after the step); then the progress bar and the hooks."""
    S, want = r.S, r.want
    t = S["iteration"]
    lr = r.sched(t)
    loss_val, grads = _gradient(r, x, y, t)
    g_vec = None
    if row is not None or ("grad_cos" in want and (t + 1) in r.measure_set):
        g_vec = torch.cat([g.reshape(-1) for g in grads]).detach().clone()
    if row is not None:
        _gradient_metrics(r, row, g_vec)
    r.rctx.iteration = t
    r.rule(r.params, grads, lr, r.rctx)
    if row is not None:
        if not all(torch.isfinite(p).all() for p in r.params):
            raise Diverged(t + 1, "a parameter")
        if "delta_loss" in want:
            m = r.data.train if r.config.train_eval_on == "train" else r.data.measure
            after, _ = evaluate(r.model, r.loss_fn, m.x, m.y)
            row["delta_loss"] = row.pop("_loss_before") - after
        _finish_row(r, row)
        S.pop("_pending", None)
    # previous gradient for grad_cos: keep only when the next step is measured
    S["prev_grad"] = g_vec if (t + 1) in r.measure_set and "grad_cos" in want else None
    S["iteration"] += 1
    S["batch"] += 1
    r.bar.update(1)
    info = {"iteration": S["iteration"], "epoch": e, "loss": loss_val,
            "batch_size": len(y), "lr": lr, "model": r.model}
    for h in r.hooks:
        h(info)


def _end_of_epoch(r: _Run) -> None:
    """Next epoch; the plateau schedule observes the validation loss."""
    S = r.S
    S["epoch"] += 1
    S["batch"] = 0
    if r.config.schedule == "plateau":
        vl, _ = evaluate(r.model, r.loss_fn, r.data.val.x, r.data.val.y)
        if not math.isfinite(vl):
            raise Diverged(S["iteration"], "the validation loss")
        r.sched.observe(vl)


def _final_measurement(r: _Run) -> None:
    """The row at the last iteration (no step after it: NaN step metrics)."""
    S = r.S
    if not S["stopped"] and S["iteration"] >= r.total and r.total in r.measure_set and \
            (not S["rows"] or S["rows"][-1]["iteration"] != r.total):
        _finish_row(r, _measure(r, r.total))


def _finish(r: _Run, status: str, diverged_at: int | None) -> TrainOutput:
    """The final H spectrum (if asked for) and the :class:`TrainOutput`."""
    S = r.S
    S.pop("_ctx_cache", None)
    S.pop("_pending", None)
    if "H_spectrum" in r.want:
        final_H_spectrum(r.model, r.loss_fn, r.data, r.config, S["mstate"], S["arrays"])
    rule = r.rule
    return TrainOutput(
        rows=S["rows"], arrays=S["arrays"], softmax=S["softmax"], status=status,
        diverged_at=diverged_at, crossings=S["crossings"],
        seconds=r.seconds_before + time.perf_counter() - r.t_start,
        measure_seconds=S["measure_seconds"], iterations=S["iteration"],
        info={"batches_per_epoch": r.bpe, "total_iters": r.total, "n_resumes": S["n_resumes"],
              "n_measurements": S["n_measure"], "metric_seconds": S.get("metric_seconds", {}),
              "n_parameters": sum(p.numel() for p in r.params),
              **({"sigma2": rule.sigma2, "v_max": rule.v_max} if hasattr(rule, "sigma2") else {}),
              **(rule.info() if hasattr(rule, "info") else {})})
