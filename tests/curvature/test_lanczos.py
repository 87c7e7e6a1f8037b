"""The Lanczos kernel and its two drivers (the top-k solver behind hessian_eigs, the
tridiagonal behind the spectral density), on explicit symmetric matrices."""
import pytest
import torch

from breakeven_utils.curvature import Lanczos, lanczos_topk, lanczos_tridiagonal, slq_density

from .oracles import F64, MatrixOperator, sym

pytestmark = pytest.mark.usefixtures("one_thread")


class Counted:
    def __init__(self, A):
        self.A, self.n, self.seen = A, 0, []

    def __call__(self, v):
        self.n += 1
        self.seen.append(v.clone())
        return self.A @ v


@pytest.mark.parametrize("which", ["LA", "LM"])
@pytest.mark.parametrize("k", [1, 3])
def test_cold_start_matches_dense_and_spans_the_krylov_space(which, k):
    A = sym()
    ev, U = torch.linalg.eigh(A)
    key = ev if which == "LA" else ev.abs()
    idx = torch.argsort(key, descending=True)[:k]
    v = torch.randn(A.shape[0], dtype=F64, generator=torch.Generator().manual_seed(1))
    op = Counted(A)
    vals, vecs, ok = lanczos_topk(op, v, k, which, tol=1e-10, max_steps=120)
    assert ok and torch.allclose(vals, ev[idx], rtol=1e-10, atol=0)
    assert ((vecs @ U[:, idx]).diagonal().abs() > 1 - 1e-9).all()
    assert torch.allclose(vecs.norm(dim=1), torch.ones(k, dtype=F64))
    # the vectors it multiplied span the Krylov space of v, step for step
    m = min(op.n, 8)
    Vs = torch.stack(op.seen[:m]).T
    K = torch.stack([torch.linalg.matrix_power(A, j) @ v for j in range(m)]).T
    cos = torch.linalg.svdvals(torch.linalg.qr(Vs)[0].T @ torch.linalg.qr(K)[0])
    assert cos.min() > 1 - 1e-8, cos


def test_budget_and_not_converged_flag():
    A = sym(outliers=())
    op = Counted(A)
    vals, vecs, ok = lanczos_topk(op, torch.ones(A.shape[0], dtype=F64), 3, "LA", tol=1e-12, max_steps=5)
    assert not ok and op.n == 5 and vals.shape == (3,) and vecs.shape == (3, A.shape[0])


def test_full_dimension_is_exact():
    A = sym(n=10, outliers=(3.0,))
    vals, _, ok = lanczos_topk(Counted(A), torch.ones(10, dtype=F64), 9, "LA", tol=0.0, max_steps=10)
    assert ok
    assert torch.allclose(vals, torch.linalg.eigvalsh(A).flip(0)[:9], rtol=1e-10, atol=1e-12)


def test_warm_starts_exact_near_and_invariant():
    """An exact top eigenvector: one product. The sum of the top 3: three.
    Near them: exact and cheaper than cold. A start spanned by fewer than k
    eigenvectors (an invariant Krylov space): goes on at random, still exact."""
    A = sym()
    ev, U = torch.linalg.eigh(A)
    top = U[:, -3:].flip(1).T                           # lambda = 40, 25, 18
    exact = ev[-3:].flip(0)
    op = Counted(A)
    vals, vecs, ok = lanczos_topk(op, top[0], 1, "LA", tol=1e-12)
    assert ok and op.n == 1 and abs(float(vals[0]) - 40) < 1e-12
    op = Counted(A)
    vals, _, ok = lanczos_topk(op, top.sum(0), 3, "LA", tol=1e-10)
    assert ok and op.n == 3 and torch.allclose(vals, exact, rtol=1e-12, atol=0)
    cold = Counted(A)
    lanczos_topk(cold, torch.ones(120, dtype=F64), 3, "LA", tol=1e-10)
    near = top.sum(0) + 0.1 * torch.randn(120, dtype=F64, generator=torch.Generator().manual_seed(0))
    op = Counted(A)
    vals, _, ok = lanczos_topk(op, near, 3, "LA", tol=1e-10)
    assert ok and torch.allclose(vals, exact, rtol=1e-10, atol=0) and op.n < cold.n, (op.n, cold.n)
    for start in (top[1], top[0] + top[2]):             # spans 1 or 2 eigenvectors, k = 3
        op = Counted(A)
        vals, vecs, ok = lanczos_topk(op, start, 3, "LA", tol=1e-10)
        assert ok and op.n > 3 and torch.allclose(vals, exact, rtol=1e-10, atol=0)
        assert ((vecs @ top.T).diagonal().abs() > 1 - 1e-9).all()


