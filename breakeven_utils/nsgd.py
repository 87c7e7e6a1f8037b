"""Sharpest-directions paper (Jastrzebski et al. 2018): Nudged SGD (Sec. 4), the
subspace-restricted SGD variants (Sec. 3.3, Fig. 5), and notebook 5's settings,
runs, tables and claims.

Update rules (``RunConfig(update_rule=name, rule_kwargs={...})``), all subclasses
of the recorder's :class:`~breakeven_utils.train.SGDRule`, so the run store,
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

from . import sharpest  # noqa: F401  (registers the metrics hessian_top, sharpest_probe, rho_W)
from .train import Diverged, RuleContext, SGDRule, register_rule

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
        from .sharpest import top_eigs

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
        from .curvature import HessianEigs

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


@register_rule("nsgd")
class NSGDRule(EigenRule):
    """Nudged SGD (Sec. 4): g -> g + (gamma - 1) P P^T g (see :func:`nudged_direction`)."""

    name = "nsgd"

    def transform(self, g):
        if self.s["gamma"] == 1.0:
            return None  # the gradient itself: SGD bit for bit
        return nudged_direction(g, self.P, self.s["gamma"])


@register_rule("sgd_top")
class SGDTopRule(EigenRule):
    """"SGD top" (Sec. 3.3, variant 1): g -> <g, e1(t)> e1(t)."""

    name = "sgd_top"

    def transform(self, g):
        return _project_out(g, self.P[0], keep=True)


@register_rule("sgd_no_top")
class SGDNoTopRule(EigenRule):
    """"SGD no top" (Sec. 3.3, variant 3): g -> g - <g, e1(t)> e1(t)."""

    name = "sgd_no_top"

    def transform(self, g):
        return _project_out(g, self.P[0], keep=False)


@register_rule("sgd_constant_top")
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


# ============================================================================= notebook 5: settings and runs

#: the paper's numbers (value, where it comes from)
PAPER_VALUES = {
    "kmin1_simplecnn": (3.36, "Sec. 3.2: average k_min for a 1% change, SimpleCNN"),
    "kmin10_simplecnn": (5.52, "Sec. 3.2: average k_min for a 10% change, SimpleCNN"),
    "kmin1_resnet32": (1.56, "Sec. 3.2: average k_min for a 1% change, ResNet-32"),
    "kmin10_resnet32": (4.08, "Sec. 3.2: average k_min for a 10% change, ResNet-32"),
    "alpha_simplecnn": ({0.25: -0.02, 0.5: -0.02, 2.0: 0.021, 4.0: 0.111},
                        "Sec. 3.2: alpha=2, 4 raise the loss by 2.1%, 11.1%; 0.25, 0.5 lower it ~2%"),
    "alpha_resnet32": ({0.25: -0.03, 0.5: -0.03, 2.0: 0.03, 4.0: 0.131},
                       "Sec. 3.2: alpha=2, 4 raise the loss by 3%, 13.1%; 0.25, 0.5 lower it ~3%"),
    # Table 1, SimpleCNN (bottom): gamma or SGD(eta) -> (||H||_F best/last10, test acc, val acc
    # (50), loss, dist, rho(W))
    "table1_simplecnn": ({
        "nsgd 0.01": ("307/422", 87.0, 82.8, 0.00761, 20.50, 60.06),
        "nsgd 0.1": ("126/248", 87.2, 82.7, 0.00206, 20.68, 60.20),
        "nsgd 1": ("8/12", 86.4, 81.5, 0.00252, 20.95, 60.38),
        "nsgd 10": ("54/1", 85.3, 74.9, 0.00330, 23.36, 63.52),
        "sgd 0.1": ("1/0", 87.9, 85.2, 0.00037, 62.53, 120.13),
        "sgd 0.005": ("45/35", 86.0, 77.6, 0.00937, 17.10, 55.55),
        "sgd 0.0025": ("149/183", 85.3, 71.8, 0.02454, 14.37, 52.39)}, "Table 1 (bottom)"),
    "table1_resnet32": ({
        "nsgd 0.01": ("483/1,559", 87.4, 58.3, 0.06067, 22.99, 159.81),
        "nsgd 0.1": ("350/816", 87.2, 57.0, 0.06128, 23.41, 161.42),
        "nsgd 1": ("103/121", 86.6, 54.0, 0.06443, 24.62, 166.47),
        "nsgd 10": ("54/19", 85.2, 43.8, 0.10194, 29.39, 187.77),
        "sgd 0.1": ("9/13", 89.7, 82.6, 0.10787, 34.90, 216.35),
        "sgd 0.005": ("278/511", 85.6, 41.7, 0.08392, 21.21, 147.17),
        "sgd 0.0025": ("683/1,190", 84.8, 30.9, 0.10304, 18.65, 131.73)}, "Table 1 (top)"),
    "table3_simplecnn": ({
        "nsgd 0.01": ("36/51", 88.7, 86.8, 0.00016, 60.38, 118.42),
        "nsgd 1": ("1/1", 88.4, 86.3, 0.00011, 60.77, 118.71),
        "nsgd 5": ("0/0", 88.5, 85.6, 0.00098, 63.12, 120.86)}, "Table 3 (bottom), momentum 0.9"),
    "table3_resnet32": ({
        "nsgd 0.01": ("94/185", 90.2, 86.9, 0.09854, 36.10, 231.06),
        "nsgd 1": ("20/28", 90.0, 84.9, 0.10232, 35.95, 228.01),
        "nsgd 5": ("0/0", 89.6, 82.0, 0.11102, 35.12, 217.69)}, "Table 3 (top), momentum 0.9"),
}


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``nsgd`` section and ``overrides``."""
    from .profiles import get_profile

    return get_profile(profile, section="nsgd", **overrides)


