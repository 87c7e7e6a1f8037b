"""Top-k eigenpairs of a symmetric operator given only its products H v:
Rayleigh-Ritz on a subspace grown one product at a time (used by
``curvature.hessian_eigs`` for the Hessian, break-even paper App. C;
sharpest-directions paper Sec. 3).

The subspace grows by the residual of the least converged wanted Ritz pair.
From one start vector this is Lanczos with full reorthogonalisation, product
for product (the residual of any Ritz pair of a Krylov space lies along the
next Lanczos vector). The stopping rule is ARPACK's ||H y - theta y|| <=
tol |theta| with the residuals computed explicitly (H y = S^T W is kept), and
there is no minimum subspace size: a start that is still an eigenvector
stops after one product (a warm start along a trajectory).
"""
from __future__ import annotations

import math

import torch

__all__ = ["select", "Subspace", "ritz_topk"]


def select(theta: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices of the k wanted values: largest algebraic ('LA') or magnitude ('LM')."""
    key = theta if which == "LA" else theta.abs()
    return torch.argsort(key, descending=True, stable=True)[:k]


class Subspace:
    """An orthonormal basis V (rows), its image W = H V and the projection
    T = V H V^T (float64), grown one vector (one product) at a time."""

    def __init__(self, matvec, dim: int, dtype, device, capacity: int):
        self.matvec = matvec
        self.V = torch.empty(max(capacity, 1), dim, dtype=dtype, device=device)
        self.W = torch.empty_like(self.V)
        self.T = torch.zeros(self.V.shape[0], self.V.shape[0], dtype=torch.float64)
        self.m = 0

    def add(self, w: torch.Tensor) -> bool:
        """Orthonormalise ``w`` against V (classical Gram-Schmidt twice, "twice
        is enough"), apply H, extend T. False, and no product, when ``w`` lies
        in span(V) to rounding."""
        m = self.m
        n0 = float(w.norm())
        for _ in range(2):
            if m:
                w = w - self.V[:m].T @ (self.V[:m] @ w)
        n = float(w.norm())
        if not (math.isfinite(n) and n > 100 * torch.finfo(w.dtype).eps * n0):
            return False
        if m == self.V.shape[0]:                       # grow the buffers (doubling)
            self.V = torch.cat([self.V, torch.empty_like(self.V)])
            self.W = torch.cat([self.W, torch.empty_like(self.W)])
            T = torch.zeros(2 * m, 2 * m, dtype=torch.float64)
            T[:m, :m] = self.T[:m, :m]
            self.T = T
        self.V[m] = w / n
        self.W[m] = self.matvec(self.V[m])
        col = (self.V[: m + 1] @ self.W[m]).to(torch.float64)
        self.T[: m + 1, m] = col
        self.T[m, : m + 1] = col
        self.m = m + 1
        return True

    def ritz(self, k: int, which: str):
        """The wanted Ritz pairs (at most k): values, vectors Y (rows), explicit
        residuals R = H Y - theta Y (no product: H Y = S^T W), their norms, and
        all Ritz values."""
        m = self.m
        theta, S = torch.linalg.eigh(self.T[:m, :m])
        idx = select(theta, min(k, m), which)
        Sk = S[:, idx].T.to(self.V.dtype)
        Y, HY = Sk @ self.V[:m], Sk @ self.W[:m]
        th = theta[idx]
        R = HY - th.to(HY.dtype)[:, None] * Y
        return th, Y, R, R.norm(dim=1).to(torch.float64), theta


def ritz_topk(matvec, block: torch.Tensor, k: int, which: str = "LA", tol: float = 1e-3,
              max_steps: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Top-k eigenpairs of the symmetric operator ``matvec`` by Rayleigh-Ritz.

    block: (p, D) start vectors, each costing one product up front (one
        random vector: a cold start; one vector in the previous top space:
        a warm start).
    The subspace grows by the residual of the least converged wanted pair
    (unpreconditioned Davidson; from one vector this is Lanczos); converged
    pairs stay in the subspace but are no longer expanded (locked). Stops when
    at least k products were made and every wanted pair has
    ||H y - theta y|| <= tol |theta| (or the rounding floor 100 eps max|theta|,
    below which no residual is meaningful), or after ``max_steps`` products.
    If the subspace becomes invariant before the k pairs have converged, it
    continues from a seeded random vector.
    Returns (Ritz values, Ritz vectors (k x D), converged).
    """
    dim = block.shape[1]
    sub = Subspace(matvec, dim, block.dtype, block.device,
                   capacity=min(max_steps, max(2 * block.shape[0], k + 32)))
    eps = torch.finfo(block.dtype).eps
    gen = torch.Generator().manual_seed(seed + 1)

    def random_direction():
        return torch.randn(dim, generator=gen, dtype=torch.float64).to(block.device, block.dtype)

    for v in block[:max_steps]:
        sub.add(v)
    while True:
        if sub.m == 0:
            sub.add(random_direction())
            continue
        th, Y, R, res, theta = sub.ritz(k, which)
        floor = 100 * eps * max(float(theta.abs().max()), 1e-300)
        target = (tol * th.abs()).clamp_min(floor)
        if (sub.m >= k and bool((res <= target).all())) or sub.m >= dim:
            return th, Y, True
        if sub.m >= max_steps:
            return th, Y, False
        # expand along the least converged pair; one whose residual lies in span(V)
        # to rounding gives way to the next, then to a random vector
        order = torch.argsort(res / target, descending=True).tolist()
        if not any(bool(res[i] > target[i]) and sub.add(R[i]) for i in order):
            while not sub.add(random_direction()):
                pass
