"""A Walk with SGD (Xing et al. 2018): the loss between consecutive iterates.

Definitions (Sec. 3, 3.1, 3.2 of the paper; implemented exactly):

* theta_t^alpha = (1 - alpha) theta_t + alpha theta_{t+1} (Sec. 3), on the
  paper's 10 uniform points plus alpha = 1 (:data:`ALPHAS` = 0, 0.1, ..., 1.0;
  the authors' code used 0, ..., 0.9), the loss being the mean over the run's
  whole training set (:func:`interpolation_losses`).
* A barrier is crossed between t and t+1 iff some interpolated loss exceeds
  both L(theta_t) and L(theta_{t+1}) (footnote 1, :func:`barrier_crossed`).
* Valley floor theta_t^min: the interpolation point of smallest loss; the
  height of the step (L(theta_t) + L(theta_{t+1}) - 2 L(theta_t^min)) / 2
  (Sec. 3.2, :func:`floor_height`), averaged over an epoch for Table 2.
* cos(g_{t-1}, g_t) of the steps actually applied and ||theta_t - theta_0||
  (Sec. 3): recorder metric ``walk_step``; the interpolation itself is the
  recorder metric ``walk_interp`` (both registered here, so the run store's
  caching, resume and divergence handling apply).
* GD plus isotropic noise of variance factor x the largest per-parameter
  variance of *mini-batch* gradients at initialisation (Sec. 4): update rule
  ``gd_noise_minibatch`` (:func:`max_minibatch_gradient_variance`).
* The quadratic of Sec. 6 / App. E (Fig. 28): :func:`damping`,
  :func:`damping_regime`, :func:`quadratic_gd`.

The metrics and the rule are registered with the recorder by ``walk.plugins`` (an
entry point); settings, runs, analysis, claims and figures are the section's other
modules.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from breakeven_utils.core.device import to_tensor
from breakeven_utils.recorder.rules import GDNoiseRule

__all__ = [
    "ALPHAS", "INTERP_METHODS", "interpolation_losses", "barrier_crossed", "floor_height",
    "valley_floor", "max_minibatch_gradient_variance", "MiniBatchNoiseRule",
    "damping", "damping_regime", "quadratic_gd", "quadratic_loss", "walk_interp_metric",
    "walk_step_metric",
    "WALK_CHUNK",
]

#: the paper's 10 uniform points (0, 0.1, ..., 0.9) plus alpha = 1, so both ends are exact
ALPHAS = tuple(round(0.1 * i, 10) for i in range(11))
INTERP_METHODS = ("auto", "vmap", "loop")
#: examples per forward pass (and per BatchNorm batch-statistics chunk) in the recorder metric
WALK_CHUNK = 1000


# ----------------------------------------------------------------------------- definitions


def _losses_1d(losses) -> np.ndarray:
    v = np.asarray(losses, dtype=float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"losses must be a 1-D sequence of at least 2 values (first and last: "
                         f"the two iterates), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("losses contain NaN or inf (a diverged step has no barrier or height)")
    return v


def barrier_crossed(losses) -> bool:
    """Footnote 1: True iff some interpolated loss is higher than both L(theta_t)
    (``losses[0]``) and L(theta_{t+1}) (``losses[-1]``)."""
    v = _losses_1d(losses)
    return bool(v.size > 2 and np.max(v[1:-1]) > max(v[0], v[-1]))


def floor_height(losses) -> float:
    """Sec. 3.2: (L(theta_t) + L(theta_{t+1}) - 2 L(theta_t^min)) / 2, with
    L(theta_t^min) the smallest loss over all interpolation points (ends included,
    so the height is >= 0; a monotone slice has height |L(theta_t) - L(theta_{t+1})| / 2)."""
    v = _losses_1d(losses)
    return float((v[0] + v[-1] - 2.0 * v.min()) / 2.0)


def valley_floor(losses, alphas=ALPHAS) -> tuple[float, float]:
    """(alpha of theta_t^min, L(theta_t^min)): the valley floor of one step (Sec. 3.1)."""
    v = _losses_1d(losses)
    a = _check_alphas(alphas)
    if len(a) != len(v):
        raise ValueError(f"{len(v)} losses but {len(a)} alphas")
    i = int(np.argmin(v))
    return float(a[i]), float(v[i])


def _check_alphas(alphas) -> np.ndarray:
    a = np.asarray(alphas, dtype=float)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"alphas must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"alphas must lie in [0, 1] (convex combinations of two iterates), "
                         f"got {a.tolist()}")
    return a


# ----------------------------------------------------------------------------- interpolation


def _chunks(data, chunk_size: int):
    """A pair of tensors -> fixed chunks of ``chunk_size``; an iterable of batches as given."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if len(y) == 0:
            raise ValueError("data is empty")
        return list(zip(x.split(chunk_size), y.split(chunk_size)))
    batches = list(data)
    if not batches:
        raise ValueError("data has no batches")
    for b in batches:
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise ValueError("data must be a pair of tensors (x, y) or an iterable of (x, y) batches")
    return batches


