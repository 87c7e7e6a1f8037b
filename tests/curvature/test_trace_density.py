"""Hutchinson's trace and the stochastic-Lanczos-quadrature density against dense
spectra: of tiny models' Hessians and of explicit matrices."""
import pytest
import torch

from breakeven_utils.curvature import (
    DiagonalOperator,
    hessian_density,
    hessian_trace,
    hutchinson_trace,
    slq_density,
)

from .oracles import F64, MatrixOperator, sym

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- trace

def test_hutchinson_trace_within_4_se_and_se_shrinks(mlp):
    m, lf, x, y, H = mlp
    exact = float(torch.trace(H))
    small = hessian_trace(m, lf, (x, y), n_probes=30, seed=1)
    large = hessian_trace(m, lf, (x, y), n_probes=480, seed=2)
    for est in (small, large):
        assert abs(est.mean - exact) < 4 * est.stderr, (est, exact)
        assert est.samples.numel() == est.n_hvp
    assert large.stderr < 0.5 * small.stderr      # ~ 1/sqrt(n): expected ratio 1/4
    # reproducible by seed
    again = hessian_trace(m, lf, (x, y), n_probes=30, seed=1)
    assert torch.equal(again.samples, small.samples)


def test_hutchinson_trace_of_operators():
    """Rademacher probes have v_i^2 = 1: every sample of a diagonal operator is its trace."""
    d = torch.linspace(-2.0, 5.0, 40, dtype=F64)
    est = hutchinson_trace(DiagonalOperator(d), n_probes=5)
    assert torch.allclose(est.samples, torch.full((5,), float(d.sum()), dtype=F64), rtol=1e-12)
    assert est.stderr < 1e-12 and est.n_hvp == 5
    A = sym(n=50)
    op = MatrixOperator(A)
    est = hutchinson_trace(op, n_probes=400, seed=3)
    assert abs(est.mean - float(torch.trace(A))) < 4 * est.stderr and op.n_matvec == 400
    with pytest.raises(ValueError):
        hutchinson_trace(op, n_probes=1)


def test_bad_probes(mlp):
    m, lf, x, y, H = mlp
    with pytest.raises(ValueError):
        hessian_trace(m, lf, (x, y), n_probes=1)


# ----------------------------------------------------------------------------- density

def test_density_normalised_and_extremes(mlp):
    m, lf, x, y, H = mlp
    ev = torch.linalg.eigvalsh(H)
    d = hessian_density(m, lf, (x, y), n_steps=90, n_runs=2, seed=0)
    assert torch.allclose(d.weights.sum(1), torch.ones(2, dtype=F64))
    mass = float(torch.trapezoid(d.density, d.grid))
    assert abs(mass - 1) < 1e-3
    # Lanczos with full reorthogonalisation finds the extreme eigenvalues
    assert abs(float(d.nodes.max()) - float(ev[-1])) < 1e-6 * abs(float(ev[-1]))
    assert abs(float(d.nodes.min()) - float(ev[0])) < 1e-6 * abs(float(ev[0]))


def test_slq_of_an_explicit_matrix_is_its_spectral_measure():
    """n steps on an n x n matrix: the nodes are its eigenvalues and the weights the
    squared components of the (unit) start vector on its eigenvectors."""
    A = sym(n=25, outliers=(6.0, -4.0))
    ev, U = torch.linalg.eigh(A)
    d = slq_density(MatrixOperator(A), n_steps=40, seed=1, n_grid=50)
    v = torch.randn(25, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert d.nodes.shape == (1, 25) and d.n_hvp == 25
    assert torch.allclose(d.nodes[0], ev, rtol=1e-9, atol=1e-9)
    assert torch.allclose(d.weights[0], (U.T @ (v / v.norm())) ** 2, rtol=1e-6, atol=1e-10)
    with pytest.raises(ValueError):
        slq_density(MatrixOperator(A), n_steps=1)