def _base(s: dict, fam: dict, **fields):
    """A RunConfig from the shared data keys, a model family dict and the fields."""
    from .train import RunConfig

    kw = dict(dataset=s["dataset"], n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"],
              n_measure=s["n_measure"], data_seed=0, normalize="standard",
              augment=bool(s.get("augment", False)), model=fam["model"],
              model_kwargs=dict(fam.get("model_kwargs", {})),
              weight_decay=float(fam.get("weight_decay", 0.0)),
              weight_decay_on=fam.get("weight_decay_on", "all"), seed=int(s["seeds"][0]),
              hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"], hessian_which="LM",
              hessian_bn_mode="eval", measure_every_epochs=1)
    kw.update(fields)
    return RunConfig(**kw)


def families(s: dict) -> dict:
    """{'simplecnn': family, 'resnet32': family} of the models this profile runs
    (a family with a ``skip`` reason is left out, see :func:`skipped`)."""
    return {k: dict(v) for k, v in s["models"].items() if not v.get("skip")}


def skipped(s: dict) -> dict:
    """{what: reason} for the experiments this profile leaves out."""
    out = {k: v["skip"] for k, v in s["models"].items() if v.get("skip")}
    out.update(s.get("unavailable", {}))
    return out


def trajectory_config(s, fam, *, lr, batch_size, momentum=0.0, schedule="constant",
                      max_epochs=None, **extra):
    """Fig. 2/3/7/15/16: top-k eigenvalues (LM) along SGD, accuracies."""
    t = s["trajectory"]
    max_epochs = max_epochs if max_epochs is not None else fam.get("max_epochs", t["max_epochs"])
    return _base(s, fam, lr=float(lr), batch_size=int(batch_size), momentum=float(momentum),
                 schedule=schedule, max_epochs=int(max_epochs),
                 measure_every=int(t["measure_every"]), measure_dense_until=t["measure_dense_until"],
                 metrics=("train", "test", "hessian_top"), hessian_k=int(fam.get("top_k", s["top_k"])),
                 hessian_tol=float(t.get("hessian_tol", s["hessian_tol"])), **extra)


def probe_config(s, fam, lr):
    """Fig. 4, 8-11: loss along e1/e3/e5, k_min and the alpha experiment at every measurement."""
    p = s["probe"]
    return _base(s, fam, lr=float(lr), batch_size=int(p["batch_size"]), max_epochs=int(p["max_epochs"]),
                 measure_every=int(p["measure_every"]), measure_dense_until=None,
                 metrics=("train", "val", "hessian_top", "sharpest_probe"),
                 hessian_k=int(p.get("hessian_k", 5)))


def variant_configs(s, parent) -> dict:
    """Fig. 5: the variants restarted from ``parent`` at the end of epoch ``restart_epoch``,
    e1 recomputed before every step (warm start): {label: RunConfig}."""
    v = s["variants"]
    bpe = parent.n_train // parent.batch_size
    start = {"config": parent.to_dict(), "iteration": int(v["restart_epoch"]) * bpe}
    common = dict(k=1, refresh="iteration", hessian_n=int(v["hessian_n"]), tol=float(v["tol"]))
    rules = {"SGD": ("nsgd", {"gamma": 1.0}), "SGD top": ("sgd_top", {}),
             "SGD constant top": ("sgd_constant_top", {}), "SGD no top": ("sgd_no_top", {})}
    for g in v["gammas"]:
        rules[f"gamma={g:g} along e1"] = ("nsgd", {"gamma": float(g)})
    out = {}
    for label, (rule, kw) in rules.items():
        out[label] = parent.replace(
            update_rule=rule, rule_kwargs={**common, **kw}, max_epochs=None, max_iters=int(v["iters"]),
            measure_every=int(v["measure_every"]), measure_dense_until=None, measure_every_epochs=0,
            metrics=("train",), init_from=start)
    return out


