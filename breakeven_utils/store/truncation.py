"""The preflight's one truncation rule (issue 22), and the switch that applies it to every run the
run store computes or loads.

:func:`truncate` cuts a run to its first steps and measures it at its start and after them;
nothing else changes. With ``$BREAKEVEN_PREFLIGHT_STEPS`` set (``scripts/preflight.py`` sets it for the
notebooks it executes), :func:`effective` applies it to every configuration that
``store.runs`` and ``store.sweeps`` see, so a notebook executed at a profile finds the
preflight's truncated runs under its own, untouched configurations.
"""
from __future__ import annotations

import dataclasses
import os

from breakeven_utils.recorder.config import RunConfig

__all__ = ["PREFLIGHT_STEPS", "ENV", "truncate", "preflight_steps", "effective"]

#: the steps every run is cut to
PREFLIGHT_STEPS = 3
#: the environment variable that switches the rule on for the run store (its value: the steps)
ENV = "BREAKEVEN_PREFLIGHT_STEPS"


def truncate(c: RunConfig, steps: int = PREFLIGHT_STEPS) -> RunConfig:
    """``c`` cut to its first ``steps`` iterations, measured at its start and after its last step,
    and nothing else changed: ``max_iters`` at most ``steps``; ``measure_at`` (0, that step), plus
    the run's own explicit measurement iterations up to it (the walk's consecutive steps), so every
    metric is measured at full size at least twice (a curve of two points, the fewest the
    notebooks' analyses take; one measurement of notebook 1's paper run costs minutes on 2
    cores); a parent run (``init_from``) is cut by the same rule and the run starts from it at
    ``min(t, steps)``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    kw: dict = {"max_iters": min(c.max_iters, steps) if c.max_iters is not None else steps}
    own = {t for t in (c.measure_at or ()) if t <= kw["max_iters"]}
    kw["measure_at"] = tuple(sorted(own | {0, kw["max_iters"]}))
    if c.init_from is not None:
        parent = truncate(RunConfig.from_dict(c.init_from["config"]), steps)
        kw["init_from"] = {"config": parent.to_dict(),
                           "iteration": min(int(c.init_from["iteration"]), parent.max_iters)}
    return dataclasses.replace(c, **kw)


def preflight_steps(environ=None) -> int | None:
    """The steps of ``$BREAKEVEN_PREFLIGHT_STEPS``, None when unset or empty; ValueError otherwise."""
    env = os.environ if environ is None else environ
    text = (env.get(ENV) or "").strip()
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV} must be a positive integer (steps), got {text!r}")
    return n


def effective(config: RunConfig) -> RunConfig:
    """``config`` as the run store computes and loads it: truncated while the preflight's switch
    is on, else itself. Idempotent: a truncated configuration stays as it is."""
    steps = preflight_steps()
    return config if steps is None else truncate(config, steps)
