"""Top-k eigenpairs of a curvature operator (lambda_H^1 and e_H^1 of the break-even paper,
App. C; the top-K directions of the sharpest-directions paper, Sec. 3).

:func:`top_eigenpairs` works on any :class:`~breakeven_utils.curvature.operators.CurvatureOperator`;
:func:`hessian_eigs` is it on the Hessian of the mean loss over ``data``.

Solvers: Lanczos in torch with full reorthogonalisation (``lanczos.lanczos_topk``;
from a random vector, or from the previous eigenvectors when warm-started along a
trajectory) that stops as soon as the wanted Ritz pairs meet the tolerance (default;
it measured fewer HVPs than ARPACK here), or SciPy's ARPACK ``eigsh`` as the
break-even paper used (``solver='arpack'``), both over exact products.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse.linalg import eigsh
from torch import nn

from breakeven_utils.core.device import to_tensor
from breakeven_utils.core.params import unflatten
from breakeven_utils.curvature.lanczos import lanczos_topk
from breakeven_utils.curvature.operators import CurvatureOperator, HessianOperator, MatvecBudgetExceeded

__all__ = [
    "HessianEigs",
    "NotConvergedError",
    "WHICH",
    "SOLVERS",
    "DEFAULT_MAX_STEPS",
    "check_eigs_args",
    "start_vector",
    "arpack_start",
    "ordered_eigs",
    "top_eigenpairs",
    "hessian_eigs",
    "frobenius_from_top",
]

WHICH = ("LA", "LM")
SOLVERS = ("lanczos", "arpack")
#: Lanczos products when no budget is given
DEFAULT_MAX_STEPS = 300


@dataclass(frozen=True)
class HessianEigs:
    """Top-k eigenpairs of H.

    values: (k,) float64, descending (``which='LA'``: algebraic order;
        ``'LM'``: by |lambda|). ``values[0]`` is lambda_H^1 for 'LA'.
    vectors: (k, D) unit-norm rows, in the flat parameter layout of
        ``params.parameters_vector``.
    n_hvp: Hessian-vector products used.
    """
    values: torch.Tensor
    vectors: torch.Tensor
    n_hvp: int
    which: str
    shapes: tuple = field(repr=False, default=())

    @property
    def lambda_1(self) -> float:
        return float(self.values[0])

    def views(self, i: int) -> list[torch.Tensor]:
        """Eigenvector i as a list of per-parameter tensors (views, no copy)."""
        return unflatten(self.vectors[i], [torch.empty(s, device="meta") for s in self.shapes])


class NotConvergedError(RuntimeError):
    """The solver did not meet ``tol`` within its product budget (``n_matvec`` products)."""

    def __init__(self, message: str, solver: str, n_matvec: int):
        super().__init__(message)
        self.solver, self.n_matvec = solver, n_matvec


def check_eigs_args(k, which: str, solver: str, tol: float, max_matvec: int | None) -> None:
    """ValueError on an invalid ``k``, ``which``, ``solver``, ``tol`` or product budget."""
    if which not in WHICH:
        raise ValueError(f"which must be 'LA' or 'LM', got {which!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be 'lanczos' or 'arpack', got {solver!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol!r}")
    if max_matvec is not None and max_matvec < 1:
        raise ValueError(f"max_hvp must be positive, got {max_matvec!r}")


def start_vector(op: CurvatureOperator, v0, seed: int) -> torch.Tensor:
    """The Lanczos start (unit vector): seeded random (cold), or the normalised
    sum of the unit rows of ``v0`` (warm), with no random admixture: a start
    inside the previous top space is what makes a warm start pay."""
    if v0 is None:
        rand = np.random.default_rng(seed).standard_normal(op.dim)
        return torch.from_numpy(rand / np.linalg.norm(rand)).to(op.device, op.dtype)
    if isinstance(v0, HessianEigs):
        v0 = v0.vectors
    v0 = to_tensor(v0).detach()
    if v0.dim() == 1:
        v0 = v0[None]
    if v0.dim() != 2 or v0.shape[1] != op.dim:
        raise ValueError(f"v0 must be (k', {op.dim}) vectors, got {tuple(v0.shape)}")
    v0 = v0.to(op.device, op.dtype)
    norms = v0.norm(dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()) or bool((norms == 0).any()):
        raise ValueError("v0 contains a zero or non-finite vector")
    start = (v0 / norms).sum(0)
    n = float(start.norm())
    if not n > 0:
        raise ValueError("v0's rows sum to zero: give them with consistent signs")
    return start / n


def arpack_start(start: torch.Tensor, seed: int, warm: bool) -> np.ndarray:
    """ARPACK's start: the same vector, plus (warm) a small random part so that
    its Krylov space cannot close on an invariant subspace of fewer than k
    eigenvectors (ARPACK cannot continue from there, unlike ``lanczos_topk``)."""
    start = start.detach().to("cpu", torch.float64).numpy()
    if not warm:
        return start
    rand = np.random.default_rng(seed).standard_normal(start.size)
    start = start + 1e-2 * rand / np.linalg.norm(rand)
    return start / np.linalg.norm(start)


def ordered_eigs(vals: np.ndarray, vecs: torch.Tensor, which: str, n_hvp: int,
                 shapes=()) -> HessianEigs:
    """Eigenpairs ordered by algebraic value ('LA') or magnitude ('LM'), unit vectors."""
    key = -vals if which == "LA" else -np.abs(vals)
    order = np.argsort(key, kind="stable")
    values = torch.from_numpy(np.ascontiguousarray(vals[order]))
    vectors = vecs[torch.from_numpy(order).to(vecs.device)]
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return HessianEigs(values=values, vectors=vectors, n_hvp=n_hvp, which=which, shapes=tuple(shapes))


def top_eigenpairs(op: CurvatureOperator, k: int = 1, which: str = "LA", *, tol: float = 1e-3,
                   v0=None, max_matvec: int | None = None, solver: str = "lanczos",
                   ncv: int | None = None, seed: int = 0) -> HessianEigs:
    """Top-k eigenpairs of the symmetric operator ``op`` (arguments as in :func:`hessian_eigs`,
    ``max_matvec`` its ``max_hvp``). ``n_hvp`` of the result counts the products of this
    solve. Raises :class:`NotConvergedError` when ``tol`` is not met within the budget."""
    check_eigs_args(k, which, solver, tol, max_matvec)
    if k >= op.dim:
        raise ValueError(f"k={k} must be smaller than the number of parameters D={op.dim} "
                         "(use a dense eigendecomposition for the full spectrum)")
    n0 = op.n_matvec
    start = start_vector(op, v0, seed)
    if solver == "lanczos":
        steps = min(op.dim, max_matvec if max_matvec is not None else DEFAULT_MAX_STEPS)
        vals_t, vecs, ok = lanczos_topk(op.matvec, start, k, which, max(tol, 1e-14), steps, seed=seed)
        if not ok:
            raise NotConvergedError(f"Lanczos did not reach tol={tol} within {steps} products",
                                    solver, steps)
        vals = vals_t.numpy()
    else:
        if ncv is not None:
            ncv = min(max(ncv, k + 2), op.dim)
        try:
            vals, vecs_np = eigsh(op.to_scipy(max_matvec), k=k, which=which, tol=tol, ncv=ncv,
                                  v0=arpack_start(start, seed, warm=v0 is not None))
        except MatvecBudgetExceeded:
            raise NotConvergedError(f"ARPACK needed more than {max_matvec} products",
                                    solver, max_matvec) from None
        vecs = torch.from_numpy(vecs_np.T.copy()).to(op.device, op.dtype)
    return ordered_eigs(vals, vecs, which, op.n_matvec - n0, op.shapes)


def hessian_eigs(model: nn.Module, loss_fn, data, k: int = 1, which: str = "LA", *,
                 tol: float = 1e-3, v0=None, bn_mode: str = "eval", dtype=None,
                 max_hvp: int | None = None, solver: str = "lanczos", ncv: int | None = None,
                 seed: int = 0, method: str = "auto",
                 batch_size: int | None = None) -> HessianEigs:
    """Top-k eigenpairs of the Hessian of the mean loss over ``data``, by Lanczos.

    which: 'LA' largest algebraic (lambda_H^1 is ``values[0]``), or 'LM'
        largest magnitude (the sharpest-directions paper's ``eigsh`` default).
    tol: relative accuracy of the Ritz pairs, ARPACK's criterion
        ||H v - lambda v|| <= tol |lambda| (eigenvalues are then typically
        accurate to ~tol^2 relative; pyhessian's tol is a relative change of
        the power-iteration estimate instead).
    solver: 'lanczos' (default): Lanczos with full reorthogonalisation
        (``lanczos.lanczos_topk``), stopped as soon as the k pairs meet
        ``tol`` (stays on the device, no restarts; memory steps x D);
        'arpack': SciPy ``eigsh`` (implicitly restarted Lanczos, as in the
        break-even paper, App. C) on a float64 LinearOperator, ``ncv`` its
        subspace size.
    v0: warm start from previous eigenvectors ((k', D) tensor or a
        ``HessianEigs``): Lanczos starts from the normalised sum of their unit
        rows (no random admixture, no minimum subspace size: if they still
        meet ``tol`` the solve stops after k HVPs; if the Krylov space closes
        on fewer than k pairs it goes on from a random vector). 'arpack' adds
        a 1% random part. Like any Krylov start, it finds the top pairs that
        overlap the start first (benchmarks/warm_starts.py measures the gain
        and the error along a training trajectory).
    max_hvp: at most this many HVPs (default: min(D, 300) for 'lanczos',
        unlimited for 'arpack'); RuntimeError if not converged within it.
    dtype: e.g. ``torch.float64`` to compute in double precision (tests).
    method: the HVP, 'auto', 'fwdrev' (forward-over-reverse) or
        'double_backward' (see ``operators.hvp``).
    """
    check_eigs_args(k, which, solver, tol, max_hvp)
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                         batch_size=batch_size, method=method)
    try:
        return top_eigenpairs(op, k, which, tol=tol, v0=v0, max_matvec=max_hvp, solver=solver,
                              ncv=ncv, seed=seed)
    except NotConvergedError as e:
        if e.solver == "lanczos":
            raise NotConvergedError(f"hessian_eigs: Lanczos did not reach tol={tol} within "
                                    f"{e.n_matvec} HVPs (raise max_hvp or try solver='arpack')",
                                    e.solver, e.n_matvec) from None
        raise NotConvergedError(f"hessian_eigs: more than max_hvp={max_hvp} HVPs needed",
                                e.solver, e.n_matvec) from None


def frobenius_from_top(values) -> float:
    """||H||_F approximated by the top-k eigenvalues: sqrt(sum_i lambda_i^2)
    (the NSGD table of the sharpest-directions paper)."""
    if isinstance(values, HessianEigs):
        values = values.values
    v = to_tensor(values, torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("frobenius_from_top: no eigenvalues given")
    return float(v.pow(2).sum().sqrt())
