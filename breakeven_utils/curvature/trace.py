"""Tr(H) by Hutchinson's estimator: the mean of v^T H v over Rademacher probes v
(E[v v^T] = I, so E[v^T H v] = Tr(H); Hutchinson 1990), for any curvature operator
(:func:`hutchinson_trace`) and for the Hessian of the mean loss (:func:`hessian_trace`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from breakeven_utils.curvature.operators import CurvatureOperator, HessianOperator

__all__ = ["TraceEstimate", "hutchinson_trace", "hessian_trace"]


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of Tr(H): mean of v^T H v over Rademacher probes v,
    its standard error (sample std / sqrt(n)), and the samples."""
    mean: float
    stderr: float
    samples: torch.Tensor = field(repr=False)
    n_hvp: int


def _check_probes(n_probes) -> None:
    if not isinstance(n_probes, (int, np.integer)) or n_probes < 2:
        raise ValueError(f"n_probes must be an integer >= 2 (for a standard error), got {n_probes!r}")


def _rademacher(n: int, gen: torch.Generator) -> torch.Tensor:
    # a seeded host draw: the same probes on every device (the caller moves them)
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.int8, device="cpu").to(torch.float64) * 2 - 1


def hutchinson_trace(op: CurvatureOperator, n_probes: int = 100, *, seed: int = 0) -> TraceEstimate:
    """Tr(op) from ``n_probes`` Rademacher probes drawn from ``torch.Generator().manual_seed(seed)``.

    Unbiased: no stopping rule on the running mean (pyhessian's rule is biased).
    ``n_hvp`` of the result counts the products of this estimate.
    """
    _check_probes(n_probes)
    n0 = op.n_matvec
    gen = torch.Generator().manual_seed(seed)
    samples = torch.empty(n_probes, dtype=torch.float64, device="cpu")  # scalars, kept on the host
    for i in range(n_probes):
        v = _rademacher(op.dim, gen).to(op.device, op.dtype)
        samples[i] = float(torch.dot(v, op.matvec(v)))
    return TraceEstimate(mean=float(samples.mean()),
                         stderr=float(samples.std(unbiased=True) / math.sqrt(n_probes)),
                         samples=samples, n_hvp=op.n_matvec - n0)


def hessian_trace(model: nn.Module, loss_fn, data, n_probes: int = 100, *, seed: int = 0,
                  bn_mode: str = "eval", dtype=None, method: str = "auto",
                  batch_size: int | None = None) -> TraceEstimate:
    """Tr(H) by Hutchinson's estimator with a fixed number of Rademacher probes
    (:func:`hutchinson_trace` on the :class:`HessianOperator` of ``data``).

    Unbiased: no stopping rule on the running mean (pyhessian's rule is biased).
    """
    _check_probes(n_probes)
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                         batch_size=batch_size, method=method)
    return hutchinson_trace(op, n_probes, seed=seed)
