"""Gradient noise: the covariance K of per-example gradients and its estimate.

Break-even paper, footnote 1: K = (1/N) sum_i (g_i - g)(g_i - g)^T, with g_i
the gradient of example i's loss and g the full-batch gradient. App. C
estimates its spectrum from L mini-batch gradients of size M through the
L x L Gram matrix K^M_ij = (1/L) <g_i - g, g_j - g> (never the D x D matrix),
g being the mean of the L mini-batch gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from breakeven_utils.core.params import flatten, trainable_parameters
from breakeven_utils.core.stats import DEFAULT_N_BOOT, bootstrap_se
from breakeven_utils.curvature.operators import as_batches, check_bn_mode, measurement_mode
from breakeven_utils.curvature.per_example import per_example_gradients

__all__ = [
    "GradientCovariance",
    "gradient_covariance",
    "minibatch_gradient",
    "gradient_norm_ratio",
]


@dataclass(frozen=True)
class GradientCovariance:
    """Spectrum of the Gram estimate K^M (App. C of the break-even paper).

    eigenvalues: the L-1 non-zero eigenvalues of K^M, descending (float64).
    lambda_1: largest (lambda_K^1); lambda_star: the (L-1)-th largest, i.e. the
        smallest non-zero one (lambda_K^*); ratio = lambda_star / lambda_1.
    trace: Tr(K^M) (the trace of the Gram matrix).
    vectors: (n_vectors, D) top eigenvectors of K^M in parameter space (unit
        norm, orthogonal), or None.
    mean_gradient: g, the mean of the L mini-batch gradients (D,).
    scale: factor applied to eigenvalues and trace (1, or M if per_example).
    indices: (L, M) example indices of the mini-batches (into ``data``).
    gram: the L x L Gram K^M times ``scale`` (float64, its non-zero eigenvalues are
        ``eigenvalues``), kept with ``keep_gram=True`` (else None): what
        ``core.stats.bootstrap_se`` resamples for standard errors of lambda_K^1 and Tr(K).
    """
    eigenvalues: torch.Tensor = field(repr=False)
    lambda_1: float
    lambda_star: float
    ratio: float
    trace: float
    vectors: torch.Tensor | None = field(repr=False)
    mean_gradient: torch.Tensor = field(repr=False)
    L: int
    M: int
    scale: float
    indices: torch.Tensor = field(repr=False)
    gram: torch.Tensor | None = field(default=None, repr=False)

    def bootstrap_se(self, stat="lambda_1", n_boot: int | None = None, seed: int = 0):
        """Bootstrap standard error(s) over the L mini-batch gradients
        (``core.stats.bootstrap_se`` on ``gram``; needs ``keep_gram=True``)."""
        if self.gram is None:
            raise ValueError("no Gram kept: compute with gradient_covariance(..., keep_gram=True)")
        return bootstrap_se(self.gram, stat, n_boot=n_boot or DEFAULT_N_BOOT, seed=seed)


def _concat(data) -> tuple[torch.Tensor, torch.Tensor]:
    batches = as_batches(data)
    if len(batches) == 1:
        return batches[0]
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def minibatch_gradient(model: nn.Module, loss_fn, inputs, targets, *,
                       bn_mode: str = "train") -> torch.Tensor:
    """Flat gradient of the mean loss on one mini-batch (model's dtype)."""
    params = [p for _, p in trainable_parameters(model)]
    with measurement_mode(model, bn_mode), torch.enable_grad():
        loss = loss_fn(model(inputs), targets)
        gs = torch.autograd.grad(loss, params, allow_unused=True)
    return flatten(g if g is not None else torch.zeros_like(p) for g, p in zip(gs, params))


def gradient_covariance(model: nn.Module, loss_fn, data, L: int = 25, M: int = 128, *,
                        seed: int = 0, n_vectors: int = 0, bn_mode: str = "train",
                        per_example: bool = False, chunk_size: int = 128,
                        keep_gram: bool = False) -> GradientCovariance:
    """Spectrum of K estimated from L mini-batch gradients of size M (App. C).

    Draws L disjoint mini-batches of M examples without replacement (seeded);
    with L*M = N they partition ``data``. With G the L x D matrix of mini-batch
    gradients, g its row mean and C = G - g, the Gram matrix
    K^M = C C^T / L is eigen-decomposed (L x L); its non-zero eigenvalues are
    those of the D x D matrix (1/L) sum_l (g_l - g)(g_l - g)^T.

    Normalisation: K^M estimates the covariance of a size-M mini-batch
    gradient, which is about K/M (exactly K/M for examples drawn with
    replacement, K/M (N-M)/(N-1) without), not K itself. The default keeps
    the paper's unnormalised K^M so its numbers are comparable; with
    ``per_example=True`` eigenvalues and trace are multiplied by M, an
    estimate of K. With M = 1 and L = N, K^M equals K exactly.
    M = 1 uses vectorised per-example gradients (``per_example_gradients``).
    ``bn_mode`` defaults to 'train' (gradients as SGD sees them).
    ``keep_gram=True`` keeps the L x L Gram (times the scale) in ``.gram`` for
    bootstrap standard errors (``.bootstrap_se()``); the other outputs are unchanged.
    """
    for name, val in (("L", L), ("M", M)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    check_bn_mode(bn_mode)
    if L < 2:
        raise ValueError("L must be at least 2 (a covariance needs two observations)")
    if not isinstance(n_vectors, int) or not 0 <= n_vectors <= L - 1:
        raise ValueError(f"n_vectors must be an integer in [0, L-1={L - 1}], got {n_vectors!r}")
    x, y = _concat(data)
    n = x.shape[0]
    if L * M > n:
        raise ValueError(f"L*M = {L}*{M} = {L * M} exceeds the {n} examples of data "
                         "(mini-batches are drawn without replacement)")
    gen = torch.Generator().manual_seed(seed)
    # a seeded host draw (the same mini-batches on every device), moved to the data's device
    idx = torch.randperm(n, generator=gen, device="cpu")[: L * M].view(L, M).to(x.device)
    if M == 1:
        G = per_example_gradients(model, loss_fn, x[idx[:, 0]], y[idx[:, 0]],
                                  chunk_size=chunk_size, bn_mode=bn_mode)
    else:
        first = minibatch_gradient(model, loss_fn, x[idx[0]], y[idx[0]], bn_mode=bn_mode)
        G = torch.empty(L, first.numel(), dtype=first.dtype, device=first.device)
        G[0] = first
        for i in range(1, L):
            G[i] = minibatch_gradient(model, loss_fn, x[idx[i]], y[idx[i]], bn_mode=bn_mode)
    g = G.mean(0)
    C = G.sub_(g)  # in place: G is not needed any more
    gram = (C @ C.T).to(torch.float64) / L
    gram = 0.5 * (gram + gram.T)
    if not torch.isfinite(gram).all():  # e.g. a diverging run: say so instead of failing in eigh
        raise FloatingPointError("the mini-batch gradients behind K are not finite (NaN/inf)")
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(0), evecs.flip(1)
    scale = float(M) if per_example else 1.0
    eig = evals[: L - 1] * scale
    vectors = None
    if n_vectors:
        U = evecs[:, :n_vectors].to(C.dtype)
        vectors = (C.T @ U).T
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
    lam1, lam_star = float(eig[0]), float(eig[-1])
    return GradientCovariance(eigenvalues=eig, lambda_1=lam1, lambda_star=lam_star,
                              ratio=lam_star / lam1 if lam1 != 0 else float("nan"),
                              trace=float(torch.trace(gram)) * scale, vectors=vectors,
                              mean_gradient=g, L=L, M=M, scale=scale,
                              indices=idx.cpu(), gram=(gram * scale).cpu() if keep_gram else None)


def gradient_norm_ratio(g: torch.Tensor, vectors, k: int = 5) -> float:
    """||g|| / ||g_k||, with g_k the projection of a (mini-batch) gradient g on
    the span of the top-k eigenvectors of K (break-even paper, Sec. 4.3, k=5).

    ``vectors`` is a ``GradientCovariance`` (computed with n_vectors >= k) or
    an orthonormal (k', D) tensor whose first k rows are used.
    """
    if isinstance(vectors, GradientCovariance):
        vectors = vectors.vectors
    if vectors is None or vectors.dim() != 2 or vectors.shape[0] < k:
        raise ValueError(f"need at least k={k} eigenvectors of K (use n_vectors>={k})")
    g = g.reshape(-1).to(vectors.dtype)
    if g.numel() != vectors.shape[1]:
        raise ValueError(f"gradient has {g.numel()} entries, eigenvectors {vectors.shape[1]}")
    proj = vectors[:k] @ g
    return float(g.norm() / proj.norm())
