"""How the recorder steps: update rules.

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
  and :meth:`SGDRule.step_direction` (they transform the L2-included gradient);
  their section registers them in its ``plugins`` module (``recorder.plugins``).

The learning-rate schedules are in ``recorder.schedules``; ``RunConfig`` is
imported for type hints only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from breakeven_utils.recorder.config import RunConfig

__all__ = [
    "OPTIMIZERS",
    "WEIGHT_DECAY_ON",
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
WEIGHT_DECAY_ON = ("all", "kernels", "conv_kernels")


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
        # host draws from the run's seeded CPU generator: the same noise on every device
        return [g + std * torch.randn(g.shape, generator=self.gen, dtype=g.dtype, device="cpu").to(g.device)
                for g in grads]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sigma2": self.sigma2, "v_max": self.v_max,
                "gen": self.gen.get_state()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.sigma2, self.v_max = d["sigma2"], d["v_max"]
        self.gen.set_state(d["gen"].cpu())  # a CPU generator, even if the state was loaded onto a GPU


