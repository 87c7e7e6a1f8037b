"""Top-k eigenpairs (``curvature.eigs``) against dense float64 Hessians on tiny models."""
import pytest
import torch

from breakeven_utils.core import params as P
from breakeven_utils.curvature import (
    DiagonalOperator,
    HessianOperator,
    NotConvergedError,
    frobenius_from_top,
    hessian_eigs,
    top_eigenpairs,
)

from .oracles import F64, MatrixOperator, mlp_problem, sym, top5

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- eigenpairs

@pytest.mark.parametrize("solver", ["lanczos", "arpack"])
@pytest.mark.parametrize("problem", ["mlp", "cnn"])
@pytest.mark.parametrize("which", ["LA", "LM"])
def test_top5_eigenpairs_match_dense(problem, which, solver, request):
    m, lf, x, y, H = request.getfixturevalue(problem)
    ref_vals, ref_vecs = top5(H, which)
    if problem == "mlp" and which == "LM":
        # the test can fail: magnitude order mixes signs, unlike the algebraic one
        assert (ref_vals < 0).any()
        assert not torch.allclose(ref_vals, top5(H, "LA")[0])
    r = hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9, solver=solver)
    assert r.values.shape == (5,) and r.vectors.shape == (5, H.shape[0])
    rel = ((r.values - ref_vals).abs() / ref_vals.abs()).max()
    assert rel < 1e-6, (r.values, ref_vals)
    cos = (r.vectors * ref_vecs).sum(1).abs()
    assert (cos > 0.999).all(), cos
    assert torch.allclose(r.vectors.norm(dim=1), torch.ones(5, dtype=F64))
    assert r.n_hvp > 0 and r.lambda_1 == float(r.values[0])


def test_values_descending_and_views(mlp):
    m, lf, x, y, H = mlp
    r = hessian_eigs(m, lf, (x, y), k=4, which="LM", tol=1e-6)
    assert (r.values.abs()[:-1] >= r.values.abs()[1:]).all()
    views = r.views(1)
    params = [p for _, p in P.trainable_parameters(m)]
    assert [v.shape for v in views] == [p.shape for p in params]
    assert torch.equal(P.flatten(views), r.vectors[1])
    ra = hessian_eigs(m, lf, (x, y), k=4, which="LA", tol=1e-6)
    assert (ra.values[:-1] >= ra.values[1:]).all()


def test_warm_start_saves_hvps_along_a_trajectory(mlp):
    m, lf, x, y, H = mlp
    first = hessian_eigs(m, lf, (x, y), k=5, tol=1e-4)
    m2 = mlp_problem()[0]
    g = torch.autograd.grad(lf(m2(x), y), list(m2.parameters()))
    with torch.no_grad():   # a small SGD-like step
        for p, gi in zip(m2.parameters(), g):
            p.sub_(1e-3 * gi)
    cold = hessian_eigs(m2, lf, (x, y), k=5, tol=1e-4)
    warm = hessian_eigs(m2, lf, (x, y), k=5, tol=1e-4, v0=first)
    warm2 = hessian_eigs(m2, lf, (x, y), k=5, tol=1e-4, v0=first.vectors, solver="arpack")
    assert torch.allclose(warm.values, cold.values, rtol=1e-6)
    assert torch.allclose(warm2.values, cold.values, rtol=1e-6)
    assert warm.n_hvp < cold.n_hvp, (warm.n_hvp, cold.n_hvp)


def test_frobenius_from_top(mlp):
    H = mlp[4]
    ev = torch.linalg.eigvalsh(H)
    assert frobenius_from_top(ev) == pytest.approx(float(torch.linalg.norm(H)), rel=1e-10)
    top = ev[ev.abs().argsort(descending=True)][:5]
    assert frobenius_from_top(top) == pytest.approx(float(top.pow(2).sum().sqrt()))
    with pytest.raises(ValueError):
        frobenius_from_top([])


# ----------------------------------------------------------------------------- any operator

@pytest.mark.parametrize("solver", ["lanczos", "arpack"])
@pytest.mark.parametrize("which", ["LA", "LM"])
def test_top_eigenpairs_of_an_explicit_matrix(which, solver):
    A = sym()
    ref_vals, ref_vecs = top5(A, which)
    op = MatrixOperator(A)
    op.matvec(torch.ones(A.shape[0], dtype=F64))           # a product before the solve
    r = top_eigenpairs(op, 3, which, tol=1e-10, solver=solver)
    assert torch.allclose(r.values, ref_vals[:3], rtol=1e-9, atol=0)
    assert ((r.vectors * ref_vecs[:3]).sum(1).abs() > 1 - 1e-9).all()
    assert r.n_hvp == op.n_matvec - 1 > 0                   # the products of this solve only


@pytest.mark.parametrize("solver", ["lanczos", "arpack"])
def test_top_eigenpairs_of_hessian_plus_l2_match_dense(cnn, solver):
    """The sharpest-directions Hessian H + wd * diag(mask) (Sec. 2) as an operator sum."""
    m, lf, x, y, H = cnn
    D = H.shape[0]
    mask = (torch.arange(D) % 3 == 0).to(F64)
    wd = 0.05
    ref_vals, ref_vecs = top5(H + wd * torch.diag(mask), "LM")
    assert not torch.allclose(ref_vals, top5(H, "LM")[0], rtol=1e-4)   # the L2 term matters
    op = HessianOperator(m, lf, (x, y)) + DiagonalOperator(wd * mask)
    r = top_eigenpairs(op, 3, "LM", tol=1e-9, solver=solver)
    assert torch.allclose(r.values, ref_vals[:3], rtol=1e-8, atol=0)
    assert ((r.vectors * ref_vecs[:3]).sum(1).abs() > 1 - 1e-8).all()
    assert r.n_hvp == op.n_matvec == op.terms[0].n_hvp
    assert r.shapes == tuple(p.shape for _, p in P.trainable_parameters(m))


