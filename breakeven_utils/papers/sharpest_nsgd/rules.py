"""Sharpest-directions paper (Jastrzebski et al. 2018): Nudged SGD (Sec. 4) and the
subspace-restricted SGD variants (Sec. 3.3, Fig. 5) as update rules of the recorder
(registered by ``plugins``).

Update rules (``RunConfig(update_rule=name, rule_kwargs={...})``), all subclasses
of the recorder's :class:`~breakeven_utils.recorder.rules.SGDRule`, so the run store,
resume (the eigenvectors are part of the rule's state) and divergence handling
apply:

* ``nsgd`` (Sec. 4): Delta theta = -eta (I + (gamma - 1) P P^T) g, P the top-K
  Hessian eigenvectors (K = 5), refreshed at the start of every epoch by a
  Lanczos warm-started from the previous P. g includes the L2 term (the
  authors' Keras code differentiates the regularised loss). With momentum
  (Table 3) the *gradient* is rescaled before it enters the momentum buffer.
  With ``k=1, refresh='iteration'`` it is Fig. 5's "gamma-rescaling along e1".
  gamma = 1 is SGD bit for bit.
* ``sgd_top``: g -> <g, e1(t)> e1(t); ``sgd_no_top``: g -> g - <g, e1(t)> e1(t);
  ``sgd_constant_top``: g -> <g, e1(0)> e1(0) (e1 at the rule's first step).
  e1(t) is recomputed before every step (warm start); ``sgd_constant_top``
  recomputes it too, only to record rho(H) along the run.

rule_kwargs: ``gamma`` (> 0, nsgd only), ``k`` (eigenvectors; nsgd default 5,
variants 1), ``refresh`` ('epoch', 'iteration' or every n iterations),
``hessian_n`` (examples of the measurement set; default the config's),
``tol`` (Lanczos residual tolerance; default the config's ``hessian_tol``),
``max_hvp`` (Lanczos space, default min(D, 300)). Eigenpairs are by magnitude
(``which='LM'``, the authors' ``eigsh`` default), inference mode, L2 included
(``sharpest.top_eigs``). Every refresh is logged (iteration, eigenvalues, HVPs,
warm or cold) in ``rule.log``, which the recorder stores in the run's info.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from breakeven_utils.curvature import HessianEigs
from breakeven_utils.papers.sharpest_nsgd.sharpest import top_eigs
from breakeven_utils.recorder.loop import Diverged
from breakeven_utils.recorder.rules import RuleContext, SGDRule

__all__ = [
    "nudged_direction", "EigenRule", "NSGDRule", "SGDTopRule", "SGDNoTopRule",
    "SGDConstantTopRule", "check_rule_kwargs", "RULE_NAMES",
]


RULE_NAMES = ("nsgd", "sgd_top", "sgd_constant_top", "sgd_no_top")


def nudged_direction(g: torch.Tensor, P: torch.Tensor, gamma: float) -> torch.Tensor:
    """g + (gamma - 1) P^T (P g) (Sec. 4): the gradient with its component in the span
    of the rows of P (K x D, orthonormal rows, the layout of ``hessian_eigs(...).vectors``)
    scaled by gamma. Returns a new flat tensor; gamma = 1 returns an exact copy of g."""
    if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool)
            and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    if g.dim() != 1:
        raise ValueError(f"g must be a flat vector, got shape {tuple(g.shape)}")
    if P.dim() != 2 or P.shape[1] != g.numel():
        raise ValueError(f"P must be K x {g.numel()}, got {tuple(P.shape)}")
    if gamma == 1:
        return g.clone()
    P = P.to(g)
    return g + (gamma - 1.0) * (P.T @ (P @ g))


def _project_out(g, e, keep: bool):
    """<g, e> e (keep=True) or g - <g, e> e (keep=False), e a unit vector."""
    c = torch.dot(g, e) * e
    return c if keep else g - c


_DEFAULTS = {"nsgd": {"gamma": 1.0, "k": 5, "refresh": "epoch"},
             "sgd_top": {"k": 1, "refresh": "iteration"},
             "sgd_no_top": {"k": 1, "refresh": "iteration"},
             "sgd_constant_top": {"k": 1, "refresh": "iteration"}}


_KEYS = ("gamma", "k", "refresh", "hessian_n", "tol", "max_hvp")


def _batches_per_epoch(config) -> int | None:
    if config.n_train is None:
        return None
    return config.n_train if config.full_batch else config.n_train // config.batch_size


def check_rule_kwargs(name: str, config, kwargs: dict | None = None) -> dict:
    """Validated settings of rule ``name`` for ``config`` (its ``rule_kwargs`` unless
    ``kwargs`` is given), with defaults filled in; ValueError before any compute for
    gamma <= 0, K < 1 or larger than the Lanczos space (or n_parameters, checked when
    the rule is built), an unknown key, or a refresh schedule that never refreshes
    within the run."""
    if name not in _DEFAULTS:
        raise ValueError(f"unknown eigenvector rule {name!r}; valid: {', '.join(_DEFAULTS)}")
    kw = dict(config.rule_kwargs if kwargs is None else kwargs)
    unknown = set(kw) - set(_KEYS) - ({"gamma"} if name == "nsgd" else set())
    if "gamma" in kw and name != "nsgd":
        raise ValueError(f"rule {name!r} takes no gamma (use update_rule='nsgd' for rescaling)")
    if unknown:
        raise ValueError(f"rule {name!r}: unknown rule_kwargs {sorted(unknown)}; valid: {_KEYS}")
    s = {**_DEFAULTS[name], "hessian_n": config.hessian_n, "tol": config.hessian_tol,
         "max_hvp": None, **kw}
    if name == "nsgd":
        g = s["gamma"]
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g <= 0:
            raise ValueError(f"nsgd: gamma must be a positive finite number, got {g!r}")
        s["gamma"] = float(g)
    k = s["k"]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name}: k must be a positive integer, got {k!r}")
    if name != "nsgd" and k != 1:
        raise ValueError(f"{name} uses the top eigenvector only: k must be 1, got {k!r}")
    mh = s["max_hvp"]
    if mh is not None and (isinstance(mh, bool) or not isinstance(mh, (int, np.integer)) or mh < 1):
        raise ValueError(f"{name}: max_hvp must be a positive integer, got {mh!r}")
    space = min(300, mh) if mh is not None else 300
    if k > space:
        raise ValueError(f"{name}: k={k} eigenvectors exceed the Lanczos space of {space} vectors")
    hn = s["hessian_n"]
    if hn is not None and (isinstance(hn, bool) or not isinstance(hn, (int, np.integer)) or hn < 1):
        raise ValueError(f"{name}: hessian_n must be a positive integer, got {hn!r}")
    if hn is not None and config.n_measure is not None and hn > config.n_measure:
        raise ValueError(f"{name}: hessian_n={hn} exceeds n_measure={config.n_measure}")
    if not (isinstance(s["tol"], (int, float)) and s["tol"] > 0):
        raise ValueError(f"{name}: tol must be positive, got {s['tol']!r}")
    r = s["refresh"]
    if r not in ("epoch", "iteration"):
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(f"{name}: refresh must be 'epoch', 'iteration' or a positive number "
                             f"of iterations, got {r!r} (the eigenvectors would never be refreshed)")
        bpe = _batches_per_epoch(config)
        total = config.max_iters
        if bpe is not None and config.max_epochs is not None:
            total = min(total or math.inf, config.max_epochs * bpe)
        if total is not None and r >= total:
            raise ValueError(f"{name}: refresh every {r} iterations never refreshes the "
                             f"eigenvectors within the run's {total} iterations")
    if r == "epoch" and name != "nsgd":
        pass  # allowed (coarser e1); the paper recomputes it every iteration
    return s


class EigenRule(SGDRule):
    """SGD whose gradient is transformed with the top-K Hessian eigenvectors P.

    ``torch.optim.SGD`` semantics as :class:`SGDRule`, except that the L2 term is
    added to the gradient *before* the transform (the regularised loss's gradient is
    nudged, as in the authors' code) and the transformed gradient enters the
    momentum buffer. Eigenpairs: ``sharpest.top_eigs`` (LM, L2 included, warm start
    from the previous P) on the first ``hessian_n`` measurement examples.
    """

    name = ""

    @classmethod
    def check_config(cls, config) -> None:
        """Called by ``RunConfig.validate``: the rule's settings, before any compute."""
        check_rule_kwargs(cls.name, config)

    @classmethod
    def plan_solves(cls, config, iterations: int, epochs: float) -> list:
        """For the cost plan (``plan.run_cost``): [(k, tol, which, hessian_n, count)] of the
        eigenvector refreshes a run of ``iterations`` steps makes (``hessian_n`` None: the
        whole measurement set): every step, every epoch start, or every r steps."""
        s = check_rule_kwargs(cls.name, config)
        r = s["refresh"]
        count = (iterations if r == "iteration" else math.ceil(epochs) if r == "epoch"
                 else math.ceil(iterations / int(r)))
        return [(s["k"], s["tol"], "LM", s["hessian_n"], count)]

    def __init__(self, params, config, *, mask=None, nesterov: bool = False, **kwargs):
        self.s = check_rule_kwargs(self.name, config, kwargs)
        super().__init__(params, config, mask=mask, nesterov=nesterov)
        D = sum(p.numel() for p in self.params)
        if self.s["k"] >= D:
            raise ValueError(f"{self.name}: k={self.s['k']} eigenvectors need more than the "
                             f"model's D={D} parameters")
        self.P: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.log: list[dict] = []
        self._l2 = None
        self._refreshed_at = -1

    # -- eigenvectors
    def _l2_mask(self):
        if self._l2 is None:
            self._l2 = torch.cat([torch.full((p.numel(),), float(m), dtype=p.dtype, device=p.device)
                                  for p, m in zip(self.params, self.mask)])
        return self._l2

    def refresh(self, ctx: RuleContext) -> None:
        """Recompute the top-k eigenpairs at the current parameters (warm start from P)."""
        if not all(torch.isfinite(p).all() for p in self.params):
            raise Diverged(ctx.iteration, "a parameter (before the eigenvector refresh)")
        m, n = ctx.data.measure, self.s["hessian_n"]
        xy = (m.x, m.y) if n is None else (m.x[:n], m.y[:n])
        if n is not None and n > len(m.y):
            raise ValueError(f"{self.name}: hessian_n={n} exceeds the {len(m.y)} measurement examples")
        wd = self.config.weight_decay
        warm = self.P is not None
        try:
            h = top_eigs(ctx.model, ctx.loss_fn, xy, self.s["k"], which="LM", tol=self.s["tol"],
                         v0=self.P, weight_decay=wd, mask=self._l2_mask() if wd > 0 else None,
                         bn_mode=self.config.hessian_bn_mode, seed=self.config.seed,
                         max_hvp=self.s["max_hvp"])
        except RuntimeError:
            if not all(torch.isfinite(p).all() for p in self.params):
                raise Diverged(ctx.iteration, "a parameter") from None
            raise
        if not torch.isfinite(h.values).all():
            raise Diverged(ctx.iteration, "the Hessian eigenvalues")
        self.P = h.vectors.detach().to(self.params[0].dtype).clone()
        self.values = h.values.detach().clone()
        self._refreshed_at = int(ctx.iteration)
        self.log.append({"iteration": int(ctx.iteration), "values": [float(v) for v in h.values],
                         "n_hvp": int(h.n_hvp), "warm": bool(warm)})

    def eigs_at(self, iteration: int, k: int, n, tol: float):
        """The eigenpairs of the refresh at ``iteration`` (a ``HessianEigs`` with the top
        ``k``), if the rule refreshed there with at least ``k`` vectors, the same examples
        and a tolerance at least as tight; else None. Lets the ``hessian_top`` metric reuse
        the refresh at an epoch start instead of repeating it."""
        if (self.P is None or not self.log or self.log[-1]["iteration"] != iteration
                or self.s["k"] < k or self.s["hessian_n"] != n or self.s["tol"] > tol
                or self._refreshed_at != iteration):
            return None
        return HessianEigs(values=self.values[:k].clone(), vectors=self.P[:k].clone(), n_hvp=0,
                           which="LM")

    def _due(self, ctx) -> bool:
        r = self.s["refresh"]
        if r == "iteration":
            return True
        if r == "epoch":
            return self.P is None
        return self.P is None or ctx.iteration % int(r) == 0

    def on_epoch_start(self, ctx: RuleContext) -> None:
        if self.s["refresh"] == "epoch":
            self.refresh(ctx)

    # -- the step: SGDRule's momentum step on the transformed L2-included gradient
    def __call__(self, params, grads, lr: float, ctx: RuleContext) -> None:
        if self._due(ctx):
            self.refresh(ctx)
        super().__call__(params, grads, lr, ctx)

    def step_direction(self, params, grads, ctx):
        """d = direction(g + wd * theta): the L2 term is nudged with the loss gradient."""
        return self.direction(self.add_l2(params, grads), ctx)

    def transform(self, g: torch.Tensor) -> torch.Tensor:  # flat -> flat
        raise NotImplementedError

    def direction(self, grads, ctx):
        flat = torch.cat([g.reshape(-1) for g in grads])
        out = self.transform(flat)
        if out is None:
            return grads
        return [c.view_as(g) for c, g in zip(out.split([g.numel() for g in grads]), grads)]

    # -- state (resume)
    def state_dict(self) -> dict:
        return {**super().state_dict(),
                "P": None if self.P is None else self.P.clone(),
                "values": None if self.values is None else self.values.clone(),
                "log": [dict(e) for e in self.log], "refreshed_at": self._refreshed_at}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        dev = self.params[0].device
        self.P = None if d["P"] is None else d["P"].clone().to(dev)
        self.values = None if d["values"] is None else d["values"].clone()
        self.log = [dict(e) for e in d["log"]]
        self._refreshed_at = d.get("refreshed_at", -1)

    def info(self) -> dict:
        """What the recorder stores in the run's info: the refresh log."""
        return {"rule_log": self.log}


class NSGDRule(EigenRule):
    """Nudged SGD (Sec. 4): g -> g + (gamma - 1) P P^T g (see :func:`nudged_direction`)."""

    name = "nsgd"

    def transform(self, g):
        if self.s["gamma"] == 1.0:
            return None  # the gradient itself: SGD bit for bit
        return nudged_direction(g, self.P, self.s["gamma"])


class SGDTopRule(EigenRule):
    """"SGD top" (Sec. 3.3, variant 1): g -> <g, e1(t)> e1(t)."""

    name = "sgd_top"

    def transform(self, g):
        return _project_out(g, self.P[0], keep=True)


class SGDNoTopRule(EigenRule):
    """"SGD no top" (Sec. 3.3, variant 3): g -> g - <g, e1(t)> e1(t)."""

    name = "sgd_no_top"

    def transform(self, g):
        return _project_out(g, self.P[0], keep=False)


class SGDConstantTopRule(EigenRule):
    """"SGD constant top" (Sec. 3.3, variant 2): g -> <g, e1(0)> e1(0), e1(0) the top
    eigenvector at the rule's first step; e1(t) is still recomputed to record rho(H)."""

    name = "sgd_constant_top"

    def __init__(self, params, config, **kwargs):
        super().__init__(params, config, **kwargs)
        self.e1_0: torch.Tensor | None = None

    def refresh(self, ctx):
        super().refresh(ctx)
        if self.e1_0 is None:
            self.e1_0 = self.P[0].clone()

    def transform(self, g):
        return _project_out(g, self.e1_0, keep=True)

    def state_dict(self):
        return {**super().state_dict(), "e1_0": None if self.e1_0 is None else self.e1_0.clone()}

    def load_state_dict(self, d):
        super().load_state_dict(d)
        self.e1_0 = None if d["e1_0"] is None else d["e1_0"].clone().to(self.params[0].device)
