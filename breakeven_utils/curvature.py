"""Curvature of the training loss: Hessian-vector products, top eigenpairs,
trace, spectral density and per-example curvature.

The Hessian is that of the mean loss over a measurement set ``data`` (the
papers use about 5% of the training set, break-even paper App. C):

    L(theta) = (1/N) sum_b n_b * loss_fn(f(theta, x_b), y_b),

summed batch by batch so memory stays bounded by one batch. ``data`` is an
``(inputs, targets)`` pair of tensors, an object with ``.x``/``.y`` (a
``data.Split``), or an iterable of such pairs; ``batch_size`` splits it further.

BatchNorm: ``bn_mode`` is an explicit argument. ``'eval'`` uses the running
statistics, ``'train'`` the statistics of each batch. Measuring never changes
the running statistics nor ``model.training``; dropout is always off during a
measurement (the sharpest-directions code measured on the inference graph).

Top eigenpairs: Lanczos in torch with full reorthogonalisation
(``eigensolver.lanczos_topk``; from a random vector, or from the previous
eigenvectors when warm-started along a trajectory) that stops as soon as the
wanted Ritz pairs meet the tolerance (default; it measured fewer HVPs than
ARPACK here), or SciPy's ARPACK ``eigsh`` as the break-even paper used
(``solver='arpack'``), both over exact Hessian-vector products.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from .eigensolver import lanczos_topk
from .params import flatten, trainable_parameters, unflatten

__all__ = [
    "measurement_mode",
    "as_batches",
    "hvp",
    "hvp_operator",
    "HessianEigs",
    "hessian_eigs",
    "TraceEstimate",
    "hessian_trace",
    "SpectralDensity",
    "hessian_density",
    "frobenius_from_top",
    "per_example_curvature",
]

BN_MODES = ("eval", "train")
HVP_METHODS = ("auto", "fwdrev", "double_backward", "cached")
_BN = nn.modules.batchnorm._BatchNorm


# --------------------------------------------------------------------------
# measurement context and data handling
# --------------------------------------------------------------------------

def _check_bn_mode(bn_mode: str) -> None:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")


@contextmanager
def measurement_mode(model: nn.Module, bn_mode: str = "eval") -> Iterator[nn.Module]:
    """Put ``model`` in a deterministic measurement state, restore it afterwards.

    Every module is set to eval (dropout off). With ``bn_mode='train'`` the
    BatchNorm layers normalise with batch statistics but ``track_running_stats``
    is switched off for the duration, so running statistics and
    ``num_batches_tracked`` are never touched. The per-module ``training``
    flags and ``track_running_stats`` are restored on exit.
    """
    _check_bn_mode(bn_mode)
    training = {m: m.training for m in model.modules()}
    tracking = {}
    model.eval()
    if bn_mode == "train":
        for m in model.modules():
            if isinstance(m, _BN):
                tracking[m] = m.track_running_stats
                m.track_running_stats = False
                m.training = True
    try:
        yield model
    finally:
        for m, t in tracking.items():
            m.track_running_stats = t
        for m, t in training.items():
            m.training = t


def as_batches(data, batch_size: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalise the ``data`` argument into a list of (inputs, targets) pairs."""
    if hasattr(data, "x") and hasattr(data, "y") and not isinstance(data, torch.Tensor):
        data = (data.x, data.y)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        pairs = [tuple(data)]
    else:
        try:
            pairs = [tuple(b) for b in data]
        except TypeError:
            raise ValueError("data must be an (inputs, targets) pair of tensors or an "
                             "iterable of such pairs") from None
    out = []
    for b in pairs:
        if len(b) != 2 or not all(isinstance(t, torch.Tensor) for t in b):
            raise ValueError("each batch must be an (inputs, targets) pair of tensors")
        x, y = b
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"inputs and targets differ in length ({x.shape[0]} vs {y.shape[0]})")
        if x.shape[0] == 0:
            continue
        if batch_size is not None:
            if batch_size < 1:
                raise ValueError(f"batch_size must be positive, got {batch_size}")
            out.extend(zip(x.split(batch_size), y.split(batch_size)))
        else:
            out.append((x, y))
    if not out:
        raise ValueError("data is empty")
    return out


def _cast(t: torch.Tensor, dtype) -> torch.Tensor:
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