# ----------------------------------------------------------------------------- the kernel

def krylov_ritz_values(A, v, m):
    """Eigenvalues of Q^T A Q, Q an orthonormal basis of the Krylov space
    span(v, Av, ..., A^{m-1} v) built densely (QR of the power sequence)."""
    K = torch.stack([torch.linalg.matrix_power(A, j) @ v for j in range(m)]).T
    Q = torch.linalg.qr(K)[0]
    return torch.linalg.eigvalsh(Q.T @ A @ Q)


def test_kernel_basis_is_orthonormal_and_tridiagonalises():
    A = sym(n=60)
    v = torch.randn(60, dtype=F64, generator=torch.Generator().manual_seed(2))
    lz = Lanczos(MatrixOperator(A).matvec, v, 20)
    for _ in range(12):
        lz.extend(lz.step())
    lz.step()
    V = lz.V[: lz.m]
    assert lz.m == 13 and len(lz.alphas) == 13 and len(lz.betas) == 12
    assert torch.allclose(V @ V.T, torch.eye(13, dtype=F64), atol=1e-12)
    assert torch.allclose(V @ A @ V.T, lz.tridiagonal(), atol=1e-10)        # T = V^T A V
    assert torch.allclose(V[0], v / v.norm())
    # its Ritz values are those of A on the Krylov space, built densely
    lz6 = Lanczos(A.__matmul__, v, 6)
    for _ in range(5):
        lz6.extend(lz6.step())
    lz6.step()
    assert torch.allclose(torch.linalg.eigvalsh(lz6.tridiagonal()), krylov_ritz_values(A, v, 6),
                          rtol=1e-9, atol=1e-9)


def test_tridiagonal_full_run_is_the_spectrum_and_breakdown_stops_it():
    A = sym(n=30, outliers=(5.0,))
    v = torch.randn(30, dtype=F64, generator=torch.Generator().manual_seed(3))
    op = MatrixOperator(A)
    T = lanczos_tridiagonal(op.matvec, v, 30)
    assert T.shape == (30, 30) and op.n_matvec == 30
    assert torch.allclose(torch.linalg.eigvalsh(T), torch.linalg.eigvalsh(A), rtol=1e-9, atol=1e-9)
    # three distinct eigenvalues: the Krylov space is invariant after 3 products
    Q, _ = torch.linalg.qr(torch.randn(40, 40, dtype=F64, generator=torch.Generator().manual_seed(4)))
    B = (Q * torch.tensor([2.0] * 10 + [-1.0] * 20 + [0.5] * 10, dtype=F64)) @ Q.T
    op = MatrixOperator(B)
    T = lanczos_tridiagonal(op.matvec, torch.ones(40, dtype=F64), 25)
    assert T.shape == (3, 3) and op.n_matvec == 3
    assert torch.allclose(torch.linalg.eigvalsh(T), torch.tensor([-1.0, 0.5, 2.0], dtype=F64), atol=1e-10)


def test_density_and_topk_share_the_kernel():
    """The density's Ritz values are those of the kernel's tridiagonal from the same
    start (the seeded randn of its first run), and the top-k solver stopped at the same
    number of steps returns the top ones of the same Ritz values."""
    A = sym(n=80)
    m = 6                                        # the dense Krylov oracle is accurate for few steps
    d = slq_density(MatrixOperator(A), n_steps=m, n_runs=1, seed=5, n_grid=20)
    v = torch.randn(80, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert torch.allclose(d.nodes[0], krylov_ritz_values(A, v, m), rtol=1e-8, atol=1e-8)
    lz = Lanczos(A.__matmul__, v, m)
    for _ in range(m - 1):
        lz.extend(lz.step())
    lz.step()
    theta = torch.linalg.eigh(lz.tridiagonal())[0]               # eigh, as both drivers (not eigvalsh)
    assert torch.equal(d.nodes[0], theta)                        # one kernel: bit for bit
    vals, _, ok = lanczos_topk(A.__matmul__, v, 3, "LA", tol=0.0, max_steps=m)
    assert not ok and torch.equal(vals, theta.flip(0)[:3])
    assert d.n_hvp == m
