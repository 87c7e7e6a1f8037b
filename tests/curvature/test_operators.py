"""Curvature operators (``curvature.operators``): Hessian-vector products, ``to_scipy``,
the L2 term and operator sums against dense float64 Hessians; the measurement mode."""
import numpy as np
import pytest
import torch
from torch import nn

from breakeven_utils.core import params as P
from breakeven_utils.curvature import (
    BN_MODES,
    DiagonalOperator,
    HessianOperator,
    MatvecBudgetExceeded,
    SumOperator,
    hessian_density,
    hessian_eigs,
    hessian_trace,
    hvp,
    hvp_operator,
    per_example_curvature,
)

from .oracles import F64, cnn_problem, dense_hessian, func_hessian, mlp_problem

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_problem():
    """A tiny tanh network with cross-entropy: D = 4*5 + 5 + 5*3 + 3 = 43."""
    torch.manual_seed(4)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    return m, nn.CrossEntropyLoss(), torch.randn(30, 4, dtype=F64), torch.randint(0, 3, (30,))


# ----------------------------------------------------------------------------- the operator

@pytest.mark.parametrize("method", ["auto", "fwdrev", "double_backward", "cached"])
def test_hessian_operator_matches_torch_func_hessian(method):
    m, lf, x, y = tiny_problem()
    H = func_hessian(m, lf, x, y)
    D = H.shape[0]
    op = HessianOperator(m, lf, [(x[:11], y[:11]), (x[11:], y[11:])], method=method)
    assert (op.dim, op.shape, op.dtype, op.n_matvec) == (D, (D, D), F64, 0)
    V = torch.randn(3, D, dtype=F64, generator=torch.Generator().manual_seed(0))
    for i, v in enumerate(V):
        assert torch.allclose(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
        assert op.n_matvec == op.n_hvp == i + 1
    assert torch.allclose(op.hvp(V[0]), H @ V[0], rtol=1e-10, atol=1e-12)   # hvp: the same, counted
    assert op.n_matvec == 4
    # to_scipy: a float64 numpy LinearOperator whose columns are those of H
    lin = op.to_scipy()
    assert lin.shape == (D, D) and lin.dtype == np.float64
    dense = lin.matmat(np.eye(D))
    assert np.allclose(dense, H.numpy(), rtol=1e-10, atol=1e-12)
    assert op.n_matvec == 4 + D
    # float32 input is cast to the operator's dtype; a wrong shape is refused
    assert op.matvec(V[1].float()).dtype == F64
    with pytest.raises(ValueError):
        op.matvec(torch.ones(D + 1, dtype=F64))


def test_to_scipy_budget():
    m, lf, x, y = tiny_problem()
    op = HessianOperator(m, lf, (x, y))
    lin = op.to_scipy(max_matvec=2)
    v = np.ones(op.dim)
    lin.matvec(v)
    lin.matvec(v)
    with pytest.raises(MatvecBudgetExceeded):
        lin.matvec(v)
    assert op.n_matvec == 2
    sp, same = hvp_operator(m, lf, (x, y))
    assert np.allclose(sp.matvec(v), func_hessian(m, lf, x, y).numpy() @ v, rtol=1e-10, atol=1e-12)
    assert same.n_hvp == 1


def test_hessian_plus_l2_diagonal_matches_dense_and_counts():
    m, lf, x, y = tiny_problem()
    H = func_hessian(m, lf, x, y)
    D = H.shape[0]
    mask = (torch.arange(D) % 2 == 0).to(F64)
    wd = 0.3
    hess, l2 = HessianOperator(m, lf, (x, y)), DiagonalOperator(wd * mask)
    op = hess + l2
    assert isinstance(op, SumOperator) and op.dim == D and op.shapes == hess.shapes
    dense = H + wd * torch.diag(mask)
    V = torch.randn(4, D, dtype=F64, generator=torch.Generator().manual_seed(1))
    for v in V:
        assert torch.allclose(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    assert np.allclose(op.to_scipy().matmat(np.eye(D)), dense.numpy(), rtol=1e-10, atol=1e-12)
    assert op.n_matvec == hess.n_matvec == l2.n_matvec == 4 + D
    assert torch.equal(l2.matvec(V[0]), wd * mask * V[0])
    # the sum adds H v and (wd * m) * v in this order, as the sharpest-directions code did
    assert torch.equal(op.matvec(V[0]), hess.matvec(V[0]) + wd * mask * V[0])
    with pytest.raises(ValueError, match="dimensions"):
        hess + DiagonalOperator(torch.ones(D + 1, dtype=F64))
    with pytest.raises(ValueError):
        DiagonalOperator(torch.ones(2, 2))


@pytest.mark.parametrize("problem,method", [("mlp", "auto"), ("mlp", "double_backward"), ("mlp", "cached"),
                                            ("cnn", "fwdrev"), ("cnn", "double_backward"), ("cnn", "cached")])
def test_hvp_matches_dense_over_unequal_batches(problem, method, request):
    m, lf, x, y, H = request.getfixturevalue(problem)
    v = torch.randn(H.shape[0], dtype=F64, generator=torch.Generator().manual_seed(0))
    batches = [(x[:20], y[:20]), (x[20:41], y[20:41]), (x[41:], y[41:])]   # unequal sizes
    hv = hvp(m, lf, batches, v, method=method)
    assert torch.allclose(hv, H @ v, rtol=1e-10, atol=1e-10)
    hv2 = hvp(m, lf, (x, y), v, method=method, batch_size=7)
    assert torch.allclose(hv2, H @ v, rtol=1e-10, atol=1e-10)
    # an unweighted average of per-batch HVPs would differ: the weighting matters
    naive = sum(hvp(m, lf, b, v) for b in batches) / 3
    assert not torch.allclose(naive, H @ v, rtol=1e-4)


def test_float64_option_on_float32_model(mlp):
    m, lf, x, y, H = mlp
    m32 = mlp_problem()[0].float()
    v = torch.randn(H.shape[0], dtype=F64)
    hv = hvp(m32, lf, (x.float(), y.float()), v, dtype=F64)
    assert hv.dtype == F64
    # parameters were rounded to float32, so agreement is to float32 precision only
    assert torch.allclose(hv, H @ v, rtol=1e-4, atol=1e-4)
    assert next(m32.parameters()).dtype == torch.float32


def test_gradient_and_loss_of_the_operator(mlp):
    m, lf, x, y, H = mlp
    op = HessianOperator(m, lf, [(x[:30], y[:30]), (x[30:], y[30:])])
    m.zero_grad()
    loss = lf(m(x), y)
    loss.backward()
    assert torch.allclose(op.gradient(), P.gradient_vector(m), rtol=1e-10, atol=1e-12)
    assert op.loss() == pytest.approx(loss.item(), rel=1e-12)
    m.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- BatchNorm, dropout

@pytest.mark.parametrize("initially_training", [True, False])
def test_bn_mode_explicit_and_running_stats_untouched(initially_training):
    m, lf, x, y = cnn_problem(bn=True)
    with torch.no_grad():                                   # non-trivial running stats
        m.train()
        for _ in range(3):
            m(x + 1.0)
    m.train(initially_training)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    D = P.num_parameters(m)
    v = torch.randn(D, dtype=F64, generator=torch.Generator().manual_seed(0))
    hv = {}
    for mode in BN_MODES:
        hv[mode] = hvp(m, lf, (x, y), v, bn_mode=mode)
        hvp(m, lf, (x, y), v, bn_mode=mode, method="double_backward")
        hessian_eigs(m, lf, (x, y), k=2, bn_mode=mode, tol=1e-2)
        hessian_eigs(m, lf, (x, y), k=2, bn_mode=mode, tol=1e-2, solver="arpack")
        hessian_trace(m, lf, (x, y), n_probes=2, bn_mode=mode)
        hessian_density(m, lf, (x, y), n_steps=4, bn_mode=mode)
        per_example_curvature(m, lf, (x, y), v, bn_mode=mode)
        for k, val in m.state_dict().items():
            assert torch.equal(val, before[k]), (mode, k)
        assert m.training == initially_training
        assert all(mod.training == initially_training for mod in m.modules())
        assert all(mod.track_running_stats for mod in m.modules() if isinstance(mod, nn.BatchNorm2d))
    # the two modes measure different Hessians, each the right one
    assert not torch.allclose(hv["train"], hv["eval"], rtol=1e-3)
    if not initially_training:
        return      # the dense oracle is the same for both parametrisations
    assert torch.allclose(hv["eval"], dense_hessian(m, lf, x, y, train=False) @ v, rtol=1e-9, atol=1e-10)
    assert torch.allclose(hv["train"], dense_hessian(m, lf, x, y, train=True) @ v, rtol=1e-9, atol=1e-10)


def test_dropout_off_during_measurement():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 2)).double().train()
    x, y = torch.randn(20, 4, dtype=F64), torch.randint(0, 2, (20,))
    v = torch.randn(P.num_parameters(m), dtype=F64)
    a = hvp(m, nn.CrossEntropyLoss(), (x, y), v, bn_mode="train")
    b = hvp(m, nn.CrossEntropyLoss(), (x, y), v, bn_mode="train")
    assert torch.equal(a, b) and m.training


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs(mlp):
    m, lf, x, y, H = mlp
    D = H.shape[0]
    with pytest.raises(ValueError):
        hvp(m, lf, (x, y), torch.ones(D + 1, dtype=F64))
    for bad in ({"bn_mode": "test"}, {"method": "finite_differences"}):
        with pytest.raises(ValueError):
            HessianOperator(m, lf, (x, y), **bad)
    for data in ((x, y[:10]), (x[:0], y[:0]), [x, y, x]):
        with pytest.raises(ValueError):
            HessianOperator(m, lf, data)
    with pytest.raises(ValueError, match="batch_size"):
        HessianOperator(m, lf, (x, y), batch_size=0)
