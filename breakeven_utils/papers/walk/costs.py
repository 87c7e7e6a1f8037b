"""What notebook 4's recorder metrics cost, for the plan (``store.plan.metric_hooks`` reads a
metric's ``plan_cost``; the hooks of notebook 5 sit in its ``plugins``).

Kept apart from ``measures`` and ``plugins``, whose source fingerprints every stored run
(``store.runs.CODE_SOURCES``): a cost model changes no number, so refining it must not
mark runs as computed by other code. Attached when ``papers.walk`` is imported, which
registering the metrics does first.
"""
from __future__ import annotations

from breakeven_utils.papers.walk.measures import ALPHAS, walk_interp_metric

__all__ = ["walk_interp_cost", "attach"]


def walk_interp_cost(c, s, p) -> float:
    """``walk_interp`` (Sec. 3, Fig. 1): the loss on the whole training set at every
    interpolation point between theta_{t-1} and theta_t, BatchNorm in train mode: len(ALPHAS)
    evaluation passes over ``n_train`` examples per measurement (an upper bound: the first
    measurement only keeps theta_0)."""
    return len(ALPHAS) * p.ev * s["n_train"]


def attach() -> None:
    """Give the walk metrics their cost hooks (idempotent)."""
    walk_interp_metric.plan_cost = walk_interp_cost
