"""Curvature estimators against dense float64 Hessians on tiny models."""
import problems
import pytest
import torch
from torch import nn
from torch.func import functional_call

from breakeven_utils import curvature as C
from breakeven_utils import params as P

# tiny models: one thread avoids oversubscription stalls when the cores are shared
torch.set_num_threads(1)
F64 = torch.float64


# ----------------------------------------------------------------------------- tiny problems

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


@pytest.fixture(scope="module")
def mlp():
    m, lf, x, y = mlp_problem()
    H = dense_hessian(m, lf, x, y)
    return m, lf, x, y, H


@pytest.fixture(scope="module")
def cnn():
    m, lf, x, y = cnn_problem()
    H = dense_hessian(m, lf, x, y)
    return m, lf, x, y, H


def top5(H, which):
    ev, U = torch.linalg.eigh(H)
    key = ev if which == "LA" else ev.abs()
    idx = torch.argsort(key, descending=True)[:5]
    return ev[idx], U[:, idx].T


# ----------------------------------------------------------------------------- HVP

@pytest.mark.parametrize("problem,method", [("mlp", "auto"), ("mlp", "double_backward"), ("mlp", "cached"),
                                            ("cnn", "fwdrev"), ("cnn", "double_backward"), ("cnn", "cached")])
def test_hvp_matches_dense_over_unequal_batches(problem, method, request):
    m, lf, x, y, H = request.getfixturevalue(problem)
    v = torch.randn(H.shape[0], dtype=F64, generator=torch.Generator().manual_seed(0))
    batches = [(x[:20], y[:20]), (x[20:41], y[20:41]), (x[41:], y[41:])]   # unequal sizes
    hv = C.hvp(m, lf, batches, v, method=method)
    assert torch.allclose(hv, H @ v, rtol=1e-10, atol=1e-10)
    hv2 = C.hvp(m, lf, (x, y), v, method=method, batch_size=7)
    assert torch.allclose(hv2, H @ v, rtol=1e-10, atol=1e-10)
    # an unweighted average of per-batch HVPs would differ: the weighting matters
    naive = sum(C.hvp(m, lf, b, v) for b in batches) / 3
    assert not torch.allclose(naive, H @ v, rtol=1e-4)


def test_float64_option_on_float32_model(mlp):
    m, lf, x, y, H = mlp
    m32 = mlp_problem()[0].float()
    v = torch.randn(H.shape[0], dtype=F64)
    hv = C.hvp(m32, lf, (x.float(), y.float()), v, dtype=F64)
    assert hv.dtype == F64
    # parameters were rounded to float32, so agreement is to float32 precision only
    assert torch.allclose(hv, H @ v, rtol=1e-4, atol=1e-4)
    assert next(m32.parameters()).dtype == torch.float32


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
    r = C.hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9, solver=solver)
    assert r.values.shape == (5,) and r.vectors.shape == (5, H.shape[0])
    rel = ((r.values - ref_vals).abs() / ref_vals.abs()).max()
    assert rel < 1e-6, (r.values, ref_vals)
    cos = (r.vectors * ref_vecs).sum(1).abs()
    assert (cos > 0.999).all(), cos
    assert torch.allclose(r.vectors.norm(dim=1), torch.ones(5, dtype=F64))
    assert r.n_hvp > 0 and r.lambda_1 == float(r.values[0])


def test_values_descending_and_views(mlp):
    m, lf, x, y, H = mlp
    r = C.hessian_eigs(m, lf, (x, y), k=4, which="LM", tol=1e-6)
    assert (r.values.abs()[:-1] >= r.values.abs()[1:]).all()
    views = r.views(1)
    params = [p for _, p in P.trainable_parameters(m)]
    assert [v.shape for v in views] == [p.shape for p in params]
    assert torch.equal(P.flatten(views), r.vectors[1])
    ra = C.hessian_eigs(m, lf, (x, y), k=4, which="LA", tol=1e-6)
    assert (ra.values[:-1] >= ra.values[1:]).all()