class _Objective:
    """The mean loss over ``data`` as a function of a flat parameter vector.

    Holds detached (optionally dtype-cast) copies of parameters and buffers;
    evaluation goes through ``torch.func.functional_call`` so the model's own
    tensors are never modified.
    """

    def __init__(self, model, loss_fn, data, *, bn_mode="eval", dtype=None,
                 batch_size=None, method="auto"):
        _check_bn_mode(bn_mode)
        if method not in HVP_METHODS:
            raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")
        named = trainable_parameters(model)
        if not named:
            raise ValueError("model has no trainable parameters")
        self.model, self.loss_fn, self.bn_mode, self.method = model, loss_fn, bn_mode, method
        self.names = [n for n, _ in named]
        self.params = {n: _cast(p.detach(), dtype) for n, p in named}
        self.shapes = [p.shape for p in self.params.values()]
        self.dim = sum(p.numel() for p in self.params.values())
        self.dtype = next(iter(self.params.values())).dtype
        self.device = next(iter(self.params.values())).device
        # buffers are passed as copies so nothing can write to the model's own
        self.buffers = {n: _cast(b.detach(), dtype).clone() for n, b in model.named_buffers()}
        self.batches = [(_cast(x, dtype).to(self.device), _cast(y, dtype).to(self.device))
                        for x, y in as_batches(data, batch_size)]
        self.n = sum(x.shape[0] for x, _ in self.batches)
        self.n_hvp = 0
        if method == "auto" and len(self.batches) == 1:
            self.method = "cached"
        self._graph = None

    # -- pieces ----------------------------------------------------------
    def unflat(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, unflatten(vec, self.shapes_like)))

    @property
    def shapes_like(self):
        return list(self.params.values())

    def batch_loss(self, params, x, y):
        out = functional_call(self.model, (params, self.buffers), (x,))
        return self.loss_fn(out, y)

    def to_vec(self, v) -> torch.Tensor:
        v = torch.as_tensor(v)
        if v.dim() != 1 or v.numel() != self.dim:
            raise ValueError(f"vector must have shape ({self.dim},), got {tuple(v.shape)}")
        return v.to(self.device, self.dtype)

    # -- products ----------------------------------------------------------
    def _hvp_cached(self, v: dict) -> list[list[torch.Tensor]]:
        # the graph of the gradient is built once (as pyhessian does for one
        # batch); each HVP is then a single backward pass through it
        if self._graph is None:
            params = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
            with torch.enable_grad():
                grads = [torch.autograd.grad(self.batch_loss(params, x, y), list(params.values()),
                                             create_graph=True) for x, y in self.batches]
            self._graph = (list(params.values()), grads)
        params, grads = self._graph
        with torch.enable_grad():
            return [torch.autograd.grad(g, params, grad_outputs=list(v.values()), retain_graph=True)
                    for g in grads]

    def _hvp_batch(self, v: dict, x, y) -> list[torch.Tensor]:
        if self.method == "fwdrev":
            g = lambda p: grad(self.batch_loss)(p, x, y)  # noqa: E731
            return list(jvp(g, (self.params,), (v,))[1].values())
        params = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
        with torch.enable_grad():
            loss = self.batch_loss(params, x, y)
            gs = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            return list(torch.autograd.grad(gs, list(params.values()), grad_outputs=list(v.values())))

    def _hvp_batch_auto(self, v, x, y):
        if self.method == "auto":
            # forward-over-reverse measures faster, but some losses' backward
            # formulas are not forward-differentiable in torch (e.g. mse_loss:
            # "ZeroTensors are immutable"); fall back to double backward once
            self.method = "fwdrev"
            try:
                return self._hvp_batch(v, x, y)
            except RuntimeError:
                self.method = "double_backward"
        return self._hvp_batch(v, x, y)

    def hvp(self, vec: torch.Tensor) -> torch.Tensor:
        vec = self.to_vec(vec)
        v = self.unflat(vec)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with measurement_mode(self.model, self.bn_mode):
            if self.method == "cached":
                hvs = self._hvp_cached(v)
            else:
                hvs = [self._hvp_batch_auto(v, x, y) for x, y in self.batches]
            for hv, (x, _) in zip(hvs, self.batches):
                total.add_(flatten([h.detach() for h in hv]), alpha=x.shape[0] / self.n)
        self.n_hvp += 1
        return total

    def gradient(self) -> torch.Tensor:
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with measurement_mode(self.model, self.bn_mode):
            for x, y in self.batches:
                g = grad(self.batch_loss)(self.params, x, y)
                total.add_(flatten(g.values()), alpha=x.shape[0] / self.n)
        return total

    def loss(self) -> float:
        total = 0.0
        with measurement_mode(self.model, self.bn_mode), torch.no_grad():
            for x, y in self.batches:
                total += float(self.batch_loss(self.params, x, y)) * x.shape[0] / self.n
        return total


