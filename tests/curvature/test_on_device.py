"""The estimators on the device ``BREAKEVEN_TEST_DEVICE`` names (default cpu; ``make
device-check`` sets cuda on a machine with a GPU) against dense float64 oracles computed on
the CPU: an HVP, the top eigenpairs of H, K's spectrum from per-example gradients, the
per-example curvature of Eq. (1). Each result must come back on the device it ran on."""
import copy

import pytest
import torch

from breakeven_utils import curvature as C
from breakeven_utils.core import params as P
from breakeven_utils.core.device import DeviceDisciplineError, device_discipline, to_tensor

from .oracles import F64, dense_hessian, top5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def device(test_device):
    return test_device


def on(device, m, x, y):
    """A copy of the problem on ``device`` (float64 kept: the oracles are float64)."""
    return copy.deepcopy(m).to(device), x.to(device), y.to(device)


def test_hvp_on_device_matches_dense(cnn, device):
    m, lf, x, y, H = cnn
    md, xd, yd = on(device, m, x, y)
    v = torch.randn(H.shape[0], dtype=F64, generator=torch.Generator().manual_seed(0))
    op = C.HessianOperator(md, lf, (xd, yd))
    hv = op.matvec(v.to(device))
    assert hv.device.type == device.type
    assert torch.allclose(hv.cpu(), H @ v, rtol=1e-8, atol=1e-10)


def test_top_eigenpairs_on_device_match_dense(cnn, device):
    m, lf, x, y, H = cnn
    md, xd, yd = on(device, m, x, y)
    ref_vals, ref_vecs = top5(H, "LA")
    r = C.hessian_eigs(md, lf, (xd, yd), k=3, which="LA", tol=1e-9)
    assert r.vectors.device.type == device.type
    assert torch.allclose(r.values.cpu(), ref_vals[:3], rtol=1e-6)
    assert ((r.vectors.cpu() * ref_vecs[:3]).sum(1).abs() > 0.999).all()


def test_gradient_covariance_on_device_matches_dense(mlp, device):
    m, lf, x, y, _ = mlp
    # a classification head for K (footnote 1: per-example gradients of the training loss)
    y_cls = (y[:, 0] > 0).long() + (y[:, 1] > 0).long()
    lf_cls = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        lf_cls(m(x[i:i + 1]), y_cls[i:i + 1]), [p for _, p in P.trainable_parameters(m)])])
        for i in range(n)])
    Gc = G - G.mean(0)
    ev = torch.linalg.eigvalsh(Gc.T @ Gc / n).flip(0)
    md, xd, yd = on(device, m, x, y_cls)
    cov = C.gradient_covariance(md, lf_cls, (xd, yd), L=n, M=1, n_vectors=2)
    assert cov.vectors.device.type == device.type
    assert torch.allclose(cov.eigenvalues.cpu()[:5], ev[:5], rtol=1e-7, atol=1e-12)
    assert cov.trace == pytest.approx(float(ev.sum()), rel=1e-9)


def test_per_example_curvature_on_device_matches_dense(cnn, device):
    m, lf, x, y, H = cnn
    md, xd, yd = on(device, m, x, y)
    v = top5(H, "LA")[1][0]
    got = C.per_example_curvature(md, lf, (xd[:6], yd[:6]), v.to(device))
    assert got.device.type == device.type
    ref = torch.stack([v @ dense_hessian(m, lf, x[i:i + 1], y[i:i + 1]) @ v for i in range(6)])
    assert torch.allclose(got.cpu(), ref, rtol=1e-9, atol=1e-12)


def test_every_estimator_keeps_to_the_device_under_device_discipline(cnn, device):
    """Issue 22, item 2: every estimator, run under ``core.device.device_discipline`` (a tensor
    made without ``device=`` lands on 'meta' and raises; so does a call mixing devices), on the
    test device, and still gives the dense answer."""
    m, lf, x, y, H = cnn
    md, xd, yd = on(device, m, x, y)
    v = top5(H, "LA")[1][0].to(device)
    ref = H @ v.cpu()
    with device_discipline():
        for method in ("fwdrev", "double_backward", "cached"):
            hv = C.hvp(md, lf, (xd, yd), v, method=method)
            assert torch.allclose(hv.cpu(), ref, rtol=1e-8, atol=1e-10), method
        for solver in ("lanczos", "arpack"):
            r = C.hessian_eigs(md, lf, (xd, yd), k=2, which="LA", tol=1e-8, solver=solver)
            assert torch.allclose(r.values.cpu(), top5(H, "LA")[0][:2], rtol=1e-6), solver
            C.hessian_eigs(md, lf, (xd, yd), k=1, tol=1e-6, v0=r)  # warm start
        tr = C.hessian_trace(md, lf, (xd, yd), n_probes=4, seed=0)
        dens = C.hessian_density(md, lf, (xd, yd), n_steps=10, n_runs=2, seed=0)
        curv = C.per_example_curvature(md, lf, (xd[:4], yd[:4]), v)
        G = C.per_example_gradients(md, lf, xd[:4], yd[:4])
        g = C.minibatch_gradient(md, lf, xd[:4], yd[:4])
        cov = C.gradient_covariance(md, lf, (xd, yd), L=4, M=2, n_vectors=2)
        ratio = C.gradient_norm_ratio(g, cov.vectors, k=2)
        op = C.HessianOperator(md, lf, (xd, yd)) + C.DiagonalOperator(torch.ones(H.shape[0], dtype=F64,
                                                                                 device=device))
        assert torch.allclose(op.matvec(v).cpu(), ref + v.cpu(), rtol=1e-8, atol=1e-10)
    assert tr.samples.shape == (4,) and abs(tr.mean - float(torch.trace(H))) <= 5 * tr.stderr
    ev = torch.linalg.eigvalsh(H)
    assert torch.allclose(dens.weights.sum(1), torch.ones(2, dtype=dens.weights.dtype))
    assert float(dens.nodes.min()) >= float(ev[0]) - 1e-6 and float(dens.nodes.max()) <= float(ev[-1]) + 1e-6
    assert curv.device.type == G.device.type == device.type
    proj = cov.vectors[:2] @ g.to(cov.vectors.dtype)
    assert ratio == pytest.approx(float(g.norm() / proj.norm()), rel=1e-9)


def test_device_discipline_catches_a_tensor_made_without_a_device(device):
    ones, meta = torch.ones(3, device=device), torch.ones(2, device="meta")
    with device_discipline():
        assert float((ones * 2).sum()) == 6.0 and to_tensor(ones) is ones
        assert to_tensor([1.0, 2.0]).device.type == "cpu"      # numbers go to the host
        with pytest.raises(DeviceDisciplineError, match="zeros"):
            torch.zeros(3)
        with pytest.raises(DeviceDisciplineError, match="without an explicit device"):
            ones + torch.tensor(1.0)
        with pytest.raises(DeviceDisciplineError, match="as_tensor"):
            torch.as_tensor(ones)      # moves a tensor to the default device: to_tensor keeps it
        with pytest.raises(DeviceDisciplineError, match="meta"):
            ones[:2] + meta
    assert float(torch.zeros(2).sum()) == 0.0      # the default device is restored after it
