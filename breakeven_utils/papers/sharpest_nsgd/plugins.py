"""The sharpest-directions paper's additions to the recorder, registered with its
registries: the metrics ``hessian_top``, ``sharpest_probe`` and ``rho_W`` (in this order)
and the update rules ``nsgd``, ``sgd_top``, ``sgd_no_top``, ``sgd_constant_top``, with what the
cost plan charges for the metrics (``plan_cost``, ``plan_solves``, ``plan_per_call``). An entry
point of ``breakeven_utils.plugins`` (pyproject.toml): ``recorder.plugins.load_plugins``
imports it in every process that builds a RunConfig.
"""
from __future__ import annotations

from breakeven_utils.papers.sharpest_nsgd.rules import NSGDRule, SGDConstantTopRule, SGDNoTopRule, SGDTopRule
from breakeven_utils.papers.sharpest_nsgd.sharpest import (
    ALPHAS,
    K_GRID,
    N_GRAD_BATCHES,
    PROBE_DIRECTIONS,
    hessian_top_metric,
    rho_W_metric,
    sharpest_probe_metric,
)
from breakeven_utils.recorder.metrics import register_metric, registered_metrics
from breakeven_utils.recorder.rules import UPDATE_RULES, register_rule
from breakeven_utils.store.plan import lanczos_cost

__all__ = ["register", "METRICS", "RULES", "hessian_top_cost", "hessian_top_solves",
           "sharpest_probe_cost"]

METRICS = {"hessian_top": hessian_top_metric, "sharpest_probe": sharpest_probe_metric, "rho_W": rho_W_metric}
RULES = {"nsgd": NSGDRule, "sgd_top": SGDTopRule, "sgd_no_top": SGDNoTopRule,
         "sgd_constant_top": SGDConstantTopRule}


# ----------------------------------------------------------------------------- cost hooks
# what the cost plan (``store.plan``, ``make plan``) charges per measurement, from its
# calibrated primitives; the update rules declare their Lanczos solves (``plan_solves``)


def hessian_top_cost(c, s, p) -> float:
    """``hessian_top``: one Lanczos solve for the top ``hessian_k`` on ``hessian_n`` examples."""
    return lanczos_cost(p.lanczos(c.hessian_k), p.hvp, p.fb, s["hessian_n"])


def hessian_top_solves(c, s) -> list:
    """The Lanczos solve of ``hessian_top`` whose cold HVP count the calibration measures."""
    return [(c.hessian_k, c.hessian_tol, c.hessian_which, s["hessian_n"])]


def sharpest_probe_cost(c, s, p) -> float:
    """``sharpest_probe`` (``sharpest.probe``): ``N_GRAD_BATCHES`` mini-batch gradients at S,
    the loss along e_1, e_3, e_5 (those <= k) at every point of ``K_GRID``, and the alpha
    experiment (every alpha on every gradient, plus L(theta)) on ``hessian_n`` examples."""
    dirs = sum(i <= c.hessian_k for i in PROBE_DIRECTIONS)
    points = len(K_GRID) * dirs + len(ALPHAS) * N_GRAD_BATCHES + 1
    return N_GRAD_BATCHES * p.fb(c.batch_size) + p.ev * s["hessian_n"] * points


hessian_top_metric.plan_cost = hessian_top_cost
hessian_top_metric.plan_solves = hessian_top_solves
sharpest_probe_metric.plan_cost = sharpest_probe_cost
rho_W_metric.plan_per_call = True  # the weights' spectral norms do not depend on the data


def register() -> None:
    """Register the metrics and rules (idempotent)."""
    for name, fn in METRICS.items():
        if name not in registered_metrics():
            register_metric(name)(fn)
    for name, cls in RULES.items():
        if name not in UPDATE_RULES:
            register_rule(name)(cls)


register()
