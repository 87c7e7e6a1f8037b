"""Gradient-noise estimators (``curvature.gradient_noise``, per-example gradients) against
dense per-example computations."""
import problems
import pytest
import torch
from torch import nn

from breakeven_utils import curvature as Nz
from breakeven_utils.core import params as P
from breakeven_utils.core.stats import bootstrap_se

# tiny models: one thread avoids oversubscription stalls when the cores are shared
pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def mlp_problem(n=40):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    x = torch.randn(n, 6, dtype=F64)
    y = torch.randint(0, 4, (n,))
    return m, nn.CrossEntropyLoss(), x, y


def cnn_problem(n=36, bn=False):
    return problems.cnn_problem(n, bn)


def loop_gradients(m, lf, x, y):
    """The plain per-example loop (the oracle)."""
    rows = []
    for i in range(x.shape[0]):
        m.zero_grad()
        lf(m(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(P.gradient_vector(m).clone())
    m.zero_grad()
    return torch.stack(rows)


@pytest.mark.parametrize("problem", [mlp_problem, cnn_problem])
def test_per_example_gradients_equal_loop(problem):
    m, lf, x, y = problem()
    m.eval()
    G = Nz.per_example_gradients(m, lf, x, y, chunk_size=7)   # chunks do not divide N
    ref = loop_gradients(m, lf, x, y)
    assert G.shape == ref.shape == (x.shape[0], P.num_parameters(m))
    assert torch.allclose(G, ref, rtol=1e-10, atol=1e-12)
    assert (G - G.mean(0)).abs().max() > 1e-3          # rows genuinely differ


@pytest.mark.parametrize("problem", [mlp_problem, cnn_problem])
def test_m1_gram_equals_dense_K(problem):
    m, lf, x, y = problem()
    n = x.shape[0]
    G = loop_gradients(m, lf, x, y)
    g = G.mean(0)
    K = (G - g).T @ (G - g) / n                           # footnote 1, D x D
    ev, U = torch.linalg.eigh(K)
    ev, U = ev.flip(0), U.flip(1)
    cov = Nz.gradient_covariance(m, lf, (x, y), L=n, M=1, n_vectors=3)
    assert cov.eigenvalues.shape == (n - 1,)
    assert torch.allclose(cov.eigenvalues, ev[: n - 1], rtol=1e-8, atol=1e-14)
    assert cov.lambda_1 == pytest.approx(float(ev[0]), rel=1e-10)
    # lambda_star: the smallest non-zero eigenvalue, the (N-1)-th; the N-th is zero
    assert cov.lambda_star == pytest.approx(float(ev[n - 2]), rel=1e-8)
    assert cov.lambda_star > 1e3 * abs(float(ev[n - 1]))
    assert cov.ratio == pytest.approx(cov.lambda_star / cov.lambda_1)
    assert cov.trace == pytest.approx(float(torch.trace(K)), rel=1e-12)
    assert torch.allclose(cov.mean_gradient, g, atol=1e-14)
    # eigenvectors in parameter space: unit, orthogonal, eigenvectors of K
    V = cov.vectors
    assert torch.allclose(V @ V.T, torch.eye(3, dtype=F64), atol=1e-10)
    assert torch.allclose(K @ V.T, V.T * cov.eigenvalues[:3], atol=1e-10)


def test_partition_and_minibatch_gram():
    m, lf, x, y = cnn_problem()
    L, M = 6, 6                                           # L*M = N: a partition
    cov = Nz.gradient_covariance(m, lf, (x, y), L=L, M=M, seed=3, n_vectors=2)
    assert sorted(cov.indices.reshape(-1).tolist()) == list(range(x.shape[0]))
    m.zero_grad()
    lf(m(x), y).backward()
    full = P.gradient_vector(m)
    assert torch.allclose(cov.mean_gradient, full, atol=1e-12)      # exact
    # Gram eigenvalues equal those of the D x D covariance of the batch gradients
    Gb = []
    for idx in cov.indices:
        m.zero_grad()
        lf(m(x[idx]), y[idx]).backward()
        Gb.append(P.gradient_vector(m).clone())
    Gb = torch.stack(Gb)
    Cb = Gb - Gb.mean(0)
    ev = torch.linalg.eigvalsh(Cb.T @ Cb / L).flip(0)
    assert torch.allclose(cov.eigenvalues, ev[: L - 1], rtol=1e-8, atol=1e-14)
    # per-example scaling is an explicit option
    scaled = Nz.gradient_covariance(m, lf, (x, y), L=L, M=M, seed=3, per_example=True)
    assert torch.allclose(scaled.eigenvalues, M * cov.eigenvalues)
    assert scaled.trace == pytest.approx(M * cov.trace)
    # the seed fixes the batches; another seed draws others
    assert torch.equal(scaled.indices, cov.indices)
    other = Nz.gradient_covariance(m, lf, (x, y), L=3, M=5, seed=4)
    assert not torch.equal(other.indices, cov.indices[:3, :5])


def test_batches_without_replacement_and_iterable_data():
    m, lf, x, y = mlp_problem()
    cov = Nz.gradient_covariance(m, lf, [(x[:15], y[:15]), (x[15:], y[15:])], L=5, M=7, seed=1)
    flat = cov.indices.reshape(-1)
    assert flat.unique().numel() == 35 and int(flat.max()) < 40


def test_gradient_norm_ratio():
    m, lf, x, y = mlp_problem()
    cov = Nz.gradient_covariance(m, lf, (x, y), L=8, M=5, n_vectors=5)
    g = Nz.minibatch_gradient(m, lf, x[:5], y[:5])
    r = Nz.gradient_norm_ratio(g, cov)
    ref = float(g.norm() / (cov.vectors[:5] @ g).norm())
    assert r == pytest.approx(ref) and r >= 1.0
    inside = cov.vectors[:5].T @ torch.arange(1.0, 6.0, dtype=F64)   # g in the span -> ratio 1
    assert Nz.gradient_norm_ratio(inside, cov) == pytest.approx(1.0, rel=1e-10)
    with pytest.raises(ValueError):
        Nz.gradient_norm_ratio(g, cov, k=6)


def test_bn_running_stats_untouched_and_modes_differ():
    m, lf, x, y = cnn_problem(bn=True)
    with torch.no_grad():
        m.train()
        m(x + 1.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = {}
    for mode in ("train", "eval"):
        res[mode] = Nz.gradient_covariance(m, lf, (x, y), L=4, M=8, bn_mode=mode)
        Nz.gradient_covariance(m, lf, (x, y), L=6, M=1, bn_mode=mode)
        Nz.per_example_gradients(m, lf, x, y, bn_mode=mode)
        assert m.training
        for k, v in m.state_dict().items():
            assert torch.equal(v, before[k]), (mode, k)
    assert not torch.allclose(res["train"].mean_gradient, res["eval"].mean_gradient, rtol=1e-3)


def test_bad_inputs():
    m, lf, x, y = mlp_problem()
    with pytest.raises(ValueError, match="exceeds"):
        Nz.gradient_covariance(m, lf, (x, y), L=5, M=9)       # 45 > 40
    for kw in ({"L": 1, "M": 4}, {"L": 0}, {"M": 0}, {"L": 4, "M": 2.5},
               {"L": 4, "M": 2, "n_vectors": 4}, {"L": 4, "M": 2, "bn_mode": "x"}):
        with pytest.raises(ValueError):
            Nz.gradient_covariance(m, lf, (x, y), **kw)
    with pytest.raises(ValueError):
        Nz.per_example_gradients(m, lf, x, y[:3])


def test_bootstrap_se_of_the_kept_gram():
    m, lf, x, y = mlp_problem()
    cov = Nz.gradient_covariance(m, lf, (x, y), L=8, M=5, seed=2, keep_gram=True)
    assert cov.bootstrap_se(n_boot=50, seed=1) == bootstrap_se(cov.gram, "lambda_1", n_boot=50, seed=1) > 0
    assert cov.bootstrap_se("trace") == bootstrap_se(cov.gram, "trace")
    with pytest.raises(ValueError, match="keep_gram"):
        Nz.gradient_covariance(m, lf, (x, y), L=8, M=5).bootstrap_se()