def test_top_eigenpairs_not_converged_and_budget():
    op = MatrixOperator(sym(outliers=()))
    with pytest.raises(NotConvergedError) as e:
        top_eigenpairs(op, 3, tol=1e-12, max_matvec=5)
    assert e.value.n_matvec == 5 and op.n_matvec == 5
    with pytest.raises(NotConvergedError):
        top_eigenpairs(op, 3, tol=1e-12, max_matvec=5, solver="arpack")
    with pytest.raises(ValueError, match="smaller than"):
        top_eigenpairs(op, op.dim)


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs(mlp):
    m, lf, x, y, H = mlp
    D = H.shape[0]
    data = (x, y)
    with pytest.raises(ValueError, match="smaller than the number of parameters"):
        hessian_eigs(m, lf, data, k=D)
    with pytest.raises(ValueError, match="smaller than the number of parameters"):
        hessian_eigs(m, lf, data, k=D + 10)
    for bad in ({"k": 0}, {"k": 2.5}, {"which": "SA"}, {"bn_mode": "test"}, {"solver": "power"},
                {"method": "finite_differences"}, {"tol": -1.0}, {"v0": torch.ones(3)}):
        with pytest.raises(ValueError):
            hessian_eigs(m, lf, data, **bad)
    with pytest.raises(ValueError):
        hessian_eigs(m, lf, (x, y[:10]))
    with pytest.raises(ValueError):
        hessian_eigs(m, lf, (x[:0], y[:0]))
    with pytest.raises(ValueError):
        hessian_eigs(m, lf, [x, y, x])
    with pytest.raises(RuntimeError, match="max_hvp"):
        hessian_eigs(m, lf, data, k=5, tol=1e-10, max_hvp=6)
    with pytest.raises(RuntimeError, match="max_hvp"):
        hessian_eigs(m, lf, data, k=5, tol=1e-10, max_hvp=6, solver="arpack")


# ----------------------------------------------------------------------------- warm starts

@pytest.mark.parametrize("problem", ["mlp", "cnn"])
@pytest.mark.parametrize("which", ["LA", "LM"])
def test_warm_start_from_exact_eigenvectors_costs_k_hvps(problem, which, request):
    """Warm vectors that are still eigenvectors span an invariant Krylov space:
    about k HVPs, no random admixture, no minimum subspace size, the exact pairs."""
    m, lf, x, y, H = request.getfixturevalue(problem)
    ref_vals, ref_vecs = top5(H, which)
    for k in (1, 5):
        r = hessian_eigs(m, lf, (x, y), k=k, which=which, tol=1e-9, v0=ref_vecs[:k])
        # k products span the top-k space; rounding in that Krylov basis (close
        # eigenvalues) may leave residuals ~1e-9, one more product removes them
        assert r.n_hvp <= k + (k > 1), (k, r.n_hvp)
        assert torch.allclose(r.values, ref_vals[:k], rtol=1e-10, atol=0)
        assert ((r.vectors * ref_vecs[:k]).sum(1).abs() > 1 - 1e-10).all()
    # a HessianEigs is accepted as v0 too, in any row order
    prev = hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9, v0=ref_vecs.flip(0))
    assert prev.n_hvp <= 6 and torch.allclose(prev.values, ref_vals, rtol=1e-10, atol=0)
    again = hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9, v0=prev)
    cold = hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9)
    assert torch.allclose(again.values, ref_vals, rtol=1e-10, atol=0)
    assert again.n_hvp < cold.n_hvp / 2, (again.n_hvp, cold.n_hvp)


@pytest.mark.parametrize("problem", ["mlp", "cnn"])
def test_warm_start_near_the_top_vectors_is_exact_and_cheaper_than_cold(problem, request):
    m, lf, x, y, H = request.getfixturevalue(problem)
    ref_vals, ref_vecs = top5(H, "LA")
    gen = torch.Generator().manual_seed(3)
    for k in (1, 5):
        noise = torch.randn(k, H.shape[0], dtype=F64, generator=gen)
        noise -= (noise @ ref_vecs[:k].T) @ ref_vecs[:k]            # orthogonal to the top-k space
        v0 = ref_vecs[:k] + 0.1 * noise / noise.norm(dim=1, keepdim=True)  # ~0.1 rad off each
        cold = hessian_eigs(m, lf, (x, y), k=k, tol=1e-8)
        warm = hessian_eigs(m, lf, (x, y), k=k, tol=1e-8, v0=v0)
        for r in (cold, warm):
            assert ((r.values - ref_vals[:k]).abs() / ref_vals[:k].abs()).max() < 1e-10
            assert ((r.vectors * ref_vecs[:k]).sum(1).abs() > 1 - 1e-8).all()
        assert warm.n_hvp < cold.n_hvp, (k, warm.n_hvp, cold.n_hvp)


def test_warm_start_spanning_an_invariant_subspace_smaller_than_k(cnn):
    """One exact eigenvector for k=5: the subspace closes after one HVP; the
    solver must go on from a random vector and still find the exact top-5."""
    m, lf, x, y, H = cnn
    ref_vals, ref_vecs = top5(H, "LA")
    for v0 in (ref_vecs[0], ref_vecs[2], ref_vecs[[0, 0]]):       # also a repeated vector
        r = hessian_eigs(m, lf, (x, y), k=5, tol=1e-9, v0=v0)
        assert torch.allclose(r.values, ref_vals, rtol=1e-9, atol=0), (r.values, ref_vals)
        assert ((r.vectors * ref_vecs).sum(1).abs() > 1 - 1e-8).all()