def _flat(theta, n: int, like: torch.Tensor, what: str) -> torch.Tensor:
    t = to_tensor(theta)
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"{what} must be a flat vector of the model's {n} trainable parameters "
                         f"(parameters_to_vector order), got shape {tuple(t.shape)}")
    return t.detach().to(device=like.device, dtype=like.dtype)


def _is_bn(m) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def interpolation_losses(model: nn.Module, loss_fn, data, theta_a, theta_b, alphas=ALPHAS, *,
                         chunk_size: int = WALK_CHUNK, bn_mode: str = "train",
                         method: str = "auto", share_first: bool = True) -> np.ndarray:
    """Mean loss over ``data`` at every (1 - alpha) theta_a + alpha theta_b (Sec. 3).

    data: a pair of tensors (cut into fixed chunks of ``chunk_size``) or an
    iterable of (x, y) batches; ``loss_fn`` must average over a batch (the
    chunks are weighted by their sizes). theta_a, theta_b: flat vectors of the
    trainable parameters in ``parameters_to_vector`` order. ``bn_mode='train'``:
    BatchNorm uses each chunk's batch statistics (the paper, footnote 6: what
    SGD experiences), every other module is in eval mode; ``'eval'``: running
    statistics. The model's parameters, buffers (BN running statistics) and
    train/eval flags are left as they were. ``method``: ``'vmap'`` evaluates
    all alphas of a chunk in one batched pass (``torch.func.functional_call``
    with stacked parameters), ``'loop'`` one pass per alpha on the same chunk,
    ``'auto'``: loop (on CPU as fast as vmap for the MLP and faster for convolutional
    models, see benchmarks/walk_interpolation.py). Image chunks are passed in
    channels-last memory format (faster CPU convolutions; the same values).
    ``share_first``: when the first parametrised module the forward pass calls is
    a Linear/Conv layer called once (its input depends on no parameter), its
    output is affine in alpha, z(alpha) = (1 - alpha) z(theta_a) + alpha z(theta_b),
    so it is computed twice per chunk instead of once per alpha (the MLP's first
    layer holds ~88% of its multiply-adds); the loop mixes one alpha's output at a
    time, vmap all K at once (K times the layer's output in memory).
    Returns a float64 array, one loss per alpha.
    """
    a = _check_alphas(alphas)
    if method not in INTERP_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(INTERP_METHODS)}")
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    like = named[0][1]
    n = sum(p.numel() for _, p in named)
    ta, tb = _flat(theta_a, n, like, "theta_a"), _flat(theta_b, n, like, "theta_b")
    batches = _chunks(data, chunk_size)
    K = len(a)
    w = torch.as_tensor(a, dtype=like.dtype, device=like.device)[:, None]
    P = (1 - w) * ta + w * tb  # K x D; rows 0 and K-1 are exactly theta_a / theta_b at alpha 0 / 1
    stacked, ends, off = {}, ({}, {}), 0
    for k, p in named:
        stacked[k] = P[:, off:off + p.numel()].reshape(K, *p.shape)
        ends[0][k] = ta[off:off + p.numel()].view(p.shape)
        ends[1][k] = tb[off:off + p.numel()].view(p.shape)
        off += p.numel()
    frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())
    flags = {m: m.training for m in model.modules()}
    model.eval()
    if bn_mode == "train":
        for m in model.modules():
            if _is_bn(m):
                m.train()
    use_vmap = method == "vmap"
    total = torch.zeros(K, dtype=torch.float64, device="cpu")  # float64 sums of batch losses, on the host
    count = 0
    first = _first_layer(model, ends[0], frozen, buffers, batches[0][0]) if share_first else None
    held: dict = {}
    try:
        if first is not None:
            mod, prefix = first
            mod.forward = lambda *args, **kw: held["z"]  # instance attribute: restored below
        for x, y in batches:
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if first is not None:
                za, zb = _first_outputs(model, mod, prefix, ends, frozen, buffers, x)
            if use_vmap:
                # vmap maps over the first layer's outputs at all K alphas: K x the layer's output
                if first is not None:
                    shape = (K,) + (1,) * za.dim()
                    Z = (1 - w.reshape(shape)) * za + w.reshape(shape) * zb
                # fresh per-alpha copies of the buffers: BN's running-statistics update lands there
                bufs = {k: b.unsqueeze(0).expand(K, *b.shape).clone() for k, b in buffers.items()}

                def one(p, b, z=None, x=x, y=y):
                    held["z"] = z
                    return loss_fn(functional_call(model, ({**p, **frozen}, b), (x,)), y)

                losses = vmap(one)(stacked, bufs, *((Z,) if first is not None else ()))
            else:
                losses = torch.empty(K, dtype=like.dtype, device=like.device)
                for i in range(K):
                    p = {k: v[i] for k, v in stacked.items()}
                    b = {k: v.clone() for k, v in buffers.items()}
                    # one alpha's first-layer output at a time (the same arithmetic as vmap's Z[i]):
                    # all K at once held 11 x 1,000 x 64 x 32 x 32 floats for VGG-11 (2.9 GB, plus
                    # temporaries)
                    held["z"] = (1 - w[i, 0]) * za + w[i, 0] * zb if first is not None else None
                    losses[i] = loss_fn(functional_call(model, ({**p, **frozen}, b), (x,)), y)
            total += losses.detach().double().cpu() * len(y)
            count += len(y)
    finally:
        held.clear()
        if first is not None:
            del first[0].forward
        for m, f in flags.items():
            m.training = f
    return (total / count).numpy()