def test_warm_start_saves_hvps_along_a_trajectory(mlp):
    m, lf, x, y, H = mlp
    first = C.hessian_eigs(m, lf, (x, y), k=5, tol=1e-4)
    m2 = mlp_problem()[0]
    g = torch.autograd.grad(lf(m2(x), y), list(m2.parameters()))
    with torch.no_grad():   # a small SGD-like step
        for p, gi in zip(m2.parameters(), g):
            p.sub_(1e-3 * gi)
    cold = C.hessian_eigs(m2, lf, (x, y), k=5, tol=1e-4)
    warm = C.hessian_eigs(m2, lf, (x, y), k=5, tol=1e-4, v0=first)
    warm2 = C.hessian_eigs(m2, lf, (x, y), k=5, tol=1e-4, v0=first.vectors, solver="arpack")
    assert torch.allclose(warm.values, cold.values, rtol=1e-6)
    assert torch.allclose(warm2.values, cold.values, rtol=1e-6)
    assert warm.n_hvp < cold.n_hvp, (warm.n_hvp, cold.n_hvp)


# ----------------------------------------------------------------------------- trace, density, Frobenius

def test_hutchinson_trace_within_4_se_and_se_shrinks(mlp):
    m, lf, x, y, H = mlp
    exact = float(torch.trace(H))
    small = C.hessian_trace(m, lf, (x, y), n_probes=30, seed=1)
    large = C.hessian_trace(m, lf, (x, y), n_probes=480, seed=2)
    for est in (small, large):
        assert abs(est.mean - exact) < 4 * est.stderr, (est, exact)
        assert est.samples.numel() == est.n_hvp
    assert large.stderr < 0.5 * small.stderr      # ~ 1/sqrt(n): expected ratio 1/4
    # reproducible by seed
    again = C.hessian_trace(m, lf, (x, y), n_probes=30, seed=1)
    assert torch.equal(again.samples, small.samples)


def test_density_normalised_and_extremes(mlp):
    m, lf, x, y, H = mlp
    ev = torch.linalg.eigvalsh(H)
    d = C.hessian_density(m, lf, (x, y), n_steps=90, n_runs=2, seed=0)
    assert torch.allclose(d.weights.sum(1), torch.ones(2, dtype=F64))
    mass = float(torch.trapezoid(d.density, d.grid))
    assert abs(mass - 1) < 1e-3
    # Lanczos with full reorthogonalisation finds the extreme eigenvalues
    assert abs(float(d.nodes.max()) - float(ev[-1])) < 1e-6 * abs(float(ev[-1]))
    assert abs(float(d.nodes.min()) - float(ev[0])) < 1e-6 * abs(float(ev[0]))


def test_frobenius_from_top(mlp):
    H = mlp[4]
    ev = torch.linalg.eigvalsh(H)
    assert C.frobenius_from_top(ev) == pytest.approx(float(torch.linalg.norm(H)), rel=1e-10)
    top = ev[ev.abs().argsort(descending=True)][:5]
    assert C.frobenius_from_top(top) == pytest.approx(float(top.pow(2).sum().sqrt()))
    with pytest.raises(ValueError):
        C.frobenius_from_top([])


# ----------------------------------------------------------------------------- per-example curvature

@pytest.mark.parametrize("problem", ["mlp", "cnn"])
def test_per_example_curvature_matches_dense(problem, request):
    m, lf, x, y, H = request.getfixturevalue(problem)
    n = 8
    v = top5(H, "LA")[1][0]                 # e_H^1, as for s^2 in Eq. (1)
    got = C.per_example_curvature(m, lf, (x[:n], y[:n]), v)
    ref = torch.stack([v @ dense_hessian(m, lf, x[i:i + 1], y[i:i + 1]) @ v for i in range(n)])
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert ref.std() > 1e-3 * ref.abs().mean()            # genuinely differs per example
    # the mean over all examples is v^T H v, also across batches
    allc = C.per_example_curvature(m, lf, (x, y), v, batch_size=10)
    assert allc.shape == (x.shape[0],)
    assert float(allc.mean()) == pytest.approx(float(v @ H @ v), rel=1e-9)


