"""What the benchmarks share: a median timer and the per-example baselines (a Python loop of
single-example gradients, one batched gradient) that bound any per-example speed-up."""
from __future__ import annotations

import statistics
import time

import torch

from breakeven_utils.core.params import gradient_vector

__all__ = ["timed", "per_example_loop", "batched_gradient"]


def timed(fn, repeat=1):
    """(result of the last call, median wall time in seconds)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def per_example_loop(model, loss_fn, x, y) -> torch.Tensor:
    """Per-example gradients one example at a time (n x D): the baseline of every per-example row."""
    out = []
    for i in range(len(y)):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
        out.append(gradient_vector(model))
    model.zero_grad(set_to_none=True)
    return torch.stack(out)


def batched_gradient(model, loss_fn, x, y) -> None:
    """One gradient of the mean loss over the whole batch (the floor of per-example gradients)."""
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    model.zero_grad(set_to_none=True)
