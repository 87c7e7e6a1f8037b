"""Tiny float64 problems and dense oracles shared by the curvature tests: the Hessian by
``torch.autograd.functional.hessian`` / ``torch.func.hessian`` of the loss as a function
of the flat parameter vector, and an explicit matrix as a curvature operator."""
import problems
import torch
from torch import nn
from torch.func import functional_call

from breakeven_utils.core import params as P
from breakeven_utils.curvature import CurvatureOperator

F64 = torch.float64


def mlp_problem():
    """tanh MLP, MSE on large targets: the Hessian has negative eigenvalues as
    large as the positive ones, so the 'LA' and 'LM' orders differ."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(),
                      nn.Linear(24, 3)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    x = torch.randn(64, 6, dtype=F64)
    y = 12 * torch.randn(64, 3, dtype=F64)
    return m, nn.MSELoss(), x, y


def cnn_problem(n=48, bn=False):
    return problems.cnn_problem(n, bn)


def dense_hessian(model, loss_fn, x, y, train=False):
    """Dense Hessian by torch.autograd.functional.hessian (double backward),
    with the model in train() or eval() mode and copies of its buffers."""
    names = [n for n, _ in P.trainable_parameters(model)]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    was = model.training
    model.train(train)

    def f(theta):
        ps = dict(zip(names, P.unflatten(theta, model)))
        return loss_fn(functional_call(model, (ps, buffers), (x,)), y)

    H = torch.autograd.functional.hessian(f, P.parameters_vector(model), vectorize=True)
    model.train(was)
    return H


def func_hessian(model, loss_fn, x, y):
    """Dense Hessian by ``torch.func.hessian`` (forward-over-reverse) of the eval-mode loss."""
    names = [n for n, _ in P.trainable_parameters(model)]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    was = model.training
    model.eval()

    def f(theta):
        ps = dict(zip(names, P.unflatten(theta, model)))
        return loss_fn(functional_call(model, (ps, buffers), (x,)), y)

    H = torch.func.hessian(f)(P.parameters_vector(model).detach())
    model.train(was)
    return H


def top5(H, which):
    ev, U = torch.linalg.eigh(H)
    key = ev if which == "LA" else ev.abs()
    idx = torch.argsort(key, descending=True)[:5]
    return ev[idx], U[:, idx].T


def sym(n=120, seed=0, outliers=(40.0, 25.0, 18.0, -30.0)):
    """A symmetric matrix with a bulk spectrum in [-1, 1] and a few outliers."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))
    ev = torch.rand(n, dtype=F64, generator=g) * 2 - 1
    ev[: len(outliers)] = torch.tensor(outliers, dtype=F64)
    return (Q * ev) @ Q.T


class MatrixOperator(CurvatureOperator):
    """An explicit symmetric matrix as a curvature operator (the estimators take any)."""

    def __init__(self, A: torch.Tensor):
        self.A = A
        self.dim, self.device, self.dtype = A.shape[0], A.device, A.dtype
        self.n_matvec = 0

    def _matvec(self, vec):
        return self.A @ vec