def hvp(model: nn.Module, loss_fn, data, v: torch.Tensor, *, bn_mode: str = "eval",
        dtype=None, method: str = "auto", batch_size: int | None = None) -> torch.Tensor:
    """H v for the mean loss over ``data`` (flat vector in, flat vector out).

    ``method='fwdrev'`` is forward-over-reverse (``jvp`` of ``grad``),
    ``'double_backward'`` differentiates <grad, v> again; both are exact.
    ``'cached'`` builds the graph of the gradient once and reuses it (one
    backward pass per HVP, memory of that graph for all of ``data``).
    ``'auto'``: 'cached' when ``data`` is a single batch, else
    forward-over-reverse (faster than double backward here), falling back to
    double backward for losses torch cannot differentiate that way (``MSELoss``).
    """
    return _Objective(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                      batch_size=batch_size, method=method).hvp(v)


def hvp_operator(model, loss_fn, data, **kw):
    """A ``scipy.sparse.linalg.LinearOperator`` for H (float64 numpy), with the
    underlying objective as second value (its ``.n_hvp`` counts products)."""
    obj = _Objective(model, loss_fn, data, **kw)
    return _operator(obj), obj


def _operator(obj: _Objective, max_hvp: int | None = None):
    from scipy.sparse.linalg import LinearOperator

    def matvec(x):
        if max_hvp is not None and obj.n_hvp >= max_hvp:
            raise _Budget()
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        out = obj.hvp(torch.from_numpy(x))
        return out.detach().to("cpu", torch.float64).numpy()

    return LinearOperator((obj.dim, obj.dim), matvec=matvec, dtype=np.float64)


class _Budget(Exception):
    pass


# --------------------------------------------------------------------------
# top-k eigenpairs
# --------------------------------------------------------------------------

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


def _start_vector(obj: _Objective, v0, seed: int) -> torch.Tensor:
    """The Lanczos start (unit vector): seeded random (cold), or the normalised
    sum of the unit rows of ``v0`` (warm), with no random admixture: a start
    inside the previous top space is what makes a warm start pay."""
    if v0 is None:
        rand = np.random.default_rng(seed).standard_normal(obj.dim)
        return torch.from_numpy(rand / np.linalg.norm(rand)).to(obj.device, obj.dtype)
    if isinstance(v0, HessianEigs):
        v0 = v0.vectors
    v0 = torch.as_tensor(v0).detach()
    if v0.dim() == 1:
        v0 = v0[None]
    if v0.dim() != 2 or v0.shape[1] != obj.dim:
        raise ValueError(f"v0 must be (k', {obj.dim}) vectors, got {tuple(v0.shape)}")
    v0 = v0.to(obj.device, obj.dtype)
    norms = v0.norm(dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()) or bool((norms == 0).any()):
        raise ValueError("v0 contains a zero or non-finite vector")
    start = (v0 / norms).sum(0)
    n = float(start.norm())
    if not n > 0:
        raise ValueError("v0's rows sum to zero: give them with consistent signs")
    return start / n