def table_configs(s, fam_name, fam, momentum=0.0) -> dict:
    """Table 1 (momentum 0) / Table 3 (momentum 0.9), Fig. 6, 13, 14: NSGD at eta with
    gamma in ``gammas`` and the SGD baselines (NSGD with gamma = 1, bit for bit SGD, so
    that they log the same top-K eigenvalues); eta / 10 on a validation plateau.
    {row label: RunConfig}."""
    t = s["table"]
    gammas = t["gammas"] if momentum == 0 else t["momentum_gammas"]
    tf = dict(fam, **t.get(fam_name, {}))

    def cfg(lr, gamma):
        return _base(s, tf, lr=float(lr), batch_size=int(t["batch_size"]), momentum=float(momentum),
                     schedule="plateau", plateau_patience=int(t["patience"]), plateau_factor=0.1,
                     max_epochs=int(t["max_epochs"]), measure_every=0, measure_every_epochs=1,
                     metrics=("train", "val", "test", "hessian_top", "dist_init", "rho_W"),
                     hessian_k=int(t["k"]), train_eval_on=t.get("train_eval_on", "train"),
                     update_rule="nsgd",
                     rule_kwargs={"gamma": float(gamma), "k": int(t["k"]), "refresh": "epoch"})
    out = {f"nsgd {g:g}": cfg(t["lr"], g) for g in gammas}
    if momentum == 0:
        out.update({f"sgd {lr:g}": cfg(lr, 1.0) for lr in t["sgd_lrs"]})
    return out


def experiments(s: dict) -> dict:
    """Every run of the notebook, grouped: {group: {label: RunConfig}}.

    groups: ``fig3_<model>_eta`` / ``fig3_<model>_S`` (Fig. 2, 3; families without
    ``fig3: False``), ``probe_<model>`` (Fig. 4, 8-12; families with ``probe_lrs``),
    ``fig7_resnet32_nol2``, ``variants`` (Fig. 5), ``table1_<model>``, ``table3_<model>``,
    ``schedules`` / ``momentum`` (SimpleCNN) and ``schedules_<model>`` /
    ``momentum_<model>`` (other models, e.g. VGG-11 at paper)."""
    out = {}
    t = s["trajectory"]
    fams = families(s)
    for name, fam in fams.items():
        if name == "resnet32_nol2":
            continue
        if fam.get("fig3", True):
            out[f"fig3_{name}_eta"] = {lr: trajectory_config(s, fam, lr=lr, batch_size=t["batch_size"])
                                       for lr in fam.get("fig3_lrs", t["fig3_lrs"])}
            out[f"fig3_{name}_S"] = {S: trajectory_config(s, fam, lr=t["lr"], batch_size=S)
                                     for S in fam.get("fig3_batch_sizes", t["fig3_batch_sizes"])}
        if fam["probe_lrs"]:
            out[f"probe_{name}"] = {lr: probe_config(s, fam, lr) for lr in fam["probe_lrs"]}
    if "resnet32_nol2" in fams:  # Fig. 7
        out["fig7_resnet32_nol2"] = {t["lr"]: trajectory_config(s, fams["resnet32_nol2"], lr=t["lr"],
                                                                batch_size=t["batch_size"])}
    parent = probe_config(s, fams["simplecnn"], s["variants"]["parent_lr"])
    out["variants"] = variant_configs(s, parent)
    for name, fam in fams.items():
        if name in s["table"].get("models", ()):
            out[f"table1_{name}"] = table_configs(s, name, fam)
            out[f"table3_{name}"] = table_configs(s, name, fam, momentum=s["table"]["momentum"])
    for block in ("schedules", "momentum"):
        bad = [n for n in s[block].get("models", ["simplecnn"]) if n not in fams]
        if bad:
            raise ValueError(f"{block}: models {bad} are not run at this profile (skipped or unknown); "
                             f"run: {', '.join(fams)}")
    for name in s["schedules"].get("models", ["simplecnn"]):
        out["schedules" + _suffix(name)] = schedule_configs(s, name, fams[name])
    for name in s["momentum"].get("models", ["simplecnn"]):
        m = {**s["momentum"], **s["momentum"].get(name, {})}
        out["momentum" + _suffix(name)] = {
            b: trajectory_config(s, fams[name], lr=m["lr"], batch_size=t["batch_size"], momentum=b,
                                 max_epochs=s["schedules"]["max_epochs"]) for b in m["betas"]}
    return out


