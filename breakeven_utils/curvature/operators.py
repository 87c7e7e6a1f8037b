"""Curvature operators: the Hessian of the training loss as a linear operator on the flat
parameter vector, the L2 term as a diagonal operator, and their sums.

Every estimator of the package (``eigs``, ``trace``, ``density``) is a function of a
:class:`CurvatureOperator`: a symmetric D x D matrix known only through its products
``matvec(v)``, which it counts (``n_matvec``), and viewable as a float64
``scipy.sparse.linalg.LinearOperator`` (``to_scipy()``). ``a + b`` is the operator of
the sum, e.g. the sharpest-directions paper's H + wd * diag(mask) (Sec. 2):
``HessianOperator(...) + DiagonalOperator(wd * mask)``.

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
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import functional_call, grad, jvp

from breakeven_utils.core.device import to_tensor
from breakeven_utils.core.params import flatten, trainable_parameters, unflatten

__all__ = [
    "BN_MODES",
    "HVP_METHODS",
    "check_bn_mode",
    "measurement_mode",
    "as_batches",
    "MatvecBudgetExceeded",
    "CurvatureOperator",
    "HessianOperator",
    "DiagonalOperator",
    "SumOperator",
    "hvp",
    "hvp_operator",
]

BN_MODES = ("eval", "train")
HVP_METHODS = ("auto", "fwdrev", "double_backward", "cached")
_BN = nn.modules.batchnorm._BatchNorm


# --------------------------------------------------------------------------
# measurement context and data handling
# --------------------------------------------------------------------------

def check_bn_mode(bn_mode: str) -> None:
    """ValueError unless ``bn_mode`` is one of :data:`BN_MODES`."""
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
    check_bn_mode(bn_mode)
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


# --------------------------------------------------------------------------
# the operator base and the L2 term
# --------------------------------------------------------------------------

class MatvecBudgetExceeded(RuntimeError):
    """A ``to_scipy(max_matvec=...)`` operator was asked for one product too many."""


class CurvatureOperator:
    """A symmetric D x D matrix given by its products (hessian-eigenthings' operator base).

    Subclasses set ``dim``, ``device``, ``dtype`` (and ``shapes``, the per-parameter
    shapes of the flat layout, when there is one) and implement ``_matvec`` on a vector
    already of shape (D,), on ``device``, in ``dtype``. :meth:`matvec` validates and
    casts its argument, and counts the products in ``n_matvec``.
    """

    dim: int
    device: torch.device
    dtype: torch.dtype
    shapes: tuple | list = ()
    n_matvec: int = 0

    def _matvec(self, vec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def to_vec(self, v) -> torch.Tensor:
        """``v`` as a (D,) tensor on the operator's device and dtype (ValueError on a wrong shape)."""
        v = to_tensor(v)
        if v.dim() != 1 or v.numel() != self.dim:
            raise ValueError(f"vector must have shape ({self.dim},), got {tuple(v.shape)}")
        return v.to(self.device, self.dtype)

    def matvec(self, v) -> torch.Tensor:
        """A v, a (D,) tensor in the operator's dtype; counted in ``n_matvec``."""
        out = self._matvec(self.to_vec(v))
        self.n_matvec += 1
        return out

    def to_scipy(self, max_matvec: int | None = None) -> LinearOperator:
        """The operator as a float64 numpy ``LinearOperator`` (for ``scipy.sparse.linalg``,
        e.g. ARPACK's ``eigsh``). With ``max_matvec`` its product number ``max_matvec + 1``
        raises :class:`MatvecBudgetExceeded` instead of being computed."""
        calls = 0

        def matvec(x):
            nonlocal calls
            if max_matvec is not None and calls >= max_matvec:
                raise MatvecBudgetExceeded(f"more than max_matvec={max_matvec} products")
            calls += 1
            x = np.asarray(x, dtype=np.float64).reshape(-1)
            out = self.matvec(torch.from_numpy(x))
            return out.detach().to("cpu", torch.float64).numpy()

        return LinearOperator((self.dim, self.dim), matvec=matvec, dtype=np.float64)

    def __add__(self, other: CurvatureOperator) -> SumOperator:
        if not isinstance(other, CurvatureOperator):
            return NotImplemented
        return SumOperator(self, other)


class SumOperator(CurvatureOperator):
    """A_1 + A_2 + ...: ``matvec(v)`` is ``A_1.matvec(v) + A_2.matvec(v) + ...``, added
    left to right. Device, dtype and flat layout are those of the first term."""

    def __init__(self, *terms: CurvatureOperator):
        if not terms:
            raise ValueError("a sum needs at least one operator")
        dims = {t.dim for t in terms}
        if len(dims) != 1:
            raise ValueError(f"operators of different dimensions cannot be added: {sorted(dims)}")
        self.terms = tuple(terms)
        first = terms[0]
        self.dim, self.device, self.dtype = first.dim, first.device, first.dtype
        self.shapes = next((t.shapes for t in terms if len(t.shapes)), ())
        self.n_matvec = 0

    def _matvec(self, vec: torch.Tensor) -> torch.Tensor:
        out = self.terms[0].matvec(vec)
        for t in self.terms[1:]:
            out = out + t.matvec(vec)
        return out


class DiagonalOperator(CurvatureOperator):
    """diag(d): ``matvec(v) = d * v``. The L2 term of a loss with weight decay wd on
    the coordinates of ``mask`` is ``DiagonalOperator(wd * mask)`` (its Hessian;
    sharpest-directions paper, Sec. 2)."""

    def __init__(self, diagonal: torch.Tensor):
        diagonal = to_tensor(diagonal)
        if diagonal.dim() != 1:
            raise ValueError(f"diagonal must be a vector, got shape {tuple(diagonal.shape)}")
        self.diagonal = diagonal
        self.dim, self.device, self.dtype = diagonal.numel(), diagonal.device, diagonal.dtype
        self.n_matvec = 0

    def _matvec(self, vec: torch.Tensor) -> torch.Tensor:
        return self.diagonal * vec


# --------------------------------------------------------------------------
# the Hessian of the mean loss
# --------------------------------------------------------------------------

class HessianOperator(CurvatureOperator):
    """H, the Hessian of the mean loss over ``data`` (module docstring), as an operator
    on the flat parameter vector (the layout of ``params.parameters_vector``).

    Holds detached (optionally dtype-cast) copies of parameters and buffers;
    evaluation goes through ``torch.func.functional_call`` so the model's own
    tensors are never modified. ``matvec`` (alias ``hvp``) is an exact
    Hessian-vector product by ``method`` (see :func:`hvp`); ``n_hvp`` is
    ``n_matvec``. ``gradient()`` and ``loss()`` evaluate the same objective.
    """

    def __init__(self, model, loss_fn, data, *, bn_mode="eval", dtype=None,
                 batch_size=None, method="auto"):
        check_bn_mode(bn_mode)
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
        self.n_matvec = 0
        if method == "auto" and len(self.batches) == 1:
            self.method = "cached"
        self._graph = None

    @property
    def n_hvp(self) -> int:
        """Hessian-vector products made so far (``n_matvec``)."""
        return self.n_matvec

    # -- pieces ----------------------------------------------------------
    def unflat(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, unflatten(vec, self.shapes_like)))

    @property
    def shapes_like(self):
        return list(self.params.values())

    def batch_loss(self, params, x, y):
        out = functional_call(self.model, (params, self.buffers), (x,))
        return self.loss_fn(out, y)

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

    def _matvec(self, vec: torch.Tensor) -> torch.Tensor:
        v = self.unflat(vec)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with measurement_mode(self.model, self.bn_mode):
            if self.method == "cached":
                hvs = self._hvp_cached(v)
            else:
                hvs = [self._hvp_batch_auto(v, x, y) for x, y in self.batches]
            for hv, (x, _) in zip(hvs, self.batches):
                total.add_(flatten([h.detach() for h in hv]), alpha=x.shape[0] / self.n)
        return total

    def hvp(self, vec: torch.Tensor) -> torch.Tensor:
        """H v (``matvec``)."""
        return self.matvec(vec)

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss (flat)."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with measurement_mode(self.model, self.bn_mode):
            for x, y in self.batches:
                g = grad(self.batch_loss)(self.params, x, y)
                total.add_(flatten(g.values()), alpha=x.shape[0] / self.n)
        return total

    def loss(self) -> float:
        """The mean loss."""
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
    return HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype,
                           batch_size=batch_size, method=method).hvp(v)


def hvp_operator(model, loss_fn, data, **kw) -> tuple[LinearOperator, HessianOperator]:
    """A ``scipy.sparse.linalg.LinearOperator`` for H (float64 numpy), with the
    underlying :class:`HessianOperator` as second value (its ``.n_hvp`` counts products)."""
    op = HessianOperator(model, loss_fn, data, **kw)
    return op.to_scipy(), op
