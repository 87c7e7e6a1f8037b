"""One training loop for every trajectory the papers study, with measurements.

* Optimisers: SGD (constant or scheduled learning rate, momentum, weight decay
  with ``torch.optim.SGD`` semantics), full-batch gradient descent (``'gd'``)
  and GD plus isotropic Gaussian noise (``'gd_noise'``, A Walk with SGD Sec. 4).
* Learning-rate schedules: constant, step decay, decay on validation plateau,
  cyclic (CLR, triangular) and trapezoid (A Walk with SGD Sec. 5), see
  :class:`Schedule`.
* A pluggable update rule (:class:`UpdateRule`, registry ``UPDATE_RULES``): the
  loop computes the mini-batch gradient, the rule turns it into a step. Nudged
  SGD and the "top-only / no-top / constant-top" variants of the
  sharpest-directions paper subclass :class:`SGDRule` and override
  :meth:`UpdateRule.direction` / :meth:`UpdateRule.on_epoch_start`.
* A measurement schedule (dense every ``measure_every`` iterations for the
  first ``measure_dense_until`` iterations, then every ``measure_every_epochs``
  epochs, or explicit ``measure_at`` iterations) and metrics named after the
  papers' symbols (``METRICS``; user metrics via :func:`register_metric`).

Iteration ``t`` is the state after ``t`` steps. A measurement at ``t`` reads the
state theta_t; the step-metrics of the row (``delta_loss``, ``grad_norm``,
``grad_cos``, ``g_over_g5``, ``lr``) describe the step from theta_t to
theta_{t+1}, so the last row (no step after it) has NaN there.

:func:`train` runs the loop in memory; ``records.run`` adds the on-disk run
store (caching, checkpoints, resume) on top of it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import __version__

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

OPTIMIZERS = ("sgd", "gd", "gd_noise")
SCHEDULES = ("constant", "step", "plateau", "cyclic", "trapezoid")
WEIGHT_DECAY_ON = ("all", "kernels", "conv_kernels")
BN_MODES = ("eval", "train")
TRAIN_EVAL_ON = ("measure", "train")

# metric group -> columns it writes (per measurement row)
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("train_loss", "train_acc"),
    "val": ("val_loss", "val_acc"),
    "test": ("test_loss", "test_acc"),
    "delta_loss": ("delta_loss",),
    "lambda_H": ("lambda_H_1",),  # + lambda_H_2..k for hessian_k > 1
    "K": ("lambda_K_1", "lambda_K_star", "lambda_K_ratio", "trace_K"),
    "g_over_g5": ("g_over_g5",),
    "gamma_norm": ("gamma_norm",),
    "dist_init": ("dist_init",),
    "param_norm": ("param_norm",),
    "grad_cos": ("grad_cos",),
    "grad_norm": ("grad_norm",),
    "softmax": (),  # arrays: softmax.npy (n_snapshots x n_test x C)
    "breakeven_lhs": ("s2_H", "breakeven_lhs"),
    "K1": ("lambda_K1_1",),  # lambda_K^1 from per-example gradients (M = 1), break-even App. C
    "H_spectrum": (),  # arrays: H_spectrum (top spectrum_k at the largest lambda_H^1)
}
# aliases (column names) accepted in RunConfig.metrics
_METRIC_ALIASES = {c: g for g, cols in METRIC_COLUMNS.items() for c in cols}
_METRIC_ALIASES.update({"train_acc": "train", "lambda_H_top": "lambda_H", "lambda_K_ratio": "K",
                        "spectrum_K": "K", "spectrum_H": "lambda_H"})
DEFAULT_METRICS = ("train", "val", "test", "delta_loss", "lambda_H", "K", "dist_init",
                   "param_norm", "grad_cos", "grad_norm")
# user metrics: name -> fn(ctx) -> dict[column, float]
_USER_METRICS: dict[str, Callable[["MeasureContext"], dict]] = {}


def _metric_names() -> tuple[str, ...]:
    return tuple(METRIC_COLUMNS) + tuple(_USER_METRICS)


METRICS = tuple(METRIC_COLUMNS)  # built-in metric groups


def register_metric(name: str):
    """Register a per-measurement metric ``fn(ctx) -> {column: value}``.

    ``ctx`` (:class:`MeasureContext`) holds the model, loss, data, config,
    iteration, learning rate, a per-measurement ``cache`` (e.g. ``cache['hessian']``
    when ``'lambda_H'`` ran first) and a persistent, checkpointed ``state`` dict.
    Use it by name in ``RunConfig.metrics``.
    """
    def deco(fn):
        if name in METRIC_COLUMNS or name in _METRIC_ALIASES:
            raise ValueError(f"metric name {name!r} is built in")
        _USER_METRICS[name] = fn
        return fn
    return deco


# ----------------------------------------------------------------------------- config


def _known_models() -> tuple[str, ...] | None:
    try:
        from .models import MODELS
        return tuple(MODELS)
    except Exception:  # pragma: no cover - models.py missing
        return None


def _known_data() -> tuple[str, ...] | None:
    try:
        from .data import DATASETS
        return tuple(DATASETS)
    except Exception:  # pragma: no cover
        return None


def _hvp_methods() -> tuple[str, ...]:
    try:
        from .curvature import HVP_METHODS
        return tuple(HVP_METHODS)
    except Exception:  # pragma: no cover
        return ("auto", "fwdrev", "double_backward", "cached")


def _choice(what, value, options):
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; valid options: {', '.join(map(str, options))}")


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _tuplify(v):
    if isinstance(v, (list, tuple)):
        return tuple(_tuplify(x) for x in v)
    return v


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a trajectory (and so its cache key).

    Data: ``dataset`` name, subset sizes (``None``: the loader's default), the
    subset seed ``data_seed``, ``augment`` (random crop + flip).
    Model: ``model`` name from ``models.MODELS``, ``model_kwargs``, ``init``
    (``None``: the model's default, Keras-style for the papers' Keras models).
    Optimiser: ``optimizer`` in ``OPTIMIZERS``: ``'sgd'`` (mini-batches of
    ``batch_size``), ``'gd'`` (full batch; ``batch_size`` is ignored and set to
    the training-set size) or ``'gd_noise'`` (full batch plus isotropic noise of
    variance ``noise_factor`` x the max per-coordinate gradient variance at
    initialisation, see :class:`GDNoiseRule`). ``lr``, ``momentum``,
    ``weight_decay`` (L2 added to the gradient as in ``torch.optim.SGD``) on
    ``weight_decay_on`` in ``'all'``, ``'kernels'`` (conv + linear weights) or
    ``'conv_kernels'`` (conv weights: ResNet-32, break-even App. D).
    ``update_rule``: name in ``UPDATE_RULES`` (``None``: ``'gd_noise'`` for that
    optimiser, else ``'sgd'``), with ``rule_kwargs``. ``gd_chunk``: full-batch
    gradients are accumulated over chunks of this size (memory; changes BN
    batch statistics).
    Schedule (:class:`Schedule`): ``schedule`` in ``SCHEDULES`` and its fields.
    Stop: ``max_epochs`` and/or ``max_iters``; ``target_train_acc`` stops at the
    first measurement with train accuracy >= target (break-even: "before
    reaching 65% training accuracy").
    Measurements: see :func:`measurement_iterations`; ``metrics`` (groups of
    ``METRIC_COLUMNS`` or their column names, or registered user metrics);
    ``hessian_k``/``hessian_tol``/``hessian_which``/``hessian_bn_mode``
    for lambda_H on the first ``hessian_n`` examples of the measurement set
    (None: all; warm-started from the previous measurement's vectors;
    ``hessian_method``/``hessian_solver``: the HVP and eigensolver of
    ``curvature.hessian_eigs``, defaults 'auto' and 'lanczos'); ``K_L`` and
    ``K_M`` (``None``: the batch size, break-even App. C) and ``K_bn_mode`` for
    K; ``acc_thresholds``: first iteration/epoch with train accuracy above each
    (break-even Fig. 4's vertical lines); ``train_eval_on``: training
    loss/accuracy on the measurement set (default) or the whole training set;
    ``softmax_every``: softmax snapshot every that many measurements.
    """

    # data
    dataset: str = "synthetic"
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    n_measure: int | None = None
    data_seed: int = 0
    augment: bool = False
    # model
    model: str = "simple_cnn"
    model_kwargs: dict = field(default_factory=dict)
    init: str | None = None
    # optimiser
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    weight_decay_on: str = "all"
    noise_factor: float = 0.0
    batch_size: int = 128
    gd_chunk: int | None = None
    update_rule: str | None = None
    rule_kwargs: dict = field(default_factory=dict)
    # schedule
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()  # step: epochs at which lr *= gamma
    gamma: float = 0.1
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    plateau_threshold: float = 1e-4
    min_lr: float = 0.0
    clr_base_lr: float | None = None  # cyclic: lr oscillates between base and lr
    clr_step_size: int = 2000  # iterations per half cycle
    warmup_iters: int = 0  # trapezoid
    flat_iters: int = 0
    anneal_iters: int = 0
    # seeds and stop
    seed: int = 0
    max_epochs: int | None = None
    max_iters: int | None = None
    target_train_acc: float | None = None
    # measurements
    measure_every: int = 50
    measure_dense_until: int | None = None
    measure_every_epochs: int = 1
    measure_at: tuple[int, ...] | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    hessian_k: int = 1
    hessian_n: int | None = None
    hessian_tol: float = 1e-3
    hessian_which: str = "LA"
    hessian_bn_mode: str = "eval"
    hessian_method: str = "auto"
    hessian_solver: str = "lanczos"
    K_L: int = 25
    K_M: int | None = None
    K_bn_mode: str = "train"
    K1_L: int = 500
    spectrum_k: int = 10
    normalize: str = "standard"
    acc_thresholds: tuple[float, ...] = ()
    train_eval_on: str = "measure"
    softmax_every: int = 1

    def __post_init__(self):
        s = object.__setattr__
        # canonical types, so equal settings hash equally
        for name in ("lr", "momentum", "weight_decay", "noise_factor", "gamma", "plateau_factor",
                     "plateau_threshold", "min_lr", "hessian_tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            s(self, name, float(v))
        if self.clr_base_lr is not None:
            s(self, "clr_base_lr", float(self.clr_base_lr))
        if self.target_train_acc is not None:
            s(self, "target_train_acc", float(self.target_train_acc))
        s(self, "milestones", tuple(int(m) for m in self.milestones))
        s(self, "acc_thresholds", tuple(sorted(float(a) for a in self.acc_thresholds)))
        if self.measure_at is not None:
            s(self, "measure_at", tuple(sorted(set(int(m) for m in self.measure_at))))
        s(self, "model_kwargs", dict(_jsonable(dict(self.model_kwargs))))
        s(self, "rule_kwargs", dict(_jsonable(dict(self.rule_kwargs))))
        if isinstance(self.metrics, str):
            raise ValueError("metrics must be a sequence of names, not a string")
        names = []
        for m in self.metrics:
            g = _METRIC_ALIASES.get(m, m)
            _choice("metric", g, _metric_names())
            names.append(g)
        if (self.target_train_acc is not None or self.acc_thresholds) and "train" not in names:
            names.append("train")
        order = _metric_names()
        s(self, "metrics", tuple(sorted(set(names), key=order.index)))
        self.validate()

    # -- validation: everything checkable without loading data
    def validate(self) -> None:
        """Raise ValueError for an invalid configuration (before any compute)."""
        known = _known_data()
        if known is not None:
            _choice("dataset", self.dataset, known)
        known = _known_models()
        if known is not None:
            _choice("model", self.model, known)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("weight_decay_on", self.weight_decay_on, WEIGHT_DECAY_ON)
        _choice("update rule", self.rule_name, tuple(UPDATE_RULES))
        _choice("hessian_bn_mode", self.hessian_bn_mode, BN_MODES)
        _choice("K_bn_mode", self.K_bn_mode, BN_MODES)
        _choice("normalize", self.normalize, ("standard", "unit"))
        if "K1" in self.metrics and (not _is_int(self.K1_L) or self.K1_L < 2):
            raise ValueError(f"K1_L must be an integer >= 2, got {self.K1_L!r}")
        if "K1" in self.metrics and self.n_train is not None and self.K1_L > self.n_train:
            raise ValueError(f"K1_L={self.K1_L} is larger than n_train={self.n_train}")
        if "H_spectrum" in self.metrics:
            if "lambda_H" not in self.metrics:
                raise ValueError("metric 'H_spectrum' needs 'lambda_H' (it keeps the state at "
                                 "the largest lambda_H^1)")
            if not _is_int(self.spectrum_k) or self.spectrum_k < 1:
                raise ValueError(f"spectrum_k must be a positive integer, got {self.spectrum_k!r}")
        _choice("hessian_which", self.hessian_which, ("LA", "LM"))
        _choice("hessian_method", self.hessian_method, _hvp_methods())
        _choice("hessian_solver", self.hessian_solver, ("lanczos", "arpack"))
        _choice("train_eval_on", self.train_eval_on, TRAIN_EVAL_ON)
        for name in ("n_train", "n_val", "n_test", "n_measure", "max_epochs", "max_iters",
                     "gd_chunk", "K_M", "measure_dense_until", "hessian_n"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
        for name in ("batch_size", "hessian_k", "softmax_every", "clr_step_size"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("data_seed", "seed", "measure_every", "measure_every_epochs", "warmup_iters",
                     "flat_iters", "anneal_iters", "plateau_patience"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not self.noise_factor >= 0:
            raise ValueError(f"noise_factor must be >= 0, got {self.noise_factor!r}")
        if self.optimizer == "gd_noise" and self.noise_factor == 0:
            raise ValueError("optimizer='gd_noise' needs noise_factor > 0 (e.g. 0.1 or 0.05)")
        if self.optimizer != "gd_noise" and self.noise_factor != 0:
            raise ValueError("noise_factor is only used with optimizer='gd_noise'")
        if self.n_train is not None and self.optimizer == "sgd" and self.batch_size > self.n_train:
            raise ValueError(f"batch_size={self.batch_size} is larger than n_train={self.n_train}")
        if self.n_measure is not None and self.n_train is not None and self.n_measure > self.n_train:
            raise ValueError(f"n_measure={self.n_measure} is larger than n_train={self.n_train}")
        if self.max_epochs is None and self.max_iters is None:
            raise ValueError("give max_epochs and/or max_iters")
        if self.target_train_acc is not None and not 0 <= self.target_train_acc <= 1:
            raise ValueError(f"target_train_acc must be in [0, 1], got {self.target_train_acc!r}")
        for a in self.acc_thresholds:
            if not 0 <= a <= 1:
                raise ValueError(f"accuracy thresholds must be in [0, 1], got {a!r}")
        if any(m < 0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be non-negative and increasing, got {self.milestones}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma!r}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr], got {self.min_lr!r}")
        if self.clr_base_lr is not None and not 0 <= self.clr_base_lr <= self.lr:
            raise ValueError(f"clr_base_lr must be in [0, lr] (lr is the cycle's maximum), "
                             f"got {self.clr_base_lr!r}")
        if self.schedule == "trapezoid" and self.warmup_iters + self.flat_iters + self.anneal_iters == 0:
            raise ValueError("trapezoid schedule needs warmup_iters + flat_iters + anneal_iters > 0")
        if self.measure_at is not None and any(m < 0 for m in self.measure_at):
            raise ValueError("measure_at iterations must be non-negative")
        if not self.hessian_tol >= 0:
            raise ValueError(f"hessian_tol must be >= 0, got {self.hessian_tol!r}")
        if not _is_int(self.K_L) or self.K_L < 2:
            raise ValueError(f"K_L must be an integer >= 2, got {self.K_L!r}")
        if "K" in self.metrics and self.n_train is not None:
            M = self.K_M if self.K_M is not None else (None if self.full_batch else self.batch_size)
            if M is not None and self.K_L * M > self.n_train:
                raise ValueError(f"K needs K_L*K_M = {self.K_L}*{M} <= n_train = {self.n_train} "
                                 "(mini-batches drawn without replacement); lower K_L or K_M")
        if "g_over_g5" in self.metrics and self.K_L < 6:
            raise ValueError("g_over_g5 needs K_L >= 6 (5 non-zero eigenvectors of K)")

    @property
    def rule_name(self) -> str:
        if self.update_rule is not None:
            return self.update_rule
        return "gd_noise" if self.optimizer == "gd_noise" else "sgd"

    @property
    def full_batch(self) -> bool:
        return self.optimizer in ("gd", "gd_noise")

    # -- serialisation and key
    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RunConfig fields: {sorted(unknown)}")
        return cls(**{k: (_tuplify(v) if not isinstance(v, dict) else v) for k, v in d.items()})

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def key(self, version: str = __version__) -> str:
        """Stable run key: sha256 of the canonical JSON of config + package version."""
        payload = json.dumps({"config": self.to_dict(), "version": version},
                             sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:20]

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def __hash__(self):
        return hash(self.to_json())


_PROFILE_KEYS = ("dataset", "n_train", "n_val", "n_test", "n_measure", "K_L", "K_M", "hessian_k",
                 "hessian_tol", "hessian_n", "measure_every", "measure_dense_until", "max_epochs")


def config_from_profile(profile: dict, **fields) -> RunConfig:
    """A :class:`RunConfig` with the measurement/data settings of a
    ``profiles.get_profile(...)`` dict (its shared keys), then ``fields``."""
    base = {k: profile[k] for k in _PROFILE_KEYS if k in profile}
    if "seed" not in fields and profile.get("seeds"):
        base["seed"] = profile["seeds"][0]
    base.update(fields)
    return RunConfig(**base)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ----------------------------------------------------------------------------- schedules


class Schedule:
    """Learning rate at iteration ``t`` (0-based step index), epoch ``t // bpe``.

    * ``constant``: lr.
    * ``step``: lr * gamma**(number of milestones <= epoch); ``milestones=(100,)``,
      ``gamma=0.1`` divides lr by 10 from epoch 100 on (break-even App. G).
    * ``plateau``: like ``torch.optim.lr_scheduler.ReduceLROnPlateau`` on the
      validation loss measured at the end of every epoch: after more than
      ``plateau_patience`` epochs without a relative improvement of
      ``plateau_threshold``, lr *= ``plateau_factor`` (not below ``min_lr``).
    * ``cyclic`` (CLR, Smith 2017, triangular): with step size s,
      c = floor(1 + t / (2s)), x = |t/s - 2c + 1|,
      lr_t = base + (lr - base) * max(0, 1 - x), base = ``clr_base_lr``
      (default lr / 10): lr_0 = base, lr_s = lr, lr_2s = base.
    * ``trapezoid`` (A Walk with SGD Sec. 5): W = warmup_iters, F = flat_iters,
      A = anneal_iters, m = min_lr: lr_t = m + (lr - m) t / W for t < W;
      lr for W <= t < W + F; lr - (lr - m)(t - W - F) / A for
      W + F <= t < W + F + A; m afterwards.
    """

    def __init__(self, config: RunConfig, batches_per_epoch: int):
        self.c, self.bpe = config, batches_per_epoch
        self.scale = 1.0  # plateau state
        self.best = math.inf
        self.bad_epochs = 0

    def __call__(self, t: int) -> float:
        c = self.c
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "step":
            epoch = t // self.bpe
            return c.lr * c.gamma ** sum(1 for m in c.milestones if m <= epoch)
        if c.schedule == "plateau":
            return max(c.lr * self.scale, c.min_lr)
        if c.schedule == "cyclic":
            base = c.lr / 10 if c.clr_base_lr is None else c.clr_base_lr
            s = c.clr_step_size
            cycle = math.floor(1 + t / (2 * s))
            x = abs(t / s - 2 * cycle + 1)
            return base + (c.lr - base) * max(0.0, 1 - x)
        if c.schedule == "trapezoid":
            w, f, a, m = c.warmup_iters, c.flat_iters, c.anneal_iters, c.min_lr
            if t < w:
                return m + (c.lr - m) * t / w
            if t < w + f:
                return c.lr
            if t < w + f + a:
                return c.lr - (c.lr - m) * (t - w - f) / a
            return m
        raise AssertionError(c.schedule)

    def observe(self, val_loss: float) -> None:
        """End of an epoch (plateau schedule): feed the validation loss."""
        if self.c.schedule != "plateau":
            return
        if val_loss < self.best * (1 - self.c.plateau_threshold):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.c.plateau_patience:
                self.scale *= self.c.plateau_factor
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict) -> None:
        self.scale, self.best, self.bad_epochs = d["scale"], d["best"], d["bad_epochs"]


# ----------------------------------------------------------------------------- update rules


@dataclass
class RuleContext:
    """What an update rule may use besides parameters and gradients."""

    model: nn.Module
    loss_fn: Callable
    data: Any  # data.Data
    config: RunConfig
    epoch: int = 0
    iteration: int = 0


class UpdateRule:
    """theta <- theta - lr * d, with d computed from the mini-batch gradient.

    Subclasses override :meth:`direction` (a transform of the gradient, e.g.
    NSGD's v + (gamma - 1) P P^T v) and the hooks :meth:`on_start` (once, at
    theta_0, not called again on resume) and :meth:`on_epoch_start` (NSGD:
    refresh the top-K eigenvectors every epoch). Persistent state goes in
    :meth:`state_dict` so that a resumed run continues exactly.
    """

    def __init__(self, params: Sequence[torch.Tensor], config: RunConfig, *,
                 mask: Sequence[bool] | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"{type(self).__name__} takes no rule_kwargs {sorted(kwargs)}")
        self.params, self.config = list(params), config
        # weight-decay mask per parameter (RunConfig.weight_decay_on)
        self.mask = list(mask) if mask is not None else [True] * len(self.params)

    def on_start(self, ctx: RuleContext) -> None:
        pass

    def on_epoch_start(self, ctx: RuleContext) -> None:
        pass

    def direction(self, grads: list[torch.Tensor], ctx: RuleContext) -> list[torch.Tensor]:
        return grads

    def __call__(self, params, grads, lr: float, ctx: RuleContext) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


UPDATE_RULES: dict[str, type] = {}


def register_rule(name: str):
    """Class decorator: make an :class:`UpdateRule` available as ``update_rule=name``."""
    def deco(cls):
        UPDATE_RULES[name] = cls
        return cls
    return deco


def weight_decay_mask(model: nn.Module, which: str) -> list[bool]:
    """Per trainable parameter: does weight decay apply ('all' | 'kernels' | 'conv_kernels')."""
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    owners = {}
    for mod in model.modules():
        for pname, p in mod.named_parameters(recurse=False):
            owners[id(p)] = (mod, pname)
    mask = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        mod, pname = owners[id(p)]
        if which == "all":
            mask.append(True)
        elif which == "kernels":
            mask.append(pname == "weight" and isinstance(mod, conv + (nn.Linear,)))
        else:
            mask.append(pname == "weight" and isinstance(mod, conv))
    return mask


@register_rule("sgd")
class SGDRule(UpdateRule):
    """``torch.optim.SGD`` semantics (dampening 0): d = direction(g) + wd * theta
    (on the masked parameters), buf = momentum * buf + d (buf_0 = d),
    theta <- theta - lr * buf (``nesterov``: d + momentum * buf)."""

    def __init__(self, params, config: RunConfig, *, nesterov: bool = False, **kwargs):
        super().__init__(params, config, **kwargs)
        self.momentum, self.weight_decay = config.momentum, config.weight_decay
        self.nesterov = bool(nesterov)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def __call__(self, params, grads, lr: float, ctx: RuleContext) -> None:
        grads = self.direction(grads, ctx)
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g
            if self.weight_decay != 0 and self.mask[i]:
                d = d.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.clone(d).detach()
                else:
                    buf.mul_(self.momentum).add_(d)
                d = d.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.add_(d, alpha=-lr)

    def state_dict(self) -> dict:
        return {"buffers": [None if b is None else b.clone() for b in self.buffers]}

    def load_state_dict(self, d: dict) -> None:
        self.buffers = [None if b is None else b.clone().to(p.device)
                        for b, p in zip(d["buffers"], self.params)]


def max_gradient_variance(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    """max_j Var_i[g_i,j]: the largest per-coordinate variance of per-example
    gradients g_i over the examples (x, y) (population variance, 1/n), computed
    in float64 by one backward pass per example, with the model in eval mode
    (BatchNorm running statistics; a batch of one has no batch statistics).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was = model.training
    model.eval()
    try:
        s1 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        s2 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        for i in range(len(y)):
            loss = loss_fn(model(x[i:i + 1]), y[i:i + 1])
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            for a, b, g in zip(s1, s2, gs):
                if g is not None:
                    g = g.double()
                    a.add_(g)
                    b.add_(g * g)
        n = len(y)
        return max(float((b / n - (a / n) ** 2).clamp_min(0).max()) for a, b in zip(s1, s2))
    finally:
        model.train(was)


@register_rule("gd_noise")
class GDNoiseRule(SGDRule):
    """GD plus isotropic Gaussian noise (A Walk with SGD, Sec. 4).

    At theta_0 (:meth:`on_start`): v_max = max_j Var_i[g_i,j], the largest
    per-coordinate variance of the per-example gradients over the measurement
    set (:func:`max_gradient_variance`), and sigma^2 = ``noise_factor`` * v_max.
    Every step the direction is g + n with n ~ N(0, sigma^2 I_D) drawn from a
    generator seeded by the run seed (checkpointed); g is the full-batch
    gradient when ``optimizer='gd_noise'``. Then the SGD rule applies.
    """

    def __init__(self, params, config: RunConfig, **kwargs):
        super().__init__(params, config, **kwargs)
        self.sigma2: float | None = None
        self.v_max: float | None = None
        self.gen = torch.Generator().manual_seed(1_000_003 * config.seed + 17)

    def on_start(self, ctx: RuleContext) -> None:
        m = ctx.data.measure
        self.v_max = max_gradient_variance(ctx.model, ctx.loss_fn, m.x, m.y)
        self.sigma2 = self.config.noise_factor * self.v_max

    def direction(self, grads, ctx):
        std = math.sqrt(self.sigma2)
        return [g + std * torch.randn(g.shape, generator=self.gen, dtype=g.dtype).to(g.device)
                for g in grads]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sigma2": self.sigma2, "v_max": self.v_max,
                "gen": self.gen.get_state()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.sigma2, self.v_max = d["sigma2"], d["v_max"]
        self.gen.set_state(d["gen"])


# ----------------------------------------------------------------------------- measurement schedule


def measurement_iterations(config: RunConfig, batches_per_epoch: int, total_iters: int) -> list[int]:
    """Iterations (states after t steps, 0 <= t <= total_iters) at which to measure.

    ``measure_at`` given: exactly those (that are <= total_iters). Otherwise: 0,
    every ``measure_every`` iterations while t < ``measure_dense_until`` (None: the
    whole run), every ``measure_every_epochs`` epochs (t a multiple of
    epochs x batches_per_epoch), and the final iteration ``total_iters``.
    0 switches a part off.
    """
    c = config
    if c.measure_at is not None:
        return [t for t in c.measure_at if t <= total_iters]
    out = {0, total_iters}
    until = total_iters if c.measure_dense_until is None else min(c.measure_dense_until, total_iters + 1)
    if c.measure_every > 0:
        out.update(range(0, until, c.measure_every))
    if c.measure_every_epochs > 0:
        out.update(range(0, total_iters + 1, c.measure_every_epochs * batches_per_epoch))
    return sorted(out)


# ----------------------------------------------------------------------------- metrics


@dataclass
class MeasureContext:
    model: nn.Module
    loss_fn: Callable
    data: Any
    config: RunConfig
    iteration: int
    epoch: float
    lr: float
    theta0: torch.Tensor
    cache: dict
    state: dict


def _params_vector(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def _grad_vector(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             softmax: bool = False):
    """(mean loss, accuracy[, softmax outputs]) in eval mode; model.training restored."""
    was = model.training
    model.eval()
    try:
        tot, correct, probs = 0.0, 0, []
        for i in range(0, len(y), batch_size):
            out = model(x[i:i + batch_size])
            yy = y[i:i + batch_size]
            tot += float(loss_fn(out, yy)) * len(yy)
            correct += int((out.argmax(1) == yy).sum())
            if softmax:
                probs.append(torch.softmax(out.float(), 1).cpu())
        res = (tot / len(y), correct / len(y))
        return res + (torch.cat(probs).numpy(),) if softmax else res
    finally:
        model.train(was)


def _hessian_data(ctx: MeasureContext):
    m, n = ctx.data.measure, ctx.config.hessian_n
    return (m.x, m.y) if n is None else (m.x[:n], m.y[:n])


def _hessian(ctx: MeasureContext):
    if "hessian" not in ctx.cache:
        from .curvature import hessian_eigs
        c = ctx.config
        h = hessian_eigs(ctx.model, ctx.loss_fn, _hessian_data(ctx), k=c.hessian_k, which=c.hessian_which,
                         tol=c.hessian_tol, v0=ctx.state.get("hessian_v0"),
                         bn_mode=c.hessian_bn_mode, seed=c.seed, batch_size=512,
                         method=c.hessian_method, solver=c.hessian_solver)
        ctx.state["hessian_v0"] = h.vectors.detach().clone()
        ctx.cache["hessian"] = h
    return ctx.cache["hessian"]


def _m_lambda_H(ctx):
    h = _hessian(ctx)
    vals = [float(v) for v in h.values]
    ctx.cache.setdefault("arrays", {})["H_top"] = np.asarray(vals, dtype=np.float64)
    return {f"lambda_H_{i + 1}": v for i, v in enumerate(vals)}


def _K_M(c: RunConfig, n_train: int) -> int:
    """M of K^M: ``K_M``, else the training batch size (break-even App. C), else
    (full batch) 128 or n_train // K_L if smaller."""
    if c.K_M is not None:
        return c.K_M
    if c.full_batch:
        return max(1, min(128, n_train // c.K_L))
    return c.batch_size


def _m_K(ctx):
    from .noise import gradient_covariance
    c = ctx.config
    n_vec = 5 if "g_over_g5" in c.metrics else 0
    M = _K_M(c, len(ctx.data.train))
    tr = ctx.data.train
    gc = gradient_covariance(ctx.model, ctx.loss_fn, (tr.x, tr.y), L=c.K_L, M=M,
                             seed=c.seed * 1_000_003 + ctx.iteration, n_vectors=n_vec,
                             bn_mode=c.K_bn_mode)
    if n_vec:
        ctx.cache["K_vectors"] = gc.vectors
    ctx.cache.setdefault("arrays", {})["K_eigs"] = np.asarray(
        torch.as_tensor(gc.eigenvalues).detach().cpu().double().numpy())
    return {"lambda_K_1": float(gc.lambda_1), "lambda_K_star": float(gc.lambda_star),
            "lambda_K_ratio": float(gc.ratio), "trace_K": float(gc.trace)}


def _m_breakeven_lhs(ctx):
    """Eq. (1) of the break-even paper: (1 - lr lambda_H^1)^2 + s^2 lr^2 (N - S) / (S (N - 1)),
    s^2 = Var_i[e^T H_i e] over the measurement set, e = top Hessian eigenvector."""
    from .curvature import per_example_curvature
    c = ctx.config
    h = _hessian(ctx)
    hi = per_example_curvature(ctx.model, ctx.loss_fn, _hessian_data(ctx), h.vectors[0],
                               bn_mode=c.hessian_bn_mode, batch_size=512)
    s2 = float(hi.double().var(unbiased=False))
    lam = float(h.values[0])
    N = len(ctx.data.train)
    S = N if c.full_batch else c.batch_size
    lr = ctx.lr
    noise = s2 * lr ** 2 * (N - S) / (S * (N - 1)) if N > 1 else 0.0
    return {"s2_H": s2, "breakeven_lhs": (1 - lr * lam) ** 2 + noise}


def _m_K1(ctx):
    """lambda_K^1 with M = 1: the Gram of ``K1_L`` per-example gradients (break-even
    App. C, Fig. 9), on examples drawn without replacement from the training set."""
    from .noise import gradient_covariance
    c, tr = ctx.config, ctx.data.train
    gc = gradient_covariance(ctx.model, ctx.loss_fn, (tr.x, tr.y), L=c.K1_L, M=1,
                             seed=c.seed * 1_000_003 + ctx.iteration + 7, bn_mode=c.K_bn_mode)
    return {"lambda_K1_1": float(gc.lambda_1)}


def _m_H_argmax(ctx):
    """Keep the state with the largest lambda_H^1 so far; its top ``spectrum_k``
    Hessian eigenvalues are computed once, at the end of the run (Fig. 3)."""
    lam = float(_hessian(ctx).values[0])
    best = ctx.state.get("H_argmax")
    if best is None or lam > best["lambda_H_1"]:
        ctx.state["H_argmax"] = {
            "lambda_H_1": lam, "iteration": ctx.iteration,
            "model": {k: v.detach().clone() for k, v in ctx.model.state_dict().items()},
            "v0": _hessian(ctx).vectors.detach().clone()}
    return {}


def _final_H_spectrum(model, loss_fn, data, config, mstate, arrays) -> None:
    """Top ``spectrum_k`` eigenvalues of H at the measurement with the largest lambda_H^1."""
    best = mstate.get("H_argmax")
    if best is None:
        return
    import copy

    from .curvature import hessian_eigs
    m = copy.deepcopy(model)
    m.load_state_dict(best["model"])
    mx = data.measure
    xy = (mx.x, mx.y) if config.hessian_n is None else (mx.x[:config.hessian_n], mx.y[:config.hessian_n])
    k = min(config.spectrum_k, sum(p.numel() for p in m.parameters()) - 1)
    h = hessian_eigs(m, loss_fn, xy, k=k, which=config.hessian_which, tol=config.hessian_tol,
                     v0=best["v0"], bn_mode=config.hessian_bn_mode, seed=config.seed,
                     batch_size=512, method=config.hessian_method, solver=config.hessian_solver)
    arrays["H_spectrum"] = [np.asarray([float(v) for v in h.values], dtype=np.float64)]
    arrays["H_spectrum_iteration"] = [best["iteration"]]


def _m_gamma_norm(ctx):
    bns = [m for m in ctx.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or bns[-1].weight is None:
        return {"gamma_norm": float("nan")}
    return {"gamma_norm": float(bns[-1].weight.detach().norm())}


def _m_dist_init(ctx):
    return {"dist_init": float((_params_vector(ctx.model) - ctx.theta0).norm())}


def _m_param_norm(ctx):
    return {"param_norm": float(_params_vector(ctx.model).norm())}


def _m_split(name):
    def fn(ctx):
        split = getattr(ctx.data, name)
        if name == "train" and ctx.config.train_eval_on == "measure":
            split = ctx.data.measure
        if len(split) == 0:
            return {f"{name}_loss": float("nan"), f"{name}_acc": float("nan")}
        loss, acc = evaluate(ctx.model, ctx.loss_fn, split.x, split.y)
        return {f"{name}_loss": loss, f"{name}_acc": acc}
    return fn


# pre-step metrics, in dependency order (breakeven_lhs reuses lambda_H's Hessian)
_PRE_METRICS = {
    "train": _m_split("train"),
    "val": _m_split("val"),
    "test": _m_split("test"),
    "lambda_H": _m_lambda_H,
    "breakeven_lhs": _m_breakeven_lhs,
    "K1": lambda ctx: _m_K1(ctx),
    "H_spectrum": lambda ctx: _m_H_argmax(ctx),
    "K": _m_K,
    "gamma_norm": _m_gamma_norm,
    "dist_init": _m_dist_init,
    "param_norm": _m_param_norm,
}
_STEP_METRICS = ("delta_loss", "grad_cos", "grad_norm", "g_over_g5")


# ----------------------------------------------------------------------------- loop


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
