"""How the recorder steps: update rules and learning-rate schedules.

* Optimisers (``OPTIMIZERS``): SGD (constant or scheduled learning rate,
  momentum, weight decay with ``torch.optim.SGD`` semantics,
  :class:`SGDRule`), full-batch gradient descent (``'gd'``: the SGD rule on
  the full-batch gradient) and GD plus isotropic Gaussian noise
  (``'gd_noise'``, A Walk with SGD Sec. 4, :class:`GDNoiseRule`).
* A pluggable update rule (:class:`UpdateRule`, registry ``UPDATE_RULES``,
  :func:`register_rule`): the loop computes the mini-batch gradient, the rule
  turns it into a step. Nudged SGD and the "top-only / no-top / constant-top"
  variants of the sharpest-directions paper subclass :class:`SGDRule` and
  override :meth:`UpdateRule.direction` / :meth:`UpdateRule.on_epoch_start`
  and :meth:`SGDRule.step_direction` (they transform the L2-included gradient).
* Learning-rate schedules (``SCHEDULES``): constant, step decay, decay on
  validation plateau, cyclic (CLR, triangular), trapezoid (A Walk with SGD
  Sec. 5) and one-cycle (Smith's 1cycle, sharpest directions Fig. 15), see
  :class:`Schedule`.

Place in the package (a downward stack, no cycles)::

    records -> train -> config -> {rules, metrics} -> {curvature, noise, models, data}

``rules`` imports :class:`~breakeven_utils.config.RunConfig` for type hints
only; a rule defined elsewhere registers itself with :func:`register_rule` in
a module of ``config.PLUGIN_MODULES``, so it is found by name in any process.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from .config import RunConfig

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "WEIGHT_DECAY_ON",
    "Schedule",
    "one_cycle_lr",
    "check_one_cycle",
    "RuleContext",
    "UpdateRule",
    "UPDATE_RULES",
    "register_rule",
    "weight_decay_mask",
    "SGDRule",
    "GDNoiseRule",
    "max_gradient_variance",
]

OPTIMIZERS = ("sgd", "gd", "gd_noise")
SCHEDULES = ("constant", "step", "plateau", "cyclic", "trapezoid", "one_cycle")
WEIGHT_DECAY_ON = ("all", "kernels", "conv_kernels")


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
    * ``one_cycle`` (Smith's 1cycle: L. N. Smith, "A disciplined approach to neural
      network hyper-parameters: Part 1", 2018, Sec. 4.1, the policy behind the
      "single cycle" schedule of the sharpest-directions paper, Fig. 15): one
      triangular CLR cycle shorter than the schedule, linearly up from the base
      b to lr and linearly back down to b, then an annihilation phase linearly
      from b down to m for the remaining iterations. Parameters: T =
      ``one_cycle_iters`` (iterations of the whole schedule, usually the run's;
      required), f = ``one_cycle_anneal`` (fraction of T in the annihilation
      phase, default 0.1), b = ``clr_base_lr`` (default lr / 10), m = ``min_lr``
      (default 0). With h = (1 - f) T / 2 (the half cycle) and c = 2h:
      lr_t = b + (lr - b) t / h for t < h; lr - (lr - b)(t - h) / h for
      h <= t < c; b - (b - m)(t - c) / (T - c) for c <= t < T; m for t >= T.
      So lr_0 = b, lr_h = lr, lr_c = b, lr_T = m (f = 0: up and down only,
      then m). This is ``torch.optim.lr_scheduler.OneCycleLR(max_lr=lr,
      total_steps=T, pct_start=h / T, anneal_strategy='linear',
      three_phase=True, div_factor=lr / b, final_div_factor=b / m)`` except
      that torch ends each phase one or two iterations early (its phase ends
      are pct_start T - 1 and 2 pct_start T - 2).
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
            base = _base_lr(c)
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
        if c.schedule == "one_cycle":
            return one_cycle_lr(t, c.lr, c.one_cycle_iters, _anneal_fraction(c),
                                _base_lr(c), c.min_lr)
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


#: one_cycle: the annihilation phase's default fraction of the schedule
ONE_CYCLE_ANNEAL = 0.1


def _base_lr(c) -> float:
    return c.lr / 10 if c.clr_base_lr is None else c.clr_base_lr


def _anneal_fraction(c) -> float:
    return ONE_CYCLE_ANNEAL if c.one_cycle_anneal is None else c.one_cycle_anneal


def one_cycle_lr(t: int, lr: float, total: int, anneal: float, base: float, final: float) -> float:
    """Smith's one-cycle learning rate at iteration ``t`` (see :class:`Schedule`):
    linearly ``base`` -> ``lr`` -> ``base`` over the first (1 - ``anneal``) ``total``
    iterations, then ``base`` -> ``final`` over the rest; ``final`` from ``total`` on."""
    h = (1.0 - anneal) * total / 2.0
    c = 2.0 * h
    if t < h:
        return base + (lr - base) * t / h
    if t < c:
        return lr - (lr - base) * (t - h) / h
    if t < total:
        return base - (base - final) * (t - c) / (total - c)
    return final


def check_one_cycle(c) -> None:
    """ValueError unless the one-cycle settings of RunConfig ``c`` are usable (called by
    ``RunConfig.validate``, before any compute); its fields are only for that schedule."""
    if c.schedule != "one_cycle":
        for name in ("one_cycle_iters", "one_cycle_anneal"):
            if getattr(c, name) is not None:
                raise ValueError(f"{name} is only used with schedule='one_cycle' "
                                 f"(schedule is {c.schedule!r})")
        return
    T = c.one_cycle_iters
    if T is None:
        raise ValueError("schedule='one_cycle' needs one_cycle_iters (the iterations of the whole "
                         "schedule, usually max_epochs x batches per epoch)")
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 2:
        raise ValueError(f"one_cycle_iters must be an integer >= 2, got {T!r}")
    f = _anneal_fraction(c)
    if not 0 <= f < 1:
        raise ValueError(f"one_cycle_anneal must be in [0, 1) (the annihilation phase's share "
                         f"of one_cycle_iters), got {f!r}")
    if (1 - f) * T < 2:
        raise ValueError(f"one_cycle: the cycle ((1 - one_cycle_anneal) x one_cycle_iters = "
                         f"{(1 - f) * T:g} iterations) needs at least 2 iterations")
    b = _base_lr(c)
    if not b > 0:
        raise ValueError(f"one_cycle: the base learning rate clr_base_lr must be positive, got {b!r}")
    if not c.min_lr <= b:
        raise ValueError(f"one_cycle: min_lr={c.min_lr!r} (the final learning rate) must not exceed "
                         f"the base learning rate {b!r}")


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
    theta <- theta - lr * buf (``nesterov``: d + momentum * buf).

    :meth:`step_direction` (the hook) gives d, the vector that enters the momentum
    buffer; a subclass that transforms the L2-included gradient instead (NSGD:
    d = direction(g + wd * theta)) overrides it and keeps the momentum step."""

    def __init__(self, params, config: RunConfig, *, nesterov: bool = False, **kwargs):
        super().__init__(params, config, **kwargs)
        self.momentum, self.weight_decay = config.momentum, config.weight_decay
        self.nesterov = bool(nesterov)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def add_l2(self, params, grads) -> list[torch.Tensor]:
        """g + wd * theta on the weight-decayed (masked) parameters, g elsewhere."""
        wd = self.weight_decay
        return [g.add(p, alpha=wd) if wd != 0 and self.mask[i] else g
                for i, (p, g) in enumerate(zip(params, grads))]

    def step_direction(self, params, grads, ctx: RuleContext) -> list[torch.Tensor]:
        """d, the vector entering the momentum buffer: direction(g) + wd * theta."""
        return self.add_l2(params, self.direction(grads, ctx))

    @torch.no_grad()
    def __call__(self, params, grads, lr: float, ctx: RuleContext) -> None:
        for i, (p, d) in enumerate(zip(params, self.step_direction(params, grads, ctx))):
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
        self.gen.set_state(d["gen"].cpu())  # a CPU generator, even if the state was loaded onto a GPU