class _Stop(Exception):
    pass


_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _first_layer(model, params, frozen, buffers, x):
    """(module, name prefix) of the first parametrised module a forward pass calls, if it
    is a Linear/Conv called once per pass (so its input depends on no parameter); else None."""
    order = []
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    hooks = [m.register_forward_pre_hook(lambda mod, inp: order.append(mod)) for m in owners]
    try:
        bufs = {k: b.clone() for k, b in buffers.items()}
        functional_call(model, ({**params, **frozen}, bufs), (x[:2],))
    finally:
        for h in hooks:
            h.remove()
    if not order or not isinstance(order[0], _AFFINE) or order.count(order[0]) != 1:
        return None
    if any(p.requires_grad is False for p in order[0].parameters(recurse=False)):
        return None
    names = {m: n for n, m in model.named_modules()}
    return order[0], names[order[0]]


def _first_outputs(model, mod, prefix, ends, frozen, buffers, x):
    """The first layer's input (captured by a forward pre-hook that stops the pass) and
    its outputs at theta_a and theta_b (``ends``: their parameter dicts)."""
    box = {}

    def grab(m, inp):
        box["x"] = inp[0]
        raise _Stop

    patched = mod.__dict__.pop("forward")  # the class's forward for these evaluations
    h = mod.register_forward_pre_hook(grab)
    try:
        try:
            functional_call(model, ({**ends[0], **frozen}, {k: b.clone() for k, b in buffers.items()}),
                            (x,))
        except _Stop:
            pass
        h.remove()
        pre = f"{prefix}." if prefix else ""
        own = [n for n, _ in mod.named_parameters(recurse=False)]
        za = functional_call(mod, {n: ends[0][pre + n] for n in own}, (box["x"],))
        zb = functional_call(mod, {n: ends[1][pre + n] for n in own}, (box["x"],))
    finally:
        h.remove()
        mod.forward = patched
    return za, zb