def _arpack_start(start: torch.Tensor, seed: int, warm: bool) -> np.ndarray:
    """ARPACK's start: the same vector, plus (warm) a small random part so that
    its Krylov space cannot close on an invariant subspace of fewer than k
    eigenvectors (ARPACK cannot continue from there, unlike ``lanczos_topk``)."""
    start = start.detach().to("cpu", torch.float64).numpy()
    if not warm:
        return start
    rand = np.random.default_rng(seed).standard_normal(start.size)
    start = start + 1e-2 * rand / np.linalg.norm(rand)
    return start / np.linalg.norm(start)


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
        (``eigensolver.lanczos_topk``), stopped as soon as the k pairs meet
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
        'double_backward' (see ``hvp``).
    """
    from scipy.sparse.linalg import eigsh

    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' or 'LM', got {which!r}")
    if solver not in ("lanczos", "arpack"):
        raise ValueError(f"solver must be 'lanczos' or 'arpack', got {solver!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol!r}")
    if max_hvp is not None and max_hvp < 1:
        raise ValueError(f"max_hvp must be positive, got {max_hvp!r}")
    obj = _Objective(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                     batch_size=batch_size, method=method)
    if k >= obj.dim:
        raise ValueError(f"k={k} must be smaller than the number of parameters D={obj.dim} "
                         "(use a dense eigendecomposition for the full spectrum)")
    start = _start_vector(obj, v0, seed)
    if solver == "lanczos":
        steps = min(obj.dim, max_hvp if max_hvp is not None else 300)
        vals_t, vecs, ok = lanczos_topk(obj.hvp, start, k, which, max(tol, 1e-14), steps, seed=seed)
        if not ok:
            raise RuntimeError(f"hessian_eigs: Lanczos did not reach tol={tol} within "
                               f"{steps} HVPs (raise max_hvp or try solver='arpack')")
        vals = vals_t.numpy()
    else:
        if ncv is not None:
            ncv = min(max(ncv, k + 2), obj.dim)
        op = _operator(obj, max_hvp)
        try:
            vals, vecs_np = eigsh(op, k=k, which=which, tol=tol, ncv=ncv,
                                  v0=_arpack_start(start, seed, warm=v0 is not None))
        except _Budget:
            raise RuntimeError(f"hessian_eigs: more than max_hvp={max_hvp} HVPs needed") from None
        vecs = torch.from_numpy(vecs_np.T.copy()).to(obj.device, obj.dtype)
    return _ordered_eigs(vals, vecs, obj, which)


def _ordered_eigs(vals: np.ndarray, vecs: torch.Tensor, obj: _Objective, which: str) -> HessianEigs:
    """Eigenpairs ordered by algebraic value ('LA') or magnitude ('LM'), unit vectors."""
    key = -vals if which == "LA" else -np.abs(vals)
    order = np.argsort(key, kind="stable")
    values = torch.from_numpy(np.ascontiguousarray(vals[order]))
    vectors = vecs[torch.from_numpy(order).to(vecs.device)]
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return HessianEigs(values=values, vectors=vectors, n_hvp=obj.n_hvp, which=which,
                       shapes=tuple(obj.shapes))


# --------------------------------------------------------------------------
# trace, density, Frobenius norm
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of Tr(H): mean of v^T H v over Rademacher probes v,
    its standard error (sample std / sqrt(n)), and the samples."""
    mean: float
    stderr: float
    samples: torch.Tensor = field(repr=False)
    n_hvp: int


