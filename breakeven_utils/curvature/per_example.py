"""Per-example quantities, vectorised over the examples: the curvature v^T H_i v of each
example's loss along a direction (the s^2 of Eq. (1) of the break-even paper) and the
per-example gradients g_i behind the gradient covariance K (footnote 1)."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from breakeven_utils.core.params import trainable_parameters
from breakeven_utils.curvature.operators import HessianOperator, check_bn_mode, measurement_mode

__all__ = ["per_example_curvature", "per_example_gradients"]


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
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype, batch_size=batch_size)
    vd = op.unflat(op.to_vec(v))
    per_loss = vmap(lambda o, t: loss_fn(o[None], t[None]))
    one = torch.ones((), dtype=op.dtype, device=op.device)
    zero = torch.zeros((), dtype=op.dtype, device=op.device)
    out = []
    with measurement_mode(model, bn_mode):
        for x, y in op.batches:
            def phi(t, x=x, y=y):
                p = {n: op.params[n] + t * vd[n] for n in op.names}
                return per_loss(functional_call(model, (p, op.buffers), (x,)), y)

            def dphi(t, phi=phi):
                return jvp(phi, (t,), (one,))[1]

            out.append(jvp(dphi, (zero,), (one,))[1].detach())
    return torch.cat(out)


def per_example_gradients(model: nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor,
                          *, chunk_size: int = 128, bn_mode: str = "eval") -> torch.Tensor:
    """(N, D) matrix of per-example gradients g_i, vectorised with
    ``torch.func.vmap(grad)`` over chunks of ``chunk_size`` examples.

    Example i's loss is ``loss_fn(f(x_i[None]), y_i[None])``. With
    ``bn_mode='train'`` each example is normalised with its own statistics
    (a batch of one). The model is not modified.
    """
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs and targets differ in length ({inputs.shape[0]} vs {targets.shape[0]})")
    check_bn_mode(bn_mode)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    named = trainable_parameters(model)
    names = [n for n, _ in named]
    params = {n: p.detach() for n, p in named}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    dim = sum(p.numel() for p in params.values())
    p0 = next(iter(params.values()))
    out = torch.empty(inputs.shape[0], dim, dtype=p0.dtype, device=p0.device)

    def loss_one(p, x, y):
        return loss_fn(functional_call(model, (p, buffers), (x[None],)), y[None])

    grad_batch = vmap(grad(loss_one), in_dims=(None, 0, 0))
    with measurement_mode(model, bn_mode):
        for start in range(0, inputs.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            gs = grad_batch(params, inputs[sl], targets[sl])
            off = 0
            for n in names:
                g = gs[n]
                k = g[0].numel()
                out[sl, off:off + k] = g.reshape(g.shape[0], k)
                off += k
    return out
