"""What the recorder measures along a trajectory, and when.

* The measurement schedule (:func:`measurement_iterations`): dense every
  ``measure_every`` iterations for the first ``measure_dense_until``
  iterations, then every ``measure_every_epochs`` epochs, or explicit
  ``measure_at`` iterations.
* :class:`MeasureContext`: what a metric may read (model, loss, data, config,
  iteration, learning rate, theta_0, a per-measurement ``cache`` and a
  persistent, checkpointed ``state``).
* The metric registry: built-in groups ``METRIC_COLUMNS`` (named after the
  papers' symbols: lambda_H^1, lambda_K^1, Tr(K), the break-even LHS of
  Eq. (1), ...), their column-name aliases, the pre-step metrics
  (:data:`PRE_METRICS`) and step metrics (:data:`STEP_METRICS`), metrics that
  paper sections add with :func:`register_metric` (:data:`USER_METRICS`), and the
  final top-k H spectrum at the largest lambda_H^1 (break-even Fig. 3).

``RunConfig`` is imported for type hints only (``config`` imports this module).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from breakeven_utils.core.device import to_tensor
from breakeven_utils.core.params import parameters_vector
from breakeven_utils.curvature import gradient_covariance, hessian_eigs, per_example_curvature

if TYPE_CHECKING:  # pragma: no cover
    from breakeven_utils.recorder.config import RunConfig

__all__ = [
    "METRICS",
    "METRIC_COLUMNS",
    "DEFAULT_METRICS",
    "MeasureContext",
    "register_metric",
    "registered_metrics",
    "metric_names",
    "METRIC_ALIASES",
    "USER_METRICS",
    "PRE_METRICS",
    "STEP_METRICS",
    "K_M",
    "final_H_spectrum",
    "measurement_iterations",
    "evaluate",
]

# metric group -> columns it writes (per measurement row)
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("train_loss", "train_acc"),
    "val": ("val_loss", "val_acc"),
    "test": ("test_loss", "test_acc"),
    "delta_loss": ("delta_loss",),
    "lambda_H": ("lambda_H_1",),  # + lambda_H_2..k for hessian_k > 1
    "K": ("lambda_K_1", "lambda_K_star", "lambda_K_ratio", "trace_K",
          "lambda_K_1_se", "trace_K_se"),  # *_se: bootstrap over the L gradients (claims.bootstrap_se)
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
METRIC_ALIASES = {c: g for g, cols in METRIC_COLUMNS.items() for c in cols}
METRIC_ALIASES.update({"train_acc": "train", "lambda_H_top": "lambda_H", "lambda_K_ratio": "K",
                        "spectrum_K": "K", "spectrum_H": "lambda_H"})
DEFAULT_METRICS = ("train", "val", "test", "delta_loss", "lambda_H", "K", "dist_init",
                   "param_norm", "grad_cos", "grad_norm")
# user metrics: name -> fn(ctx) -> dict[column, float]
USER_METRICS: dict[str, Callable[["MeasureContext"], dict]] = {}


def registered_metrics() -> tuple[str, ...]:
    """The metrics added with :func:`register_metric` so far, in registration order."""
    return tuple(USER_METRICS)


def metric_names() -> tuple[str, ...]:
    return tuple(METRIC_COLUMNS) + tuple(USER_METRICS)


METRICS = tuple(METRIC_COLUMNS)  # built-in metric groups


def register_metric(name: str):
    """Register a per-measurement metric ``fn(ctx) -> {column: value}``.

    ``ctx`` (:class:`MeasureContext`) holds the model, loss, data, config,
    iteration, learning rate, a per-measurement ``cache`` (e.g. ``cache['hessian']``
    when ``'lambda_H'`` ran first) and a persistent, checkpointed ``state`` dict.
    Use it by name in ``RunConfig.metrics``. Register it in one of the modules
    of ``config.PLUGIN_MODULES`` so that every process (sweep workers too)
    finds it by name.
    """
    def deco(fn):
        if name in METRIC_COLUMNS or name in METRIC_ALIASES:
            raise ValueError(f"metric name {name!r} is built in")
        USER_METRICS[name] = fn
        return fn
    return deco


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
    rule: Any = None  # the run's update rule (a metric may reuse its work, e.g. NSGD's eigenpairs)


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
    if not all(np.isfinite(vals)):  # the loop records the run as diverged
        raise FloatingPointError("the Hessian's top eigenvalues are not finite (NaN/inf)")
    ctx.cache.setdefault("arrays", {})["H_top"] = np.asarray(vals, dtype=np.float64)
    return {f"lambda_H_{i + 1}": v for i, v in enumerate(vals)}


def K_M(c: RunConfig, n_train: int) -> int:
    """M of K^M: ``K_M``, else the training batch size (break-even App. C), else
    (full batch) 128 or n_train // K_L if smaller."""
    if c.K_M is not None:
        return c.K_M
    if c.full_batch:
        return max(1, min(128, n_train // c.K_L))
    return c.batch_size


def _m_K(ctx):
    """lambda_K^1, lambda_K^*, their ratio and Tr(K) from L mini-batch gradients of size M
    (break-even App. C), with the bootstrap standard errors of lambda_K^1 and Tr(K) over the
    L gradients (claims.bootstrap_se on the L x L Gram: no gradient is recomputed; seeded by
    the measurement, so a resumed run gives the same numbers). The ratio gets none: its
    bootstrap SE is unreliable (see claims.K_STATS)."""
    c = ctx.config
    n_vec = 5 if "g_over_g5" in c.metrics else 0
    M = K_M(c, len(ctx.data.train))
    tr = ctx.data.train
    seed = c.seed * 1_000_003 + ctx.iteration
    gc = gradient_covariance(ctx.model, ctx.loss_fn, (tr.x, tr.y), L=c.K_L, M=M,
                             seed=seed, n_vectors=n_vec, bn_mode=c.K_bn_mode, keep_gram=True)
    se = gc.bootstrap_se(["lambda_1", "trace"], seed=seed)
    if n_vec:
        ctx.cache["K_vectors"] = gc.vectors
    ctx.cache.setdefault("arrays", {})["K_eigs"] = np.asarray(
        to_tensor(gc.eigenvalues).detach().cpu().double().numpy())
    return {"lambda_K_1": float(gc.lambda_1), "lambda_K_star": float(gc.lambda_star),
            "lambda_K_ratio": float(gc.ratio), "trace_K": float(gc.trace),
            "lambda_K_1_se": se["lambda_1"], "trace_K_se": se["trace"]}


def _m_breakeven_lhs(ctx):
    """Eq. (1) of the break-even paper: (1 - lr lambda_H^1)^2 + s^2 lr^2 (N - S) / (S (N - 1)),
    s^2 = Var_i[e^T H_i e] over the measurement set, e = top Hessian eigenvector."""
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


def final_H_spectrum(model, loss_fn, data, config, mstate, arrays) -> None:
    """Top ``spectrum_k`` eigenvalues of H at the measurement with the largest lambda_H^1."""
    best = mstate.get("H_argmax")
    if best is None:
        return
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
    return {"dist_init": float((parameters_vector(ctx.model) - ctx.theta0).norm())}


def _m_param_norm(ctx):
    return {"param_norm": float(parameters_vector(ctx.model).norm())}


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
PRE_METRICS = {
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
STEP_METRICS = ("delta_loss", "grad_cos", "grad_norm", "g_over_g5")

