"""Eigenvalue density of a curvature operator by stochastic Lanczos quadrature
(Ghorbani et al. 2019, Sec. 2-3; Lin et al. 2016): :func:`slq_density` for any
operator, :func:`hessian_density` for the Hessian of the mean loss. The Lanczos runs are
``lanczos.lanczos_tridiagonal``, the kernel the top-k solver uses too."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from breakeven_utils.curvature.lanczos import lanczos_tridiagonal
from breakeven_utils.curvature.operators import CurvatureOperator, HessianOperator

__all__ = ["SpectralDensity", "slq_density", "hessian_density"]


@dataclass(frozen=True)
class SpectralDensity:
    """Eigenvalue density of H by stochastic Lanczos quadrature.

    grid, density: Gaussian-smoothed density (integrates to ~1 over the grid).
    nodes, weights: (n_runs, m) Ritz values and quadrature weights of each run
        (weights of a run sum to 1); the raw spectral measure estimate.
    """
    grid: torch.Tensor = field(repr=False)
    density: torch.Tensor = field(repr=False)
    nodes: torch.Tensor = field(repr=False)
    weights: torch.Tensor = field(repr=False)
    sigma: float
    n_hvp: int


def _check_steps(n_steps: int, n_runs: int) -> None:
    if n_steps < 2 or n_runs < 1:
        raise ValueError("n_steps must be >= 2 and n_runs >= 1")


def slq_density(op: CurvatureOperator, n_steps: int = 80, n_runs: int = 1, *,
                n_grid: int = 1000, sigma: float | None = None, seed: int = 0) -> SpectralDensity:
    """Spectral density of ``op`` by stochastic Lanczos quadrature: per run,
    ``n_steps`` Lanczos steps with full reorthogonalisation from a random unit vector
    (``torch.randn`` from ``torch.Generator().manual_seed(seed)``, one per run); the
    Ritz values theta_j with weights tau_j = (first component of the j-th Ritz vector)^2
    estimate the spectral measure; the density is their Gaussian smoothing (width
    ``sigma``, default 1% of the Ritz-value range) averaged over runs.
    ``n_hvp`` of the result counts the products of this estimate.
    """
    _check_steps(n_steps, n_runs)
    n0 = op.n_matvec
    m = min(n_steps, op.dim)
    gen = torch.Generator().manual_seed(seed)
    all_nodes, all_weights = [], []
    for _ in range(n_runs):
        # a seeded host draw (the same start on every device), moved to the operator's device
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64, device="cpu").to(op.device, op.dtype)
        theta, Y = torch.linalg.eigh(lanczos_tridiagonal(op.matvec, v, m))
        # the quadrature lives on the host, with the tridiagonal it comes from
        nodes = torch.full((m,), float("nan"), dtype=torch.float64, device="cpu")
        weights = torch.zeros(m, dtype=torch.float64, device="cpu")
        nodes[: len(theta)], weights[: len(theta)] = theta, Y[0] ** 2
        all_nodes.append(nodes)
        all_weights.append(weights)
    nodes, weights = torch.stack(all_nodes), torch.stack(all_weights)
    valid = ~torch.isnan(nodes)
    lo, hi = float(nodes[valid].min()), float(nodes[valid].max())
    span = max(hi - lo, 1e-12 * max(abs(hi), 1.0), 1e-12)
    if sigma is None:
        sigma = 0.01 * span
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid, dtype=torch.float64, device="cpu")
    nz = torch.where(valid, nodes, torch.zeros_like(nodes))
    kern = torch.exp(-0.5 * ((grid[None, None, :] - nz[:, :, None]) / sigma) ** 2)
    kern = kern / (sigma * math.sqrt(2 * math.pi))
    density = (weights[:, :, None] * kern).sum(1).mean(0)
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights,
                           sigma=float(sigma), n_hvp=op.n_matvec - n0)


def hessian_density(model: nn.Module, loss_fn, data, n_steps: int = 80, n_runs: int = 1, *,
                    n_grid: int = 1000, sigma: float | None = None, seed: int = 0,
                    bn_mode: str = "eval", dtype=None, method: str = "auto",
                    batch_size: int | None = None) -> SpectralDensity:
    """Spectral density of H by stochastic Lanczos quadrature (Ghorbani et al.
    2019; Lin et al. 2016): :func:`slq_density` on the :class:`HessianOperator` of
    ``data``, ``n_steps`` Lanczos steps per run, Gaussian smoothing of width ``sigma``
    (default 1% of the Ritz-value range).
    """
    _check_steps(n_steps, n_runs)
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                         batch_size=batch_size, method=method)
    return slq_density(op, n_steps, n_runs, n_grid=n_grid, sigma=sigma, seed=seed)