def _suffix(name: str) -> str:
    return "" if name == "simplecnn" else f"_{name}"


SCHEDULE_KINDS = ("constant", "step", "one cycle")


def schedule_configs(s, name, fam) -> dict:
    """Fig. 15 (App. D): constant, step-wise decaying (eta / 10 at each milestone epoch) and
    one-cycle eta ({kind: RunConfig}). One cycle: Smith's 1cycle (``rules.Schedule``,
    ``one_cycle``) over the whole run, eta / 10 -> eta -> eta / 10 linearly over the first
    90% of the iterations, then annihilated linearly to eta / 1000."""
    sc = {**s["schedules"], **s["schedules"].get(name, {})}
    bs = s["trajectory"]["batch_size"]
    common = dict(lr=sc["lr"], batch_size=bs, max_epochs=sc["max_epochs"])
    kinds = sc.get("kinds", list(SCHEDULE_KINDS))
    bad = set(kinds) - set(SCHEDULE_KINDS)
    if bad:
        raise ValueError(f"unknown schedule kinds {sorted(bad)}; valid: {', '.join(SCHEDULE_KINDS)}")
    extra = {"constant": {}, "step": dict(schedule="step", milestones=tuple(sc["milestones"]), gamma=0.1),
             "one cycle": dict(schedule="one_cycle", one_cycle_iters=sc["max_epochs"] * (s["n_train"] // bs),
                               clr_base_lr=sc["lr"] / 10, min_lr=sc["lr"] / 1000)}
    return {k: trajectory_config(s, fam, **common, **extra[k]) for k in kinds}


def run_configs(profile: str, **overrides) -> list:
    """Every RunConfig notebook 5 launches at ``profile`` (distinct, in launch order),
    built and validated (rule settings included) without training."""
    s = settings(profile, **overrides)
    seen = {}
    for group in experiments(s).values():
        for c in group.values():
            if c.rule_name in RULE_NAMES:
                check_rule_kwargs(c.rule_name, c)
            seen.setdefault(c.key(), c)
    return list(seen.values())


# ============================================================================= tables and claims


def rule_log(res) -> list[dict]:
    """The eigenvector-refresh log of a stored run (``[]`` for rules without one)."""
    return list(((res.info or {}).get("info") or {}).get("rule_log") or [])


def hvp_per_refresh(results) -> dict:
    """Mean HVPs per refresh, cold (first) vs warm-started, over the runs' refresh logs."""
    cold, warm = [], []
    for res in results:
        for e in rule_log(res):
            (warm if e["warm"] else cold).append(e["n_hvp"])
    f = (lambda v: float(np.mean(v)) if v else float("nan"))
    return {"cold_mean": f(cold), "cold_n": len(cold), "warm_mean": f(warm), "warm_n": len(warm)}


def table_row(res, n_last: int = 10) -> dict:
    """One row of Table 1/3 from a run measured once per epoch: ||H||_F at the best
    validation epoch / mean of the last ``n_last`` epochs, test accuracy at the best
    validation epoch, validation accuracy at the last epoch, mean training loss of the
    last ``n_last`` epochs, distance from initialisation and mean spectral norm of the
    weight matrices at the best validation epoch."""
    m = res.metrics.sort_values("iteration")
    m = m[m["epoch"] > 0]
    row = {"status": res.status, "epochs": float(m["epoch"].max()) if len(m) else 0.0}
    if m.empty or m["val_acc"].isna().all():
        return {**row, "frob_best": np.nan, "frob_last": np.nan, "test_acc": np.nan, "val_acc_last": np.nan,
                "loss_last": np.nan, "dist": np.nan, "rho_W": np.nan, "best_epoch": np.nan}
    b = m.loc[m["val_acc"].idxmax()]
    last = m.tail(n_last)
    return {**row, "best_epoch": float(b["epoch"]), "frob_best": float(b["frob_H"]),
            "frob_last": float(last["frob_H"].mean()), "test_acc": float(b["test_acc"]),
            "val_acc_last": float(m["val_acc"].iloc[-1]), "loss_last": float(last["train_loss"].mean()),
            "dist": float(b["dist_init"]), "rho_W": float(b["rho_W"])}


def nsgd_table(results: dict, paper_key: str | None = None, n_last: int = 10):
    """Table 1/3 as a DataFrame, one row per label ('nsgd <gamma>' / 'sgd <eta>') with the
    paper's numbers beside ours (``paper_*`` columns) where ``paper_key`` names them."""
    import pandas as pd

    paper = PAPER_VALUES.get(paper_key, ({}, ""))[0] if paper_key else {}
    rows = []
    for label, res in results.items():
        r = {"run": label, **table_row(res, n_last)}
        p = paper.get(label)
        if p:
            r.update(paper_frob=p[0], paper_test_acc=p[1], paper_val_acc_50=p[2], paper_loss=p[3],
                     paper_dist=p[4], paper_rho_W=p[5])
        rows.append(r)
    return pd.DataFrame(rows)


def _acc_se(p, n):
    return math.sqrt(max(p * (1 - p), 1e-12) / n) if n else float("nan")


def _paper_str(paper_key, col):
    vals = PAPER_VALUES.get(paper_key, ({}, ""))[0] if paper_key else {}
    items = [(k.split()[1], v[col]) for k, v in vals.items() if k.startswith("nsgd")]
    if not items:
        return ""
    return (f"{paper_key}: " + " / ".join(str(v) for _, v in items) + " at gamma "
            + " / ".join(g for g, _ in items))


def table_claims(table, n_test: int, setting: str, figure_file: str = "",
                 paper_key: str | None = None) -> list:
    """Sec. 4: gamma < 1 ends sharper (larger ||H||_F) with equal or better test accuracy,
    gamma > 1 flatter with worse accuracy (NSGD rows only)."""
    from . import claims as cl

    t = table[table["run"].str.startswith("nsgd")].copy()
    t["gamma"] = t["run"].str.split().str[1].astype(float)
    t = t.sort_values("gamma")
    ok = t[t["status"] == "done"]
    out = []
    o = cl.ordering_verdict(ok["gamma"], ok["frob_best"], None, -1, symbol="gamma")
    div = t.loc[t["status"] != "done", "gamma"].tolist()
    note = f"; diverged: gamma={div}" if div else ""
    out.append(cl.Claim(
        "sharpest", "4", "Table 1" if "momentum" not in setting else "Table 3",
        "A smaller gamma (lower eta along the top-K eigenvectors) ends in sharper regions: "
        "||H||_F at the best validation epoch decreases as gamma grows",
        setting, _paper_str(paper_key, 0),
        {f"gamma={g:g}": v for g, v in zip(ok["gamma"], ok["frob_best"])}, o.verdict,
        (o.reason or f"margin {o.margin}") + note, figure_file))
    one = ok[ok["gamma"] == 1.0]
    if one.empty:
        out.append(cl.Claim("sharpest", "4", "Table 1", "gamma < 1: equal or better test accuracy; "
                            "gamma > 1: worse", setting, "", "", None, "the gamma = 1 run is missing"))
        return out
    a1 = float(one["test_acc"].iloc[0])
    se1 = _acc_se(a1, n_test)
    lo, hi = ok[ok["gamma"] < 1], ok[ok["gamma"] > 1]
    ours = {f"gamma={g:g}": a for g, a in zip(ok["gamma"], ok["test_acc"])}
    margin = {g: cl.Z * math.hypot(se1, _acc_se(a, n_test)) for g, a in zip(ok["gamma"], ok["test_acc"])}
    lo_ok = bool(len(lo)) and all(a >= a1 - margin[g] for g, a in zip(lo["gamma"], lo["test_acc"]))
    hi_worse = [a < a1 - margin[g] for g, a in zip(hi["gamma"], hi["test_acc"])]
    hi_better = [a > a1 + margin[g] for g, a in zip(hi["gamma"], hi["test_acc"])]
    if not len(lo) or not len(hi):
        v, why = None, "needs gamma values on both sides of 1"
    elif not lo_ok or any(hi_better):
        v, why = False, "a gamma < 1 is worse, or a gamma > 1 better, beyond the binomial noise"
    elif all(hi_worse):
        v, why = True, ""
    else:
        v, why = None, "within noise: gamma > 1 not worse beyond the binomial SE of the test accuracy"
    out.append(cl.Claim(
        "sharpest", "4", "Table 1" if "momentum" not in setting else "Table 3",
        "gamma < 1 keeps test accuracy equal or better than gamma = 1; gamma > 1 makes it worse",
        setting, _paper_str(paper_key, 1), ours, v,
        why + f" (margin 1.96 binomial SE on {n_test} test images){note}", figure_file))
    return out
