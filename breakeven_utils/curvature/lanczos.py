"""The Lanczos kernel behind every Krylov estimate of the package, and its two drivers.

:class:`Lanczos` is the one kernel: the Lanczos recurrence on a symmetric operator given
only by its products, with full reorthogonalisation (classical Gram-Schmidt twice), the
tridiagonal T of the recurrence and its Ritz pairs. Its two drivers differ only in when
they stop:

* :func:`lanczos_topk`: top-k eigenpairs with ARPACK's residual stopping rule (used by
  ``curvature.eigs`` for the Hessian, break-even paper App. C; sharpest-directions paper
  Sec. 3). Built for warm starts along a trajectory: the start vector is used as given
  (no random admixture), and there is no minimum Krylov size, so a start that is still
  an eigenvector stops after one product. If the Krylov space closes on an invariant
  subspace before k pairs have converged (a start spanned by fewer than k
  eigenvectors), Lanczos goes on from a seeded random vector orthogonal to it.
* :func:`lanczos_tridiagonal`: a fixed number of steps, stopped early on breakdown; the
  tridiagonal of a stochastic Lanczos quadrature run (``curvature.density``).
"""
from __future__ import annotations

import torch

__all__ = ["Lanczos", "select", "lanczos_topk", "lanczos_tridiagonal"]


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


class Lanczos:
    """The Lanczos recurrence H V_m = V_m T_m + beta_m v_{m+1} e_m^T with full
    reorthogonalisation, for at most ``max_steps`` products (at most D).

    ``step()`` makes one product H v_m, records alpha_m = <H v_m, v_m>, orthogonalises
    the residual against the whole basis (twice) and returns its norm beta_m; the caller
    then decides: ``extend()`` (v_{m+1} = residual / beta_m), ``restart(gen)`` (after a
    breakdown: a seeded random unit vector orthogonal to the basis, with beta_m = 0 in T),
    or stop. ``tridiagonal()`` is T_m (float64); ``ritz_vectors(S)`` maps eigenvectors
    of T_m to V_m^T S.
    """

    def __init__(self, matvec, start: torch.Tensor, max_steps: int):
        self.matvec = matvec
        self.dim = start.numel()
        self.n_steps = min(max_steps, self.dim)
        self.V = torch.empty(self.n_steps + 1, self.dim, dtype=start.dtype, device=start.device)
        self.V[0] = start / start.norm()
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self.m = 0
        self._residual = None

    def step(self) -> float:
        """One product: alpha_m and the orthogonalised residual; returns beta_m (its norm)."""
        j = self.m
        w = self.matvec(self.V[j])
        self.alphas.append(float(torch.dot(w, self.V[j])))
        self._residual = _orthogonalise(w, self.V[: j + 1])
        self.m = j + 1
        return float(self._residual.norm())

    def extend(self, beta: float) -> None:
        """v_{m+1} = residual / beta (beta as returned by the last ``step()``)."""
        self.betas.append(beta)
        self.V[self.m] = self._residual / beta

    def restart(self, gen: torch.Generator) -> None:
        """After a breakdown: v_{m+1} a random unit vector from ``gen``, orthogonal to the
        basis, and beta_m = 0 (T becomes block diagonal)."""
        m, V = self.m, self.V
        n = 0.0
        while not n > 1e-6:
            # a seeded host draw (the same vector on every device), moved to the basis' device
            w = torch.randn(self.dim, generator=gen, dtype=torch.float64, device="cpu").to(V.device, V.dtype)
            w = _orthogonalise(w / w.norm(), V[:m])
            n = float(w.norm())
        self.betas.append(0.0)
        V[m] = w / n

    def tridiagonal(self) -> torch.Tensor:
        """T_m: alphas on the diagonal, betas beside it (float64, m x m, on the host: it is
        small, and its eigendecomposition is cheaper there than a device sync per step)."""
        T = torch.diag(torch.tensor(self.alphas, dtype=torch.float64, device="cpu"))
        if self.betas:
            off = torch.tensor(self.betas, dtype=torch.float64, device="cpu")
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        return T

    def ritz_vectors(self, S: torch.Tensor) -> torch.Tensor:
        """Ritz vectors V_m^T s for the columns s of ``S`` (m x k), as rows (k x D)."""
        return S.T.to(self.V.device, self.V.dtype) @ self.V[: self.m]  # S is on the host


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
    gen = torch.Generator().manual_seed(seed + 1)  # host generator for restarts (Lanczos.restart)
    lz = Lanczos(matvec, start, max_steps)
    theta = S = idx = None
    for _ in range(lz.n_steps):
        b = lz.step()
        m = lz.m
        theta, S = torch.linalg.eigh(lz.tridiagonal())
        idx = select(theta, min(k, m), which)
        scale = max(float(theta.abs().max()), 1e-300)
        breakdown = b <= 1e-12 * scale
        if m >= k:
            resid = b * S[-1, idx].abs()
            if breakdown or bool((resid <= tol * theta[idx].abs()).all()):
                return theta[idx], lz.ritz_vectors(S[:, idx]), True
        if m == lz.dim:
            break
        if breakdown:          # invariant subspace with fewer than k converged pairs
            lz.restart(gen)
            continue
        lz.extend(b)
    return theta[idx], lz.ritz_vectors(S[:, idx]), False


def lanczos_tridiagonal(matvec, start: torch.Tensor, n_steps: int,
                        breakdown_rtol: float = 1e-10) -> torch.Tensor:
    """The tridiagonal T of ``n_steps`` Lanczos steps from ``start`` (at most D), stopped
    early on breakdown, beta_j < ``breakdown_rtol`` * max(|alpha_j|, 1) (an invariant
    subspace: T is then exact on it). Its eigenpairs give the nodes and weights of
    stochastic Lanczos quadrature (Lin et al. 2016, Sec. 3; ``curvature.density``)."""
    lz = Lanczos(matvec, start, n_steps)
    while True:
        b = lz.step()
        if lz.m == lz.n_steps or b < breakdown_rtol * max(abs(lz.alphas[-1]), 1.0):
            return lz.tridiagonal()
        lz.extend(b)
