"""A Walk with SGD: the recorder metrics ``walk_interp`` (the loss between consecutive
iterates, Sec. 3) and ``walk_step`` (step norm and cos(g_{t-1}, g_t)), and the update
rule ``gd_noise_minibatch`` (GD + isotropic noise, Sec. 4), registered with the
recorder's registries. An entry point of ``breakeven_utils.plugins`` (pyproject.toml):
``recorder.plugins.load_plugins`` imports it in every process that builds a RunConfig.
"""
from __future__ import annotations

from breakeven_utils.papers.walk.measures import MiniBatchNoiseRule, walk_interp_metric, walk_step_metric
from breakeven_utils.recorder.metrics import register_metric, registered_metrics
from breakeven_utils.recorder.rules import UPDATE_RULES, register_rule

__all__ = ["register"]


def register() -> None:
    """Register the two metrics and the rule (idempotent: a second import or call is a no-op)."""
    if "walk_interp" not in registered_metrics():
        register_metric("walk_interp")(walk_interp_metric)
    if "walk_step" not in registered_metrics():
        register_metric("walk_step")(walk_step_metric)
    if "gd_noise_minibatch" not in UPDATE_RULES:
        register_rule("gd_noise_minibatch")(MiniBatchNoiseRule)


register()
