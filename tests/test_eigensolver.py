"""The Lanczos solver behind hessian_eigs, on explicit symmetric matrices."""
import pytest
import torch

from breakeven_utils.eigensolver import lanczos_topk

torch.set_num_threads(1)
F64 = torch.float64


def sym(n=120, seed=0, outliers=(40.0, 25.0, 18.0, -30.0)):
    """A symmetric matrix with a bulk spectrum in [-1, 1] and a few outliers."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=g))
    ev = torch.rand(n, dtype=F64, generator=g) * 2 - 1
    ev[: len(outliers)] = torch.tensor(outliers, dtype=F64)
    return (Q * ev) @ Q.T


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