# ----------------------------------------------------------------------------- recorder metrics


def _theta(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def walk_interp_metric(ctx) -> dict:
    """At measurement t: the loss on the run's whole training set at :data:`ALPHAS`
    between theta_{t-1} (kept in the checkpointed metric state) and theta_t, when
    t-1 was measured too. Columns describe step t-1 -> t (``walk_step`` = t-1);
    the 11 losses go to the run's arrays (``walk_losses``)."""
    theta = _theta(ctx.model)
    prev = ctx.state.get("walk_interp_prev")
    out = {}
    if prev is not None and prev[0] == ctx.iteration - 1:
        tr = ctx.data.train
        losses = interpolation_losses(ctx.model, ctx.loss_fn, (tr.x, tr.y), prev[1], theta, ALPHAS,
                                      chunk_size=WALK_CHUNK, bn_mode="train")
        ctx.cache.setdefault("arrays", {})["walk_losses"] = losses
        out["walk_step"] = ctx.iteration - 1
        out["loss_t"], out["loss_t1"] = float(losses[0]), float(losses[-1])
        if np.isfinite(losses).all():
            a_min, l_min = valley_floor(losses)
            out.update(barrier=float(barrier_crossed(losses)), height=floor_height(losses),
                       floor_loss=l_min, floor_alpha=a_min)
        else:
            out.update(barrier=math.nan, height=math.nan, floor_loss=math.nan, floor_alpha=math.nan)
    ctx.state["walk_interp_prev"] = (ctx.iteration, theta.clone())
    return out


def walk_step_metric(ctx) -> dict:
    """At measurement t: ||theta_t - theta_{t-1}|| and cos(g_{t-2}, g_{t-1}) of the
    steps actually applied (theta_{s+1} - theta_s = -lr g_s; the noise of
    ``gd_noise`` included), when t-1 and t-2 were measured. Column ``walk_step`` =
    t-1, so ``step_cos`` is the paper's cos(g_{t-1}, g_t) at t = ``walk_step``."""
    theta = _theta(ctx.model)
    st = ctx.state.get("walk_step_prev")
    out = {}
    delta = None
    if st is not None and st["it"] == ctx.iteration - 1:
        delta = theta - st["theta"]
        out["walk_step"] = ctx.iteration - 1
        out["step_norm"] = float(delta.norm())
        pd_ = st.get("delta")
        if pd_ is not None and st.get("delta_it") == ctx.iteration - 2:
            den = float(pd_.norm() * delta.norm())
            out["step_cos"] = float(torch.dot(pd_, delta)) / den if den > 0 else math.nan
    ctx.state["walk_step_prev"] = {"it": ctx.iteration, "theta": theta.clone(), "delta": delta,
                                   "delta_it": ctx.iteration - 1 if delta is not None else None}
    return out


# ----------------------------------------------------------------------------- isotropic noise


def max_minibatch_gradient_variance(model: nn.Module, loss_fn, data, batch_size: int,
                                    n_batches: int, *, seed: int = 0) -> float:
    """max_j Var_b[g_b,j]: the largest per-parameter variance of mini-batch gradients
    (Sec. 4: "the maximum gradient variance of the model at the initialization").

    ``n_batches`` mini-batches of ``batch_size`` examples drawn without replacement
    (a permutation seeded by ``seed``) from ``data = (x, y)``; each gradient with
    the model in train mode (BatchNorm batch statistics, as SGD sees them; the
    running statistics are restored afterwards); the unbiased variance over the
    batches per coordinate, in float64; the maximum over coordinates.
    """
    x, y = data
    n = len(y)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(n_batches, int) and n_batches >= 2):
        raise ValueError(f"n_batches must be an integer >= 2, got {n_batches!r}")
    if batch_size * n_batches > n:
        raise ValueError(f"batch_size * n_batches = {batch_size * n_batches} exceeds the {n} "
                         "examples (batches are drawn without replacement)")
    params = [p for p in model.parameters() if p.requires_grad]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed), device="cpu")  # seeded host draw
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    was = model.training
    model.train()
    try:
        s1 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        s2 = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        for b in range(n_batches):
            idx = perm[b * batch_size:(b + 1) * batch_size].to(y.device)
            gs = torch.autograd.grad(loss_fn(model(x[idx]), y[idx]), params, allow_unused=True)
            for a1, a2, g, p in zip(s1, s2, gs, params):
                g = torch.zeros_like(p) if g is None else g
                a1.add_(g.double())
                a2.add_(g.double() ** 2)
        m = n_batches
        return max(float(((a2 - a1 ** 2 / m) / (m - 1)).clamp_min(0).max()) for a1, a2 in zip(s1, s2))
    finally:
        model.train(was)
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])