def _rademacher(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1


def hessian_trace(model: nn.Module, loss_fn, data, n_probes: int = 100, *, seed: int = 0,
                  bn_mode: str = "eval", dtype=None, method: str = "auto",
                  batch_size: int | None = None) -> TraceEstimate:
    """Tr(H) by Hutchinson's estimator with a fixed number of Rademacher probes.

    Unbiased: no stopping rule on the running mean (pyhessian's rule is biased).
    """
    if not isinstance(n_probes, (int, np.integer)) or n_probes < 2:
        raise ValueError(f"n_probes must be an integer >= 2 (for a standard error), got {n_probes!r}")
    obj = _Objective(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                     batch_size=batch_size, method=method)
    gen = torch.Generator().manual_seed(seed)
    samples = torch.empty(n_probes, dtype=torch.float64)
    for i in range(n_probes):
        v = _rademacher(obj.dim, gen).to(obj.device, obj.dtype)
        samples[i] = float(torch.dot(v, obj.hvp(v)))
    return TraceEstimate(mean=float(samples.mean()),
                         stderr=float(samples.std(unbiased=True) / math.sqrt(n_probes)),
                         samples=samples, n_hvp=obj.n_hvp)


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


def _lanczos(matvec, v: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """m steps of Lanczos with full reorthogonalisation (twice, classical
    Gram-Schmidt). Returns the tridiagonal's (alpha, beta); stops early on
    breakdown (an invariant subspace)."""
    dim = v.numel()
    V = torch.zeros(m, dim, dtype=v.dtype, device=v.device)
    alphas, betas = [], []
    V[0] = v / v.norm()
    for j in range(m):
        w = matvec(V[j])
        a = torch.dot(w, V[j])
        alphas.append(float(a))
        for _ in range(2):
            w = w - V[: j + 1].T @ (V[: j + 1] @ w)
        b = float(w.norm())
        if j == m - 1 or b < 1e-10 * max(abs(alphas[-1]), 1.0):
            break
        betas.append(b)
        V[j + 1] = w / b
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64)


def hessian_density(model: nn.Module, loss_fn, data, n_steps: int = 80, n_runs: int = 1, *,
                    n_grid: int = 1000, sigma: float | None = None, seed: int = 0,
                    bn_mode: str = "eval", dtype=None, method: str = "auto",
                    batch_size: int | None = None) -> SpectralDensity:
    """Spectral density of H by stochastic Lanczos quadrature (Ghorbani et al.
    2019; Lin et al. 2016): per run, ``n_steps`` Lanczos steps with full
    reorthogonalisation from a random unit vector; the Ritz values theta_j with
    weights tau_j = (first component of the j-th Ritz vector)^2 estimate the
    spectral measure; the density is their Gaussian smoothing (width ``sigma``,
    default 1% of the Ritz-value range) averaged over runs.
    """
    if n_steps < 2 or n_runs < 1:
        raise ValueError("n_steps must be >= 2 and n_runs >= 1")
    obj = _Objective(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                     batch_size=batch_size, method=method)
    m = min(n_steps, obj.dim)
    gen = torch.Generator().manual_seed(seed)
    all_nodes, all_weights = [], []
    for _ in range(n_runs):
        v = torch.randn(obj.dim, generator=gen, dtype=torch.float64).to(obj.device, obj.dtype)
        a, b = _lanczos(obj.hvp, v, m)
        T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
        theta, Y = torch.linalg.eigh(T)
        nodes = torch.full((m,), float("nan"), dtype=torch.float64)
        weights = torch.zeros(m, dtype=torch.float64)
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
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid, dtype=torch.float64)
    nz = torch.where(valid, nodes, torch.zeros_like(nodes))
    kern = torch.exp(-0.5 * ((grid[None, None, :] - nz[:, :, None]) / sigma) ** 2)
    kern = kern / (sigma * math.sqrt(2 * math.pi))
    density = (weights[:, :, None] * kern).sum(1).mean(0)
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights,
                           sigma=float(sigma), n_hvp=obj.n_hvp)


def frobenius_from_top(values) -> float:
    """||H||_F approximated by the top-k eigenvalues: sqrt(sum_i lambda_i^2)
    (the NSGD table of the sharpest-directions paper)."""
    if isinstance(values, HessianEigs):
        values = values.values
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("frobenius_from_top: no eigenvalues given")
    return float(v.pow(2).sum().sqrt())


# --------------------------------------------------------------------------
# per-example curvature, Eq. (1)
# --------------------------------------------------------------------------

def per_example_curvature(model: nn.Module, loss_fn, data, v: torch.Tensor, *,
                          bn_mode: str = "eval", dtype=None,
                          batch_size: int | None = None) -> torch.Tensor:
    """v^T H_i v for every example i, where H_i is the Hessian of example i's
    loss: the second directional derivative d^2/dt^2 L_i(theta + t v) at t=0,
    by nested forward-mode (one batched pass, no per-example loop).

    Their variance over i with v = e_H^1 is s^2 of Eq. (1) of the break-even
    paper; their mean is v^T H v. ``loss_fn`` is mean-reduced; example i's loss
    is ``loss_fn(out_i[None], y_i[None])``. With ``bn_mode='train'`` the examples
    of a batch are coupled through its statistics (the mean is still v^T H v).
    """
    obj = _Objective(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype, batch_size=batch_size)
    vd = obj.unflat(obj.to_vec(v))
    per_loss = vmap(lambda o, t: loss_fn(o[None], t[None]))
    one = torch.ones((), dtype=obj.dtype, device=obj.device)
    zero = torch.zeros((), dtype=obj.dtype, device=obj.device)
    out = []
    with measurement_mode(model, bn_mode):
        for x, y in obj.batches:
            def phi(t, x=x, y=y):
                p = {n: obj.params[n] + t * vd[n] for n in obj.names}
                return per_loss(functional_call(model, (p, obj.buffers), (x,)), y)

            def dphi(t, phi=phi):
                return jvp(phi, (t,), (one,))[1]

            out.append(jvp(dphi, (zero,), (one,))[1].detach())
    return torch.cat(out)
