"""The run configuration: :class:`RunConfig`, its validation, (de)serialisation,
its run-store key, and :func:`config_from_profile`.

A :class:`RunConfig` describes a trajectory completely (data, model,
optimiser, schedule, stop, measurements); its canonical JSON plus the package
version hash to the run-store key (:meth:`RunConfig.key`), so equal settings
always find the same stored run. Validation checks everything that can be
checked without loading data and raises before any compute starts; update rules
and metrics that paper sections register are found by name through
``plugins.load_plugins`` (entry points), called at validation time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from breakeven_utils import __version__
from breakeven_utils.core.data import DATASETS
from breakeven_utils.core.models import MODELS
from breakeven_utils.curvature import HVP_METHODS
from breakeven_utils.recorder import plugins
from breakeven_utils.recorder.metrics import DEFAULT_METRICS, METRIC_ALIASES, metric_names
from breakeven_utils.recorder.plugins import load_plugins
from breakeven_utils.recorder.rules import OPTIMIZERS, UPDATE_RULES, WEIGHT_DECAY_ON
from breakeven_utils.recorder.schedules import SCHEDULES, check_one_cycle

__all__ = [
    "RunConfig",
    "config_from_profile",
    "BN_MODES",
    "is_int",
    "TRAIN_EVAL_ON",
]

BN_MODES = ("eval", "train")
TRAIN_EVAL_ON = ("measure", "train")

# ----------------------------------------------------------------------------- validation helpers


def _choice(what, value, options):
    if value not in options:
        raise ValueError(f"unknown {what} {value!r}; valid options: {', '.join(map(str, options))}")


def _registered(what, value, options):
    """:func:`_choice` for names that plugins may register: when none is installed (the
    package imported from a checkout, not installed), the error says how to get them."""
    if value not in options and not plugins.plugin_modules():
        raise ValueError(f"unknown {what} {value!r}: no plugin of the entry-point group "
                         f"{plugins.PLUGIN_GROUP!r} is installed, so the rules and metrics of the paper "
                         "sections are missing; install the package (make env, or pip install -e .)")
    _choice(what, value, options)


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


# fields added later: absent from to_dict() (so from the run-store key) at their default None
_OMIT_IF_NONE = ("init_from", "one_cycle_iters", "one_cycle_anneal")


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
    initialisation, see ``rules.GDNoiseRule``). ``lr``, ``momentum``,
    ``weight_decay`` (L2 added to the gradient as in ``torch.optim.SGD``) on
    ``weight_decay_on`` in ``'all'``, ``'kernels'`` (conv + linear weights) or
    ``'conv_kernels'`` (conv weights: ResNet-32, break-even App. D).
    ``update_rule``: name in ``UPDATE_RULES`` (``None``: ``'gd_noise'`` for that
    optimiser, else ``'sgd'``), with ``rule_kwargs``. ``gd_chunk``: full-batch
    gradients are accumulated over chunks of this size (memory; changes BN
    batch statistics).
    Schedule (``schedules.Schedule``): ``schedule`` in ``SCHEDULES`` and its fields
    (``one_cycle_iters``/``one_cycle_anneal``: the one-cycle schedule only; left
    out of ``to_dict()`` and the key when None, so earlier keys stay valid).
    Stop: ``max_epochs`` and/or ``max_iters``; ``target_train_acc`` stops at the
    first measurement with train accuracy >= target (break-even: "before
    reaching 65% training accuracy").
    Measurements: see ``metrics.measurement_iterations``; ``metrics`` (groups of
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
    one_cycle_iters: int | None = None  # one_cycle: iterations of the whole schedule
    one_cycle_anneal: float | None = None  # one_cycle: annihilation share (None: 0.1)
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
    # start: None (theta_0 from the initialisation) or {"config": a parent RunConfig as a
    # dict, "iteration": t}: start from the parent trajectory's model state after t steps
    # (runs.state_at); left out of to_dict()/key() when None, so earlier keys stay valid
    init_from: dict | None = None

    def __post_init__(self):
        s = object.__setattr__
        # canonical types, so equal settings hash equally
        for name in ("lr", "momentum", "weight_decay", "noise_factor", "gamma", "plateau_factor",
                     "plateau_threshold", "min_lr", "hessian_tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            s(self, name, float(v))
        for name in ("clr_base_lr", "one_cycle_anneal"):
            v = getattr(self, name)
            if v is not None:
                s(self, name, float(v))
        if is_int(self.one_cycle_iters):
            s(self, "one_cycle_iters", int(self.one_cycle_iters))
        if self.target_train_acc is not None:
            s(self, "target_train_acc", float(self.target_train_acc))
        s(self, "milestones", tuple(int(m) for m in self.milestones))
        s(self, "acc_thresholds", tuple(sorted(float(a) for a in self.acc_thresholds)))
        if self.measure_at is not None:
            s(self, "measure_at", tuple(sorted(set(int(m) for m in self.measure_at))))
        s(self, "model_kwargs", dict(_jsonable(dict(self.model_kwargs))))
        s(self, "rule_kwargs", dict(_jsonable(dict(self.rule_kwargs))))
        if self.init_from is not None:
            if not isinstance(self.init_from, dict):
                raise ValueError(f"init_from must be a dict {{'config', 'iteration'}}, "
                                 f"got {self.init_from!r}")
            s(self, "init_from", dict(_jsonable(dict(self.init_from))))
        if isinstance(self.metrics, str):
            raise ValueError("metrics must be a sequence of names, not a string")
        load_plugins()  # metrics registered by notebook modules, in a fixed order
        names = []
        for m in self.metrics:
            g = METRIC_ALIASES.get(m, m)
            _registered("metric", g, metric_names())
            names.append(g)
        if (self.target_train_acc is not None or self.acc_thresholds) and "train" not in names:
            names.append("train")
        order = metric_names()
        s(self, "metrics", tuple(sorted(set(names), key=order.index)))
        self.validate()

    # -- validation: everything checkable without loading data
    def validate(self) -> None:
        """Raise ValueError for an invalid configuration (before any compute)."""
        _choice("dataset", self.dataset, tuple(DATASETS))
        _choice("model", self.model, tuple(MODELS))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("weight_decay_on", self.weight_decay_on, WEIGHT_DECAY_ON)
        load_plugins()  # update rules registered by notebook modules
        _registered("update rule", self.rule_name, tuple(UPDATE_RULES))
        check = getattr(UPDATE_RULES[self.rule_name], "check_config", None)
        if check is not None:  # a rule's own settings (rule_kwargs), e.g. NSGD's gamma
            check(self)
        if self.init_from is not None:
            self._check_init_from()
        _choice("hessian_bn_mode", self.hessian_bn_mode, BN_MODES)
        _choice("K_bn_mode", self.K_bn_mode, BN_MODES)
        _choice("normalize", self.normalize, ("standard", "unit"))
        if "K1" in self.metrics and (not is_int(self.K1_L) or self.K1_L < 2):
            raise ValueError(f"K1_L must be an integer >= 2, got {self.K1_L!r}")
        if "K1" in self.metrics and self.n_train is not None and self.K1_L > self.n_train:
            raise ValueError(f"K1_L={self.K1_L} is larger than n_train={self.n_train}")
        if "H_spectrum" in self.metrics:
            if "lambda_H" not in self.metrics:
                raise ValueError("metric 'H_spectrum' needs 'lambda_H' (it keeps the state at "
                                 "the largest lambda_H^1)")
            if not is_int(self.spectrum_k) or self.spectrum_k < 1:
                raise ValueError(f"spectrum_k must be a positive integer, got {self.spectrum_k!r}")
        _choice("hessian_which", self.hessian_which, ("LA", "LM"))
        _choice("hessian_method", self.hessian_method, tuple(HVP_METHODS))
        _choice("hessian_solver", self.hessian_solver, ("lanczos", "arpack"))
        _choice("train_eval_on", self.train_eval_on, TRAIN_EVAL_ON)
        for name in ("n_train", "n_val", "n_test", "n_measure", "max_epochs", "max_iters",
                     "gd_chunk", "K_M", "measure_dense_until", "hessian_n"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
        for name in ("batch_size", "hessian_k", "softmax_every", "clr_step_size"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("data_seed", "seed", "measure_every", "measure_every_epochs", "warmup_iters",
                     "flat_iters", "anneal_iters", "plateau_patience"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
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
        check_one_cycle(self)
        if self.schedule == "trapezoid" and self.warmup_iters + self.flat_iters + self.anneal_iters == 0:
            raise ValueError("trapezoid schedule needs warmup_iters + flat_iters + anneal_iters > 0")
        if self.measure_at is not None and any(m < 0 for m in self.measure_at):
            raise ValueError("measure_at iterations must be non-negative")
        if not self.hessian_tol >= 0:
            raise ValueError(f"hessian_tol must be >= 0, got {self.hessian_tol!r}")
        if not is_int(self.K_L) or self.K_L < 2:
            raise ValueError(f"K_L must be an integer >= 2, got {self.K_L!r}")
        if "K" in self.metrics and self.n_train is not None:
            M = self.K_M if self.K_M is not None else (None if self.full_batch else self.batch_size)
            if M is not None and self.K_L * M > self.n_train:
                raise ValueError(f"K needs K_L*K_M = {self.K_L}*{M} <= n_train = {self.n_train} "
                                 "(mini-batches drawn without replacement); lower K_L or K_M")
        if "g_over_g5" in self.metrics and self.K_L < 6:
            raise ValueError("g_over_g5 needs K_L >= 6 (5 non-zero eigenvectors of K)")

    def _check_init_from(self) -> None:
        d = self.init_from
        if set(d) != {"config", "iteration"}:
            raise ValueError(f"init_from needs exactly the keys 'config' and 'iteration', got {sorted(d)}")
        t = d["iteration"]
        if not is_int(t) or t < 1:
            raise ValueError(f"init_from iteration must be a positive integer, got {t!r}")
        if not isinstance(d["config"], dict):
            raise ValueError("init_from['config'] must be a RunConfig as a dict (RunConfig.to_dict())")
        parent = RunConfig.from_dict(d["config"])
        for f in ("dataset", "model", "model_kwargs"):
            if getattr(parent, f) != getattr(self, f):
                raise ValueError(f"init_from: the parent run has {f}={getattr(parent, f)!r}, this run "
                                 f"{getattr(self, f)!r}: the model state would not fit")

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
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.name in _OMIT_IF_NONE and getattr(self, f.name) is None)}

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


def is_int(v) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