class MiniBatchNoiseRule(GDNoiseRule):
    """GD plus isotropic noise N(0, sigma^2 I), sigma^2 = ``noise_factor`` x
    :func:`max_minibatch_gradient_variance` at theta_0 over ``n_batches``
    mini-batches of ``noise_batch_size`` (Sec. 4: batch 100) of the training
    set (rule_kwargs), instead of the per-example variance of ``gd_noise``
    (update rule ``gd_noise_minibatch``)."""

    def __init__(self, params, config, *, noise_batch_size: int = 100, n_batches: int = 50,
                 **kwargs):
        super().__init__(params, config, **kwargs)
        self.noise_batch_size, self.n_batches = int(noise_batch_size), int(n_batches)

    def on_start(self, ctx) -> None:
        tr = ctx.data.train
        self.v_max = max_minibatch_gradient_variance(
            ctx.model, ctx.loss_fn, (tr.x, tr.y), self.noise_batch_size, self.n_batches,
            seed=self.config.seed)
        self.sigma2 = self.config.noise_factor * self.v_max


# ----------------------------------------------------------------------------- quadratic (Fig. 28)


def damping(eta, lam):
    """|1 - eta lambda|: per-step contraction of GD along an eigendirection of
    eigenvalue lambda of a quadratic (Sec. 6, Fig. 28)."""
    return np.abs(1.0 - np.asarray(eta, dtype=float) * np.asarray(lam, dtype=float))


def damping_regime(eta: float, lam: float) -> str:
    """'overdamped' (eta < 1/lambda: monotone), 'critical' (eta = 1/lambda),
    'underdamped' (1/lambda < eta < 2/lambda: oscillates, converges), 'divergent'
    (eta > 2/lambda), 'marginal' (eta = 2/lambda), 'flat' (lambda <= 0)."""
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    if lam <= 0:
        return "flat"
    x = eta * lam
    if math.isclose(x, 1.0):
        return "critical"
    if math.isclose(x, 2.0):
        return "marginal"
    return "overdamped" if x < 1 else "underdamped" if x < 2 else "divergent"


def quadratic_loss(theta, H) -> np.ndarray:
    """L(theta) = theta^T H theta / 2 (rows of ``theta`` are points)."""
    th = np.atleast_2d(np.asarray(theta, dtype=float))
    return 0.5 * np.einsum("ij,jk,ik->i", th, np.asarray(H, dtype=float), th)


def quadratic_gd(H, theta0, eta: float, steps: int) -> np.ndarray:
    """GD theta_{t+1} = theta_t - eta H theta_t on L = theta^T H theta / 2;
    returns the (steps + 1) x D iterates (closed form: (I - eta H)^t theta_0)."""
    H = np.asarray(H, dtype=float)
    th = np.asarray(theta0, dtype=float).copy()
    if H.ndim != 2 or H.shape[0] != H.shape[1] or th.shape != (H.shape[0],):
        raise ValueError(f"H must be D x D and theta0 of length D, got {H.shape} and {th.shape}")
    if not np.allclose(H, H.T):
        raise ValueError("H must be symmetric")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    out = [th.copy()]
    for _ in range(steps):
        th = th - eta * H @ th
        out.append(th.copy())
    return np.stack(out)
