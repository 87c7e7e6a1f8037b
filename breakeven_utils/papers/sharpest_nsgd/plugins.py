"""The sharpest-directions paper's additions to the recorder, registered with its
registries: the metrics ``hessian_top``, ``sharpest_probe`` and ``rho_W`` (in this order)
and the update rules ``nsgd``, ``sgd_top``, ``sgd_no_top``, ``sgd_constant_top``. An entry
point of ``breakeven_utils.plugins`` (pyproject.toml): ``recorder.plugins.load_plugins``
imports it in every process that builds a RunConfig.
"""
from __future__ import annotations

from breakeven_utils.papers.sharpest_nsgd.rules import NSGDRule, SGDConstantTopRule, SGDNoTopRule, SGDTopRule
from breakeven_utils.papers.sharpest_nsgd.sharpest import (
    hessian_top_metric,
    rho_W_metric,
    sharpest_probe_metric,
)
from breakeven_utils.recorder.metrics import register_metric, registered_metrics
from breakeven_utils.recorder.rules import UPDATE_RULES, register_rule

__all__ = ["register", "METRICS", "RULES"]

METRICS = {"hessian_top": hessian_top_metric, "sharpest_probe": sharpest_probe_metric, "rho_W": rho_W_metric}
RULES = {"nsgd": NSGDRule, "sgd_top": SGDTopRule, "sgd_no_top": SGDNoTopRule,
         "sgd_constant_top": SGDConstantTopRule}


def register() -> None:
    """Register the metrics and rules (idempotent)."""
    for name, fn in METRICS.items():
        if name not in registered_metrics():
            register_metric(name)(fn)
    for name, cls in RULES.items():
        if name not in UPDATE_RULES:
            register_rule(name)(cls)


register()
