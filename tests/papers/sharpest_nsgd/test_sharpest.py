"""Fig. 4 probes and the Hessian summaries of the sharpest-directions paper (Sec. 2-3.2),
against direct computation on a small model."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from breakeven_utils.core.params import parameters_vector, set_parameters_vector
from breakeven_utils.papers.sharpest_nsgd import claims as sn_claims
from breakeven_utils.papers.sharpest_nsgd import sharpest

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def _problem(n=40):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return m, nn.CrossEntropyLoss(), torch.randn(n, 3, 2, 2, dtype=F64), torch.randint(0, 3, (n,))


def _loss_at(model, loss_fn, x, y, theta):
    old = parameters_vector(model).clone()
    set_parameters_vector(model, theta)
    with torch.no_grad():
        v = float(loss_fn(model(x), y))
    set_parameters_vector(model, old)
    return v


def test_k_grid_must_contain_zero_and_be_increasing():
    with pytest.raises(ValueError, match="k = 0"):
        sharpest.check_k_grid([-1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="increasing"):
        sharpest.check_k_grid([0.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        sharpest.check_k_grid([0.0, float("nan")])
    with pytest.raises(ValueError, match="k = 0"):
        sharpest.probe(*_problem()[:2], None, None, None, 0.1, ks=np.linspace(-8, 8, 16))
    assert 0.0 in sharpest.K_GRID and min(sharpest.K_GRID) == -8 and max(sharpest.K_GRID) == 8


def test_k_min_is_the_smallest_k_with_the_relative_change():
    ks = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    L = 1.0 + 0.01 * ks ** 2  # 1% at |k|=1, 4% at 2, 9% at 3
    assert sharpest.k_min(ks, L, 0.01) == 1.0
    assert sharpest.k_min(ks, L, 0.05) == 3.0
    assert math.isnan(sharpest.k_min(ks, L, 0.10))
    asym = 1.0 + np.where(ks < 0, 0.2, 0.0) * ks ** 2  # only the negative side changes
    assert sharpest.k_min(ks, asym, 0.1) == 1.0


def test_loss_along_and_alpha_experiment_match_direct_evaluation():
    model, loss_fn, x, y = _problem()
    theta = parameters_vector(model).clone()
    d = torch.randn_like(theta)
    d /= d.norm()
    steps = [-0.5, 0.0, 0.25, 1.0]
    got = sharpest.loss_along(model, loss_fn, (x, y), d, steps)
    want = [_loss_at(model, loss_fn, x, y, theta + s * d) for s in steps]
    assert np.allclose(got, want, rtol=1e-12)
    assert torch.equal(parameters_vector(model), theta)  # the model is left as it was
    proj = torch.tensor([0.3, -0.7, 1.1], dtype=F64)
    res = sharpest.alpha_experiment(model, loss_fn, (x, y), d, proj, lr=0.1, alphas=(0.5, 2.0))
    L0 = _loss_at(model, loss_fn, x, y, theta)
    for a in (0.5, 2.0):
        mean = np.mean([_loss_at(model, loss_fn, x, y, theta - a * 0.1 * float(p) * d) for p in proj])
        assert res[a] == pytest.approx((mean - L0) / L0, rel=1e-10)


def test_minibatch_projections_are_gradient_dot_eigenvector():
    model, loss_fn, x, y = _problem(n=64)
    V = torch.linalg.qr(torch.randn(parameters_vector(model).numel(), 2, dtype=F64))[0].T
    P = sharpest.minibatch_projections(model, loss_fn, (x, y), V, n_batches=4, batch_size=16, seed=3)
    idx = torch.randperm(64, generator=torch.Generator().manual_seed(3))[:64]
    for j in range(4):
        b = idx[j * 16:(j + 1) * 16]
        model.zero_grad()
        loss_fn(model(x[b]), y[b]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert torch.allclose(P[j], V @ g, atol=1e-12)
    with pytest.raises(ValueError, match="need 80 examples"):
        sharpest.minibatch_projections(model, loss_fn, (x, y), V, n_batches=5, batch_size=16)


def test_probe_typical_step_and_kmin_on_a_small_model():
    model, loss_fn, x, y = _problem(n=64)
    h = sharpest.top_eigs(model, loss_fn, (x, y), 2, tol=1e-8, batch_size=None)
    r = sharpest.probe(model, loss_fn, (x, y), (x, y), h, 0.5, batch_size=16, n_batches=4,
                       directions=(1, 3), seed=1)
    assert list(r["lines"]) == [1]  # e3 is beyond the 2 eigenpairs computed
    proj = sharpest.minibatch_projections(model, loss_fn, (x, y), h.vectors[:1], n_batches=4,
                                          batch_size=16, seed=1)
    assert r["dtheta"][1] == pytest.approx(0.5 * float(proj.abs().mean()))
    ks = np.asarray(sharpest.K_GRID)
    assert r["kmin1"] == sharpest.k_min(ks, r["lines"][1], 0.01)
    L0 = r["lines"][1][ks == 0][0]
    assert L0 == pytest.approx(float(loss_fn(model(x), y).detach()))


def test_spectrum_summary_rho_frobenius_and_negative_flag():
    s = sharpest.spectrum_summary([10.0, -12.0, 3.0, 2.0, 1.0, 0.5])
    assert s["rho_H"] == -12.0 and s["H_negative"] is True
    assert s["frob_H"] == pytest.approx(math.sqrt(144 + 100 + 9 + 4 + 1))  # the top 5 by magnitude
    assert sharpest.spectrum_summary([3.0, 1.0])["H_negative"] is False


def test_mean_weight_spectral_norm_reshapes_conv_kernels():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4))
    want = np.mean([float(torch.linalg.svdvals(m[0].weight.detach().reshape(3, -1))[0]),
                    float(torch.linalg.svdvals(m[2].weight.detach())[0])])
    assert sharpest.mean_weight_spectral_norm(m) == pytest.approx(want, rel=1e-6)


def _m(rho, epochs=None):
    rho = np.asarray(rho, float)
    ep = np.arange(len(rho)) * 0.5 if epochs is None else epochs
    return pd.DataFrame({"iteration": np.arange(len(rho)) * 10, "epoch": ep, "rho_H": rho})


def test_growth_claim_verdicts():
    up_down = _m([1, 5, 10, 12, 11, 9, 8, 7])
    assert sn_claims.growth_claim(up_down, "s").verdict == "holds"
    still_up = _m([1, 2, 3, 4, 5, 6, 7, 8])
    c = sn_claims.growth_claim(still_up, "s")
    assert c.verdict == "not testable at this scale" and "still rising" in c.reason
    assert sn_claims.growth_claim(_m([5, 4, 3, 3, 2, 2, 2, 2]), "s").verdict == "does not hold"


def test_peak_claims_orderings():
    runs = {0.1: _m([1, 4, 5, 4, 3, 3]), 0.01: _m([1, 5, 9, 20, 25, 22])}  # smaller eta: larger, later
    h, pos = sn_claims.peak_claims(runs, "lr", "s")
    assert h.verdict == "holds" and pos.verdict == "holds"
    h, _ = sn_claims.peak_claims({0.1: runs[0.01], 0.01: runs[0.1]}, "lr", "s")
    assert h.verdict == "does not hold"
    # a run whose rho(H) only falls: its first measurement is never a peak (compare_peaks); what is
    # left is inside the noise on the raw values, so no verdict
    h, pos = sn_claims.peak_claims({128: runs[0.1], 512: _m([9, 7, 5, 4, 3, 3])}, "batch_size", "s")
    assert h.verdict == pos.verdict == "not testable at this scale"
    assert "first measurement (shared initial state) excluded" in h.reason
    assert "no peak after the start for S=512" in pos.reason
    # a run still rising at its end: its value is a lower bound of its peak
    rising = _m([1, 3, 5, 7, 9, 12])  # smaller eta, peak not reached: >= 12 at epoch >= 2.5
    h, pos = sn_claims.peak_claims({0.1: _m([1, 20, 30, 25, 22, 20]), 0.01: rising}, "lr", "s")
    assert h.verdict == "not testable at this scale" and "still rising" in h.reason
    assert "eta=0.01 in" in h.reason
    assert pos.verdict == "holds"  # its peak can only come later: the ordering is safe
    h, _ = sn_claims.peak_claims({0.1: _m([1, 4, 5, 4, 3, 3]), 0.01: rising}, "lr", "s")
    assert h.verdict == "holds"  # already above the larger eta's peak: a higher peak keeps it so
    h, pos = sn_claims.peak_claims({0.1: rising, 0.01: _m([1, 5, 25, 20, 15, 12])}, "lr", "s")
    assert h.verdict == "not testable at this scale"  # the larger eta could still overtake: open
    assert pos.verdict == "does not hold"  # its peak comes after epoch 2.5 whatever it is: late


def test_probe_claims_need_significance():
    base = {"n_probes": 5, "from_epoch": 3.0, "kmin1_e1": 3.0, "kmin1_e1_found": 5, "kmin10_e1": 6.0,
            "kmin10_e1_found": 4}
    good = dict(base, **{f"alpha_{a:g}": v for a, v in zip(sharpest.ALPHAS, [-.02, -.02, .01, .03, .1])},
                **{f"alpha_{a:g}_se": 0.001 for a in sharpest.ALPHAS})
    c_alpha, c_kmin = sn_claims.probe_claims(good, "simplecnn", "s")
    assert c_alpha.verdict == "holds" and c_kmin.verdict == "holds"
    noisy = dict(good, **{f"alpha_{a:g}_se": 0.05 for a in sharpest.ALPHAS})
    assert sn_claims.probe_claims(noisy, "simplecnn", "s")[0].verdict == "not testable at this scale"
    wrong = dict(good, **{"alpha_2": -0.03})
    assert sn_claims.probe_claims(wrong, "simplecnn", "s")[0].verdict == "does not hold"
    # a probe without k_min(1%) within the grid: against the narrow bowl past its onset (the
    # paper: after four epochs of 45,000 images), not testable on a run that stops before it
    missed = dict(good, kmin1_e1_found=3)
    assert sn_claims.probe_claims(missed, "simplecnn", "s")[1].verdict == "does not hold"
    late = sn_claims.probe_claims(missed, "simplecnn", "s", steps=sn_claims.BOWL_AFTER_STEPS + 100)[1]
    assert late.verdict == "does not hold"
    early = sn_claims.probe_claims(missed, "simplecnn", "s", steps=312)[1]
    assert early.verdict == "not testable at this scale" and "312 steps" in early.reason
    assert "after four epochs" in early.reason
    assert sn_claims.probe_claims(good, "simplecnn", "s", steps=312)[1].verdict == "holds"


def test_variant_claims():
    it = np.arange(10)
    curves = {"SGD": (it, np.linspace(1.0, 0.8, 10), np.full(10, 10.0)),
              "SGD no top": (it, np.linspace(1.0, 0.8, 10), np.linspace(10, 15, 10)),
              "SGD top": (it, np.full(10, 1.0), np.linspace(10, 6, 10)),
              "gamma=0.1 along e1": (it, np.linspace(1, 0.8, 10), np.linspace(10, 14, 10)),
              "gamma=10 along e1": (it, np.linspace(1, 0.8, 10), np.linspace(10, 5, 10))}
    assert [c.verdict for c in sn_claims.variant_claims(curves, "s")] == ["holds"] * 3
    flat = dict(curves, **{"SGD no top": (it, np.linspace(1.0, 0.8, 10), np.full(10, 10.0))})
    assert sn_claims.variant_claims(flat, "s")[0].verdict == "does not hold"
    # SGD's own rho(H) still rising: the contrast of the paper is not testable
    rising = dict(curves, SGD=(it, np.linspace(1.0, 0.8, 10), np.linspace(10, 13, 10)))
    c = sn_claims.variant_claims(rising, "s")[0]
    assert c.verdict == "not testable at this scale" and "rises by" in c.reason
    # gamma = 0.1 within 5% of SGD: within noise
    near = dict(curves, **{"gamma=0.1 along e1": (it, np.linspace(1, 0.8, 10), np.full(10, 10.2))})
    assert sn_claims.variant_claims(near, "s")[2].verdict == "not testable at this scale"