# ----------------------------------------------------------------------------- BatchNorm

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
    for mode in C.BN_MODES:
        hv[mode] = C.hvp(m, lf, (x, y), v, bn_mode=mode)
        C.hvp(m, lf, (x, y), v, bn_mode=mode, method="double_backward")
        C.hessian_eigs(m, lf, (x, y), k=2, bn_mode=mode, tol=1e-2)
        C.hessian_eigs(m, lf, (x, y), k=2, bn_mode=mode, tol=1e-2, solver="arpack")
        C.hessian_trace(m, lf, (x, y), n_probes=2, bn_mode=mode)
        C.hessian_density(m, lf, (x, y), n_steps=4, bn_mode=mode)
        C.per_example_curvature(m, lf, (x, y), v, bn_mode=mode)
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
    a = C.hvp(m, nn.CrossEntropyLoss(), (x, y), v, bn_mode="train")
    b = C.hvp(m, nn.CrossEntropyLoss(), (x, y), v, bn_mode="train")
    assert torch.equal(a, b) and m.training


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs(mlp):
    m, lf, x, y, H = mlp
    D = H.shape[0]
    data = (x, y)
    with pytest.raises(ValueError, match="smaller than the number of parameters"):
        C.hessian_eigs(m, lf, data, k=D)
    with pytest.raises(ValueError, match="smaller than the number of parameters"):
        C.hessian_eigs(m, lf, data, k=D + 10)
    for bad in ({"k": 0}, {"k": 2.5}, {"which": "SA"}, {"bn_mode": "test"}, {"solver": "power"},
                {"method": "finite_differences"}, {"tol": -1.0}, {"v0": torch.ones(3)}):
        with pytest.raises(ValueError):
            C.hessian_eigs(m, lf, data, **bad)
    with pytest.raises(ValueError):
        C.hessian_eigs(m, lf, (x, y[:10]))
    with pytest.raises(ValueError):
        C.hessian_eigs(m, lf, (x[:0], y[:0]))
    with pytest.raises(ValueError):
        C.hessian_eigs(m, lf, [x, y, x])
    with pytest.raises(ValueError):
        C.hvp(m, lf, data, torch.ones(D + 1, dtype=F64))
    with pytest.raises(ValueError):
        C.hessian_trace(m, lf, data, n_probes=1)
    with pytest.raises(ValueError):
        C.per_example_curvature(m, lf, data, torch.ones(5, dtype=F64))
    with pytest.raises(RuntimeError, match="max_hvp"):
        C.hessian_eigs(m, lf, data, k=5, tol=1e-10, max_hvp=6)
    with pytest.raises(RuntimeError, match="max_hvp"):
        C.hessian_eigs(m, lf, data, k=5, tol=1e-10, max_hvp=6, solver="arpack")


# ----------------------------------------------------------------------------- warm starts

@pytest.mark.parametrize("problem", ["mlp", "cnn"])
@pytest.mark.parametrize("which", ["LA", "LM"])
def test_warm_start_from_exact_eigenvectors_costs_k_hvps(problem, which, request):
    """Warm vectors that are still eigenvectors span an invariant Krylov space:
    about k HVPs, no random admixture, no minimum subspace size, the exact pairs."""
    m, lf, x, y, H = request.getfixturevalue(problem)
    ref_vals, ref_vecs = top5(H, which)
    for k in (1, 5):
        r = C.hessian_eigs(m, lf, (x, y), k=k, which=which, tol=1e-9, v0=ref_vecs[:k])
        # k products span the top-k space; rounding in that Krylov basis (close
        # eigenvalues) may leave residuals ~1e-9, one more product removes them
        assert r.n_hvp <= k + (k > 1), (k, r.n_hvp)
        assert torch.allclose(r.values, ref_vals[:k], rtol=1e-10, atol=0)
        assert ((r.vectors * ref_vecs[:k]).sum(1).abs() > 1 - 1e-10).all()
    # a HessianEigs is accepted as v0 too, in any row order
    prev = C.hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9, v0=ref_vecs.flip(0))
    assert prev.n_hvp <= 6 and torch.allclose(prev.values, ref_vals, rtol=1e-10, atol=0)
    again = C.hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9, v0=prev)
    cold = C.hessian_eigs(m, lf, (x, y), k=5, which=which, tol=1e-9)
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
        cold = C.hessian_eigs(m, lf, (x, y), k=k, tol=1e-8)
        warm = C.hessian_eigs(m, lf, (x, y), k=k, tol=1e-8, v0=v0)
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
        r = C.hessian_eigs(m, lf, (x, y), k=5, tol=1e-9, v0=v0)
        assert torch.allclose(r.values, ref_vals, rtol=1e-9, atol=0), (r.values, ref_vals)
        assert ((r.vectors * ref_vecs).sum(1).abs() > 1 - 1e-8).all()
