"""Sharpest-directions paper (Jastrzebski et al. 2018), Sec. 2-3: Hessian top
eigenpairs and the Fig. 4 probes of the loss along the sharpest direction.

* :func:`top_eigs`: top-K eigenpairs of H ordered by magnitude (``which='LM'``,
  the authors' ``eigsh`` default) on a fixed measurement set, inference mode,
  **L2 term included**: with weight decay wd on the masked parameters (the
  recorder's ``weight_decay_on``), H = H_loss + wd * diag(mask).
* :func:`spectrum_summary`: rho(H) = the largest-magnitude eigenvalue returned,
  ||H||_F approximated by the top 5 (sqrt of the sum of squares, Sec. 4), and a
  flag when a returned eigenvalue is negative.
* Fig. 4 (Sec. 3.2): the typical SGD step along e_i,
  dtheta_i = eta * mean_j |<g_j, e_i>| over 10 mini-batch gradients g_j of size S
  (:func:`minibatch_projections`); the loss L(theta + k dtheta_i e_i) for k in
  [-8, 8] (:func:`loss_along`); k_min, the smallest |k| at which the loss
  changes by at least 1% (10%) of L(theta) (:func:`k_min`); and
  E_j[L(theta - alpha eta <g_j, e_1> e_1)] - L(theta) relative to L(theta) for
  alpha in {0.25, 0.5, 1, 2, 4} (:func:`alpha_experiment`).
* :func:`mean_weight_spectral_norm`: Table 1's rho(W), the mean over weight
  matrices of the largest singular value; a conv kernel out x in x kh x kw is
  reshaped to out x (in*kh*kw) (``params.weight_spectral_norms``).

Recorder metrics (registered by ``plugins``; use by name in ``RunConfig.metrics``): ``hessian_top``
(columns ``H_eig_1..k``, ``rho_H``, ``frob_H``, ``H_negative``, ``H_n_hvp``,
warm-started from the previous measurement), ``sharpest_probe`` (needs
``hessian_top``; columns ``dtheta_1``, ``kmin1_e1``, ``kmin10_e1``,
``alpha_<a>``; arrays ``loss_line_e1/e3/e5``) and ``rho_W``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from breakeven_utils.core.device import to_tensor
from breakeven_utils.core.params import trainable_parameters, weight_spectral_norms
from breakeven_utils.curvature import (
    DiagonalOperator,
    HessianEigs,
    HessianOperator,
    NotConvergedError,
    frobenius_from_top,
    top_eigenpairs,
)
from breakeven_utils.recorder.rules import weight_decay_mask

__all__ = [
    "K_GRID", "ALPHAS", "N_GRAD_BATCHES", "PROBE_DIRECTIONS",
    "top_eigs", "spectrum_summary", "check_k_grid", "loss_along", "k_min",
    "minibatch_projections", "alpha_experiment", "probe", "mean_weight_spectral_norm",
    "l2_mask_vector", "hessian_top_metric", "sharpest_probe_metric", "rho_W_metric",
]


#: k in [-8, 8] (Sec. 3.2) in steps of 0.5 (k_min is resolved to 0.5)
K_GRID = tuple(float(k) for k in np.linspace(-8, 8, 33))


ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)


N_GRAD_BATCHES = 10


PROBE_DIRECTIONS = (1, 3, 5)  # e1 (Fig. 4), e3 (Fig. 9), e5 (Fig. 10)


def l2_mask_vector(model: nn.Module, weight_decay_on: str = "all") -> torch.Tensor:
    """1.0 on the coordinates weight decay applies to, 0.0 elsewhere (flat layout)."""
    mask = weight_decay_mask(model, weight_decay_on)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([torch.full((p.numel(),), float(m), dtype=p.dtype, device=p.device)
                      for p, m in zip(params, mask)])


def top_eigs(model: nn.Module, loss_fn, data, k: int, *, which: str = "LM", tol: float = 1e-3,
             v0=None, weight_decay: float = 0.0, mask: torch.Tensor | None = None,
             bn_mode: str = "eval", seed: int = 0, max_hvp: int | None = None,
             batch_size: int | None = 512, dtype=None) -> HessianEigs:
    """Top-k eigenpairs of H = Hessian of the mean loss over ``data`` + ``weight_decay``
    * diag(``mask``) (the L2 term, Sec. 2), by Lanczos with full reorthogonalisation
    (``curvature.top_eigenpairs`` on the operator sum ``HessianOperator`` +
    ``DiagonalOperator(weight_decay * mask)``), stopped at ARPACK's residual criterion
    ``tol``; ``v0`` warm-starts from previous eigenvectors. ``which='LM'``: ordered by
    |lambda| as ``eigsh``'s default. ``mask=None`` applies the L2 term to every
    parameter. Raises ValueError when k >= D or k exceeds the Lanczos space."""
    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' or 'LM', got {which!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    hess = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype, batch_size=batch_size)
    steps = min(hess.dim, max_hvp if max_hvp is not None else 300)
    if k >= hess.dim:
        raise ValueError(f"k={k} eigenvectors need more than D={hess.dim} parameters")
    if k > steps:
        raise ValueError(f"k={k} exceeds the Lanczos space of {steps} vectors (max_hvp)")
    op = hess
    if weight_decay > 0:
        m = torch.ones(hess.dim, device=hess.device) if mask is None else to_tensor(mask)
        m = m.to(hess.device, hess.dtype)
        if m.shape != (hess.dim,):
            raise ValueError(f"mask must have shape ({hess.dim},), got {tuple(m.shape)}")
        op = hess + DiagonalOperator(weight_decay * m)     # H v + (wd * m) * v, as before
    try:
        return top_eigenpairs(op, k, which, tol=tol, v0=v0, max_matvec=steps, seed=seed)
    except NotConvergedError:
        raise RuntimeError(f"top_eigs: Lanczos did not reach tol={tol} within {steps} HVPs") from None


def spectrum_summary(values) -> dict:
    """rho(H) (the largest-magnitude eigenvalue returned), ||H||_F from the top 5
    (Sec. 4) and whether a returned eigenvalue is negative."""
    v = to_tensor(values, torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("spectrum_summary: no eigenvalues")
    top = v[torch.argsort(v.abs(), descending=True, stable=True)]
    return {"rho_H": float(top[0]), "frob_H": frobenius_from_top(top[:5]),
            "H_negative": bool((v < 0).any())}


def check_k_grid(ks) -> np.ndarray:
    """The interpolation grid as a sorted float array; it must contain k = 0
    (the reference loss L(theta)) and only finite values."""
    k = np.asarray(ks, dtype=float).reshape(-1)
    if k.size < 2 or not np.isfinite(k).all():
        raise ValueError(f"k grid needs at least 2 finite values, got {ks!r}")
    if not (k == 0).any():
        raise ValueError("k grid must include k = 0 (the loss at the current parameters)")
    if np.any(np.diff(k) <= 0):
        raise ValueError("k grid must be strictly increasing")
    return k


def _param_dict(model):
    return {n: p.detach() for n, p in trainable_parameters(model)}


@torch.no_grad()
def _loss_at(model, loss_fn, x, y, params: dict, buffers: dict, batch_size: int = 1024) -> float:
    tot = 0.0
    for i in range(0, len(y), batch_size):
        out = functional_call(model, (params, buffers), (x[i:i + batch_size],))
        tot += float(loss_fn(out, y[i:i + batch_size])) * len(y[i:i + batch_size])
    return tot / len(y)


@torch.no_grad()
def loss_along(model: nn.Module, loss_fn, data, direction: torch.Tensor, steps) -> np.ndarray:
    """L(theta + s * direction) for each s in ``steps`` (flat ``direction`` in the layout
    of the trainable parameters), in inference mode; the model is not modified."""
    x, y = data
    params = _param_dict(model)
    names = list(params)
    d = to_tensor(direction).reshape(-1)
    dim = sum(p.numel() for p in params.values())
    if d.numel() != dim:
        raise ValueError(f"direction has {d.numel()} entries, the model {dim} parameters")
    chunks = d.to(next(iter(params.values()))).split([p.numel() for p in params.values()])
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    was = model.training
    model.eval()
    try:
        out = []
        for s in np.asarray(steps, dtype=float):
            p = {n: params[n] + float(s) * c.view_as(params[n]) for n, c in zip(names, chunks)}
            out.append(_loss_at(model, loss_fn, x, y, p, buffers))
        return np.asarray(out)
    finally:
        model.train(was)


def k_min(ks, losses, frac: float) -> float:
    """Smallest |k| at which |L(k) - L(0)| >= frac * |L(0)| (Sec. 3.2); NaN if no k of
    the grid changes the loss that much."""
    k = check_k_grid(ks)
    L = np.asarray(losses, dtype=float)
    if L.shape != k.shape:
        raise ValueError("ks and losses differ in length")
    L0 = L[k == 0][0]
    hit = np.abs(L - L0) >= frac * abs(L0)
    return float(np.min(np.abs(k[hit]))) if hit.any() else float("nan")


def minibatch_projections(model: nn.Module, loss_fn, train, vectors: torch.Tensor, *,
                          n_batches: int = N_GRAD_BATCHES, batch_size: int = 128,
                          seed: int = 0) -> torch.Tensor:
    """<g_j, e_i> for ``n_batches`` mini-batch gradients g_j of size ``batch_size`` drawn
    without replacement from ``train`` (inference mode): an (n_batches x k) tensor."""
    x, y = (train.x, train.y) if hasattr(train, "x") else train
    need = n_batches * batch_size
    if need > len(y):
        raise ValueError(f"{n_batches} mini-batches of {batch_size} need {need} examples, "
                         f"the training set has {len(y)}")
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(y), generator=gen, device="cpu")[:need].to(y.device)  # seeded host draw
    params = [p for p in model.parameters() if p.requires_grad]
    V = to_tensor(vectors)
    was = model.training
    model.eval()
    try:
        out = []
        for j in range(n_batches):
            b = idx[j * batch_size:(j + 1) * batch_size]
            gs = torch.autograd.grad(loss_fn(model(x[b]), y[b]), params, allow_unused=True)
            g = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                           for gi, p in zip(gs, params)])
            out.append(V.to(g) @ g)
        return torch.stack(out)
    finally:
        model.train(was)


def alpha_experiment(model: nn.Module, loss_fn, data, e1: torch.Tensor, proj_1, lr: float,
                     alphas: Sequence[float] = ALPHAS) -> dict[float, float]:
    """(E_j[L(theta - alpha lr <g_j, e1> e1)] - L(theta)) / L(theta) per alpha (Fig. 4
    right), the expectation over the mini-batch projections ``proj_1``."""
    steps = []
    for a in alphas:
        steps += [-float(a) * lr * float(p) for p in np.asarray(proj_1).reshape(-1)]
    losses = loss_along(model, loss_fn, data, e1, [0.0] + steps)
    L0, rest = losses[0], losses[1:].reshape(len(alphas), -1)
    return {float(a): float((r.mean() - L0) / L0) for a, r in zip(alphas, rest)}


def probe(model: nn.Module, loss_fn, data, train, eigs: HessianEigs, lr: float, *,
          batch_size: int = 128, ks=K_GRID, alphas=ALPHAS, n_batches: int = N_GRAD_BATCHES,
          directions: Sequence[int] = PROBE_DIRECTIONS, seed: int = 0) -> dict:
    """The Fig. 4 probes at the current parameters: per direction i (1-based, those
    <= k): dtheta_i = lr * mean_j |<g_j, e_i>| and the loss L(theta + k dtheta_i e_i)
    over ``ks``; k_min at 1% and 10% for e_1 and the alpha experiment along e_1.
    ``data``: the (x, y) the loss is evaluated on (the Hessian measurement set)."""
    ks = check_k_grid(ks)
    dirs = [i for i in directions if i <= len(eigs.values)]
    proj = minibatch_projections(model, loss_fn, train, eigs.vectors[[i - 1 for i in dirs]],
                                 n_batches=n_batches, batch_size=batch_size, seed=seed)
    out = {"lines": {}, "dtheta": {}}
    for c, i in enumerate(dirs):
        dt = lr * float(proj[:, c].abs().mean())
        out["dtheta"][i] = dt
        out["lines"][i] = loss_along(model, loss_fn, data, eigs.vectors[i - 1], ks * dt)
    L1 = out["lines"][1]
    out["kmin1"], out["kmin10"] = k_min(ks, L1, 0.01), k_min(ks, L1, 0.10)
    out["alpha"] = alpha_experiment(model, loss_fn, data, eigs.vectors[0], proj[:, 0], lr, alphas)
    return out


def mean_weight_spectral_norm(model: nn.Module) -> float:
    """Table 1's rho(W): mean largest singular value over the weight matrices; a conv
    kernel out x in x kh x kw is reshaped to out x (in*kh*kw)."""
    norms = weight_spectral_norms(model)
    return float(np.mean(list(norms.values()))) if norms else float("nan")


def _measure_xy(ctx):
    m, n = ctx.data.measure, ctx.config.hessian_n
    return (m.x, m.y) if n is None else (m.x[:n], m.y[:n])


def hessian_top_metric(ctx) -> dict:
    """Top ``hessian_k`` eigenpairs (``hessian_which``, L2 included) on the first
    ``hessian_n`` measurement examples, warm-started from the previous measurement; an
    NSGD-type rule that refreshed at this very iteration with the same settings (LM,
    inference mode, at least k vectors, the same examples, a tolerance as tight) gives
    its eigenpairs instead (``H_n_hvp`` is then 0)."""
    c = ctx.config
    reuse = getattr(ctx.rule, "eigs_at", None)
    h = None
    if reuse is not None and c.hessian_which == "LM" and c.hessian_bn_mode == "eval":
        h = reuse(ctx.iteration, c.hessian_k, c.hessian_n, c.hessian_tol)
    if h is None:
        mask = l2_mask_vector(ctx.model, c.weight_decay_on) if c.weight_decay > 0 else None
        h = top_eigs(ctx.model, ctx.loss_fn, _measure_xy(ctx), c.hessian_k, which=c.hessian_which,
                     tol=c.hessian_tol, v0=ctx.state.get("top_v0"), weight_decay=c.weight_decay,
                     mask=mask, bn_mode=c.hessian_bn_mode, seed=c.seed)
    ctx.state["top_v0"] = h.vectors.detach().clone()
    ctx.cache["hessian_top"] = h
    row = {f"H_eig_{i + 1}": float(v) for i, v in enumerate(h.values)}
    row.update(spectrum_summary(h.values))
    row["H_negative"] = float(row["H_negative"])
    row["H_n_hvp"] = float(h.n_hvp)
    return row


def sharpest_probe_metric(ctx) -> dict:
    """Fig. 4 probes (see :func:`probe`) with the eigenvectors of ``hessian_top``."""
    h = ctx.cache.get("hessian_top")
    if h is None:
        raise ValueError("metric 'sharpest_probe' needs 'hessian_top' in RunConfig.metrics")
    c = ctx.config
    r = probe(ctx.model, ctx.loss_fn, _measure_xy(ctx), ctx.data.train, h, ctx.lr,
              batch_size=c.batch_size, seed=c.seed * 1_000_003 + ctx.iteration + 11)
    arrays = ctx.cache.setdefault("arrays", {})
    for i, line in r["lines"].items():
        arrays[f"loss_line_e{i}"] = line
    row = {f"dtheta_{i}": v for i, v in r["dtheta"].items()}
    row.update(kmin1_e1=r["kmin1"], kmin10_e1=r["kmin10"])
    row.update({f"alpha_{a:g}": v for a, v in r["alpha"].items()})
    return row


def rho_W_metric(ctx) -> dict:
    """Table 1's rho(W) at the measured state (:func:`mean_weight_spectral_norm`)."""
    return {"rho_W": mean_weight_spectral_norm(ctx.model)}
