"""Top-k eigenpairs of a symmetric operator given only its products H v:
Lanczos with full reorthogonalisation and ARPACK's residual stopping rule
(used by ``curvature.hessian_eigs`` for the Hessian, break-even paper App. C;
sharpest-directions paper Sec. 3).

Built for warm starts along a trajectory: the start vector is used as given
(no random admixture), and there is no minimum Krylov size, so a start that
is still an eigenvector stops after one product. If the Krylov space closes
on an invariant subspace before k pairs have converged (a start spanned by
fewer than k eigenvectors), Lanczos goes on from a seeded random vector
orthogonal to it.
"""
from __future__ import annotations

import torch

__all__ = ["select", "lanczos_topk"]


def select(theta: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices of the k wanted values: largest algebraic ('LA') or magnitude ('LM')."""
    key = theta if which == "LA" else theta.abs()
    return torch.argsort(key, descending=True, stable=True)[:k]


def _orthogonalise(w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """w minus its projection on the rows of V; classical Gram-Schmidt twice
    ("twice is enough")."""
    for _ in range(2):
        w = w - V.T @ (V @ w)
    return w


def lanczos_topk(matvec, start: torch.Tensor, k: int, which: str = "LA", tol: float = 1e-3,
                 max_steps: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Top-k eigenpairs of the symmetric operator ``matvec`` by Lanczos.

    Stops as soon as at least k products were made and every wanted Ritz pair
    (theta, y = V s) meets ARPACK's criterion ||H y - theta y|| <= tol |theta|,
    whose left side is |beta_m s_m| in exact arithmetic (no extra product);
    or after ``max_steps`` products. On breakdown (beta ~ 0: the Krylov space
    is invariant) before k pairs have converged, continues from a seeded
    random vector orthogonal to the basis (beta = 0 in the tridiagonal).
    Returns (Ritz values, Ritz vectors (k x D), converged).
    """
    dim = start.numel()
    gen = torch.Generator().manual_seed(seed + 1)
    V = torch.empty(min(max_steps, dim) + 1, dim, dtype=start.dtype, device=start.device)
    V[0] = start / start.norm()
    alphas: list[float] = []
    betas: list[float] = []
    theta = S = idx = None
    m = 0
    for j in range(min(max_steps, dim)):
        w = matvec(V[j])
        alphas.append(float(torch.dot(w, V[j])))
        w = _orthogonalise(w, V[: j + 1])
        b = float(w.norm())
        m = j + 1
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        theta, S = torch.linalg.eigh(T)
        idx = select(theta, min(k, m), which)
        scale = max(float(theta.abs().max()), 1e-300)
        breakdown = b <= 1e-12 * scale
        if m >= k:
            resid = b * S[-1, idx].abs()
            if breakdown or bool((resid <= tol * theta[idx].abs()).all()):
                return theta[idx], S[:, idx].T.to(V.dtype) @ V[:m], True
        if m == dim:
            break
        if breakdown:          # invariant subspace with fewer than k converged pairs
            n = 0.0
            while not n > 1e-6:
                w = torch.randn(dim, generator=gen, dtype=torch.float64).to(V.device, V.dtype)
                w = _orthogonalise(w / w.norm(), V[:m])
                n = float(w.norm())
            betas.append(0.0)
            V[m] = w / n
            continue
        betas.append(b)
        V[m] = w / b
    return theta[idx], S[:, idx].T.to(V.dtype) @ V[:m], False
