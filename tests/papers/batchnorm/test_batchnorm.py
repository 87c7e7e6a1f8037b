"""Notebook 3 (break-even Sec. 4.3, App. H): settings, bad input, BN-mode discipline of the
measurements, ||g||/||g_5|| against a dense K, and the claims on hand-made tables."""
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import problems
import pytest
import torch
from torch import nn

from breakeven_utils import recorder
from breakeven_utils.core.models import build_model
from breakeven_utils.curvature.gradient_noise import (
    gradient_covariance,
    gradient_norm_ratio,
    minibatch_gradient,
)
from breakeven_utils.papers import common
from breakeven_utils.papers.batchnorm import analysis as bn_analysis
from breakeven_utils.papers.batchnorm import claims as bn_claims
from breakeven_utils.papers.batchnorm import figures as bn_figures
from breakeven_utils.papers.batchnorm import runs as bn_runs
from breakeven_utils.papers.batchnorm import settings as bn_settings
from breakeven_utils.papers.common import iteration_schedule
from breakeven_utils.reporting import claims as cl
from breakeven_utils.store import sweeps

matplotlib.use("Agg")  # tests only; notebooks use the inline backend

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- settings


def test_profiles_build_every_run_without_training():
    for profile in ("smoke", "cpu", "paper"):
        s = bn_settings.settings(profile)
        sws = {sw.name: sw for sw in bn_runs.sweeps(s)}
        assert set(sws) == {"bn_eta", "plain_eta", "bn_S"}
        assert sorted(set(sws["bn_eta"].values)) == [0.001, 0.01, 0.1, 1.0]
        assert sorted(set(sws["plain_eta"].values)) == [0.01, 1.0]
        assert min(sws["bn_S"].values) <= 10 and len(set(sws["bn_S"].values)) == 4
        for sw in sws.values():
            for c in sw.configs:
                assert c.K_bn_mode == "train" and c.hessian_bn_mode == "train"
                assert c.K_M == s["K_M"] and "g_over_g5" in c.metrics and "K" in c.metrics
                assert c.model == ("simple_cnn" if sw.name == "plain_eta" else "simple_cnn_bn")
                assert ("gamma_norm" in c.metrics) == (c.model == "simple_cnn_bn")
                want_h = {"bn_eta": s["lambda_H"], "plain_eta": s["lambda_H_plain"],
                          "bn_S": s["lambda_H_S"] or (c.batch_size == s["batch_size"] and s["lambda_H"])}
                assert ("lambda_H" in c.metrics) == want_h[sw.name]
        for c in sws["bn_S"].configs:
            assert c.lr == s["lr_for_S"]
        cfgs = bn_runs.run_configs(profile)
        n_seeds = len(s["seeds"])
        # S = 128 (or the eta sweep's S) at eta = lr_for_S is one run shared by two sweeps
        assert len(cfgs) == (4 + 2 + 4 - 1) * n_seeds
        assert len({c.key() for c in cfgs}) == len(cfgs)
    cpu = bn_settings.settings("cpu")
    assert cpu["dataset"] == "cifar10" and cpu["K_L"] == 25 and cpu["K_M"] == 128
    assert cpu["n_train"] >= cpu["K_L"] * cpu["K_M"]


def test_measurement_schedule_dense_early_then_every_epoch():
    s = bn_settings.settings("smoke")
    at = bn_runs.measure_at(s, 32)
    bpe = s["n_train"] // 32
    assert set(s["measure_early"]) <= set(at)
    assert {bpe * e for e in range(1, s["max_epochs"] + 1)} <= set(at) and max(at) == bpe * s["max_epochs"]
    assert bn_runs.measure_at(bn_settings.settings("paper"), 128) is None  # shared measure_every schedule


def test_cpu_runs_take_equal_steps_measured_at_the_same_iterations():
    """#21: at cpu every run of notebook 3 takes max_iters steps, whatever its eta or S (at
    equal epochs S = 512 took 12 steps and S = 10 640), measured at the same iterations."""
    s = bn_settings.settings("cpu")
    n = s["max_iters"]
    cfgs = bn_runs.run_configs("cpu")
    assert {c.max_iters for c in cfgs} == {n} and {c.max_epochs for c in cfgs} == {None}
    assert len({c.measure_at for c in cfgs}) == 1
    at = cfgs[0].measure_at
    assert set(s["measure_early"]) <= set(at) and at[-1] == n
    every, dense_until, late = s["measure_iters"]
    assert set(range(0, dense_until + 1, every)) <= set(at)
    assert all(b - a <= late for a, b in zip(at, at[1:]))


def test_iteration_schedule():
    assert iteration_schedule(100, 10, 30, 25) == (0, 10, 20, 30, 55, 80, 100)
    assert iteration_schedule(20, 5, 50, 50) == (0, 5, 10, 15, 20)
    with pytest.raises(ValueError, match="iteration_schedule"):
        iteration_schedule(100, 0, 30, 25)


@pytest.mark.parametrize("override, match", [
    (dict(bn_lrs=[]), "bn_lrs.*empty"),
    (dict(plain_lrs=[]), "plain_lrs.*empty"),
    (dict(batch_sizes=[]), "batch_sizes.*empty"),
    (dict(batch_sizes=[10, 5000]), "S=5000 is larger than the training set"),
    (dict(batch_size=8000), "S=8000 is larger than the training set"),
    (dict(bn_lrs=[0.1, -1.0]), "positive finite"),
    (dict(bn_lrs=[0.1, 0.1]), "duplicates"),
    (dict(batch_sizes=[10.5]), "integers"),
    (dict(K_L=5), "K_L >= 6"),
    (dict(n_train=3000), "K_L\\*K_M"),
])
def test_bad_settings_fail_before_training(override, match):
    with pytest.raises(ValueError, match=match):
        bn_settings.settings("cpu", **override)


def test_gamma_norm_of_a_model_without_bn_is_an_error():
    assert bn_runs.has_batchnorm("simple_cnn_bn") and not bn_runs.has_batchnorm("simple_cnn")
    ok = bn_runs.sweeps(bn_settings.settings("smoke"))[0].configs[0]
    with pytest.raises(ValueError, match="needs a model with BatchNorm"):
        bn_runs.check_config(ok.replace(model="simple_cnn"))
    with pytest.raises(ValueError, match="needs metric 'K'"):
        bn_runs.check_config(ok.replace(metrics=("train", "g_over_g5", "gamma_norm")))
    bn_runs.check_config(ok)
    # the recorder refuses it too, before the first step (a RunConfig built by hand)
    plain = ok.replace(model="simple_cnn", metrics=("gamma_norm",))
    with pytest.raises(ValueError, match="needs a model with BatchNorm"):
        recorder.train(plain, data=recorder.load_run_data(plain), progress=False)


def test_simple_cnn_bn_has_bn_after_every_layer_but_the_last():
    m = build_model("simple_cnn_bn", seed=0)
    mods = [x for x in m.modules() if not isinstance(x, (nn.Sequential, type(m)))]
    layers = [i for i, x in enumerate(mods) if isinstance(x, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 6  # 4 convolutions, dense 128, dense 10
    for i in layers[:-1]:
        assert isinstance(mods[i + 1], (nn.BatchNorm2d, nn.BatchNorm1d)), mods[i + 1]
    assert layers[-1] == len(mods) - 1  # the output layer: no BN after it
    last_bn = [x for x in m.modules() if isinstance(x, nn.BatchNorm1d)]
    assert len(last_bn) == 1 and last_bn[0].num_features == 128


# ----------------------------------------------------------------------------- measurements


def test_g_over_g5_matches_dense_K_eigenvectors():
    """K's top-5 eigenvectors from the L x L Gram estimate span the same subspace as those
    of the dense D x D matrix (1/L) sum_l (g_l - g)(g_l - g)^T, BN in train mode."""
    m, lf, x, y = problems.cnn_problem(n=48, bn=True)
    L, M = 8, 6
    gc = gradient_covariance(m, lf, (x, y), L=L, M=M, seed=3, n_vectors=5, bn_mode="train")
    G = torch.stack([minibatch_gradient(m, lf, x[i], y[i], bn_mode="train") for i in gc.indices])
    C = G - G.mean(0)
    K = C.T @ C / L
    evals, evecs = torch.linalg.eigh(K)
    top = evecs[:, -5:]
    np.testing.assert_allclose(evals.flip(0)[:L - 1].numpy(), gc.eigenvalues.numpy(), rtol=1e-8, atol=1e-12)
    g = minibatch_gradient(m, lf, x[:10], y[:10], bn_mode="train")
    dense = float(g.norm() / (top.T @ g).norm())
    assert gradient_norm_ratio(g, gc, k=5) == pytest.approx(dense, rel=1e-8)
    assert dense > 1.0


class _Snapshots:
    """Model state after every SGD step (hook) and at every measurement (a metric that
    runs after K, H, ||gamma||, accuracies)."""

    def __init__(self):
        self.after_step, self.at_measure = {}, {}


_SNAP = _Snapshots()


@recorder.register_metric("_bn_test_snapshot")
def _snapshot(ctx):
    _SNAP.at_measure[ctx.iteration] = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
    return {}


def _bn_config(**kw):
    s = bn_settings.settings("smoke")
    c = bn_runs.sweeps(s)[0].configs[2]  # SimpleCNN-BN, eta = 0.1
    return c.replace(**{"n_train": 256, "max_epochs": 1, "measure_at": (0, 2, 5, 8), **kw})


def test_measurements_never_change_running_statistics():
    """Running statistics (and parameters) are bitwise the same before and after every
    measurement of K, H (batch statistics), ||g||/||g_5||, ||gamma|| and accuracies, and a
    measured run ends bitwise where an unmeasured one does."""
    c = _bn_config(metrics=bn_settings.METRICS_BN + ("_bn_test_snapshot",))
    assert c.K_bn_mode == "train" and c.hessian_bn_mode == "train"
    data = recorder.load_run_data(c)
    _SNAP.after_step.clear()
    _SNAP.at_measure.clear()

    def hook(info):
        _SNAP.after_step[info["iteration"]] = {k: v.detach().clone()
                                               for k, v in info["model"].state_dict().items()}

    out = recorder.train(c, data=data, progress=False, hooks=[hook])
    assert out.status == "done"
    rows = {r["iteration"]: r for r in out.rows}
    assert all(np.isfinite(rows[t][k]) for t in (0, 2, 5) for k in
               ("lambda_K_1", "lambda_H_1", "g_over_g5", "gamma_norm", "val_acc"))
    checked = 0
    for t, after in _SNAP.at_measure.items():
        if t == 0:
            continue
        before = _SNAP.after_step[t]  # state after step t, i.e. theta_t, before measuring
        assert any("running_mean" in k for k in before)
        for k in before:
            assert torch.equal(before[k], after[k]), (t, k)
        checked += 1
    assert checked == 3
    plain = recorder.train(c.replace(metrics=("train",)), data=data, progress=False, hooks=[hook])
    final = _SNAP.after_step[plain.iterations]
    for k, v in final.items():
        assert torch.equal(v, _SNAP.at_measure[max(_SNAP.at_measure)][k]), k


def test_gamma_norm_is_the_last_bn_scale():
    c = _bn_config(metrics=("gamma_norm",), measure_at=(0,), max_iters=1, max_epochs=None)
    out = recorder.train(c, data=recorder.load_run_data(c), progress=False)
    hidden = c.model_kwargs["hidden"]
    assert out.rows[0]["gamma_norm"] == pytest.approx(math.sqrt(hidden))  # Keras init: gamma = 1


def test_a_diverging_run_is_recorded_and_labelled(tmp_path):
    s = bn_settings.settings("smoke")
    plain = bn_runs.sweeps(s)[1]
    c = plain.configs[0].replace(lr=1e4, n_train=256)
    df = sweeps.sweep([c], store=tmp_path, progress=False)
    assert (df["status"] == "diverged").all()
    sw = common.Sweep("plain_eta", "x", "lr", "", [c], [1e4])
    t = common.tidy(df, sw)
    table = bn_analysis.run_table(t)
    it = int(table["diverged_at"].iloc[0])
    assert table["status"].iloc[0] == "diverged" and it >= 0
    assert bn_figures.legend_labels(t)[1e4] == f"η = 10000 (diverged at iteration {it})"


# ----------------------------------------------------------------------------- analysis


def test_smoothed_stats_after_transient_and_raw_beside():
    it = np.arange(8) * 10
    v = np.array([9.0, 5.0, 2.0, 3.0, 4.0, 6.0, 5.0, 5.0])  # starts high, decays, rises again
    st = bn_analysis.smoothed_stats(it, v, window=3, after_transient=True)
    sm = np.array([7.0, 16 / 3, 10 / 3, 3.0, 13 / 3, 5.0, 16 / 3, 5.0])
    assert st["raw_max"] == 9.0 and st["start"] == pytest.approx(7.0)
    assert st["transient_end"] == 30 and st["max"] == pytest.approx(16 / 3) and st["argmax"] == 60
    assert st["min"] == pytest.approx(3.0)
    assert np.isnan(st["se"])
    e = np.full(8, 0.3)
    st = bn_analysis.smoothed_stats(it, v, window=3, after_transient=True, ses=e)
    assert st["se"] == pytest.approx(0.3 / math.sqrt(3))  # mean of 3 independent estimates
    np.testing.assert_allclose(bn_analysis.smoothed_stats(it, v, 3)["min"], sm.min())
    whole = bn_analysis.smoothed_stats(it, v, window=3)
    assert whole["max"] == pytest.approx(7.0) and whole["argmax"] == 0
    assert np.isnan(bn_analysis.smoothed_stats([], [], 3)["max"])


def test_pairwise_comparison_needs_a_difference_above_the_noise():
    assert bn_claims.compare(3.0, 1.0, 0.1, 0.1, +1)[0] == cl.HOLDS
    assert bn_claims.compare(3.0, 1.0, 0.1, 0.1, -1)[0] == cl.FAILS
    v, reason = bn_claims.compare(1.2, 1.0, 0.1, 0.1, +1)  # 0.2 < 1.96 * 0.141
    assert v == cl.UNTESTABLE and reason.startswith("within noise")
    v, reason = bn_claims.compare(1.04, 1.0, np.nan, np.nan, +1)  # no SE: 5% of the larger value
    assert v == cl.UNTESTABLE and "5% fallback" in reason
    assert bn_claims.compare(1.2, 1.0, np.nan, np.nan, +1)[0] == cl.HOLDS
    assert bn_claims.compare(np.nan, 1.0, 0.1, 0.1, +1)[0] == cl.UNTESTABLE


def _traj(sweep, value, peak_k=1.0, ratio=0.3, g5=2.0, lam_h=10.0, gamma_drop=0.0, rising=False,
          status="done", seed=0, n=10, noise=0.0):
    """A trajectory: lambda_K^1 starts at 5x peak_k and decays over the first measurements,
    then rises to peak_k (``rising``: rises from the start) and falls past it (the break-even
    point); ||gamma|| falls by gamma_drop early. lambda_K^1 and Tr(K) carry a 5% per-point
    bootstrap SE, as recorded runs do."""
    it = np.array([0, 5, 10, 20, 40, 60, 80, 100, 120, 140])[:n]
    rng = np.random.default_rng(abs(hash((sweep, value, seed))) % 2**32)
    k0 = 5 * peak_k
    rise = np.array([0.3, 0.4, 0.5, 0.7, 0.9, 1.0, 0.95, 0.85, 0.75, 0.7])[:n]
    kshape = peak_k * rise if rising else np.array(
        [k0, k0 * 0.5, k0 * 0.2, 0.4 * peak_k, 0.7 * peak_k, 1.0 * peak_k, 0.95 * peak_k, 0.9 * peak_k,
         0.85 * peak_k, 0.8 * peak_k])[:n]
    gamma = 10.0 * (1 - gamma_drop * np.minimum(it, 40) / 40)
    eps = 1 + noise * rng.standard_normal(n)
    return pd.DataFrame(dict(
        sweep=sweep, value=value, seed=seed, status=status, diverged_at=np.nan if status == "done" else 7,
        iteration=it, epoch=it / 30, train_acc=np.linspace(0.1, 0.6, n), val_acc=np.linspace(0.1, 0.5, n),
        lambda_K_1=kshape * eps, lambda_K_1_se=0.05 * kshape, lambda_K_ratio=ratio * rise * eps,
        trace_K=3 * kshape, trace_K_se=0.15 * kshape,
        lambda_H_1=lam_h * rise * eps, g_over_g5=g5 * rise * eps,
        gamma_norm=gamma if sweep != "plain_eta" else np.nan))


def _paper_like():
    """Sweeps that behave as the paper says (Sec. 4.3, App. H)."""
    parts = []
    for lr, k, r, g5, h, drop in ((0.001, 12.0, 0.343, 1.9, 80.0, 0.0), (0.01, 6.0, 0.4, 2.5, 40.0, 0.0),
                                   (0.1, 2.0, 0.5, 4.0, 15.0, 0.1), (1.0, 0.5, 0.6, 8.0, 2.0, 0.3)):
        parts.append(_traj("bn_eta", lr, k, r, g5, h, drop, rising=(lr == 0.001)))
    parts.append(_traj("plain_eta", 0.01, 3.3, 0.24, 2.0, np.nan, rising=True))
    parts.append(_traj("plain_eta", 1.0, 1.0, 0.2, 2.0, np.nan, status="diverged", n=2))
    for S, k, r, g5 in ((10, 2.0, 0.15, 1.5), (32, 3.0, 0.5, 5.0), (128, 6.0, 0.3, 2.5),
                        (512, 9.0, 0.2, 2.0)):
        parts.append(_traj("bn_S", S, k, r, g5, 40.0 * S / 128))
    return pd.concat(parts, ignore_index=True)


def _verdicts(rows):
    return {r.claim: r.verdict for r in rows}


def test_claims_hold_on_paper_like_runs():
    s = bn_settings.settings("cpu", lambda_H_S=True)
    rows = bn_claims.claims(_paper_like(), s)
    v = _verdicts(rows)
    assert len(rows) == 15
    bad = {c: x for c, x in v.items() if x != "holds"}
    assert not bad, bad
    for r in rows:
        assert r.verdict in cl.VERDICTS and r.paper == "break_even"
    # lambda_H^1 not measured over S (the cpu profile's budget): not testable, said why
    h = next(r for r in bn_claims.claims(_paper_like(), bn_settings.settings("cpu"))
             if r.claim == "Conj. 1: max lambda_H^1 of SimpleCNN-BN increases with S")
    assert h.verdict == "not testable at this scale" and "lambda_H_S=False" in h.reason
    k = next(r for r in rows if r.claim.startswith("max lambda_K^1: SimpleCNN-BN"))
    assert k.paper_value == "12.05 vs 3.3"
    g5 = next(r for r in rows if r.claim.startswith("||g||/||g_5||"))
    assert g5.paper_value == "max 1.90 (min 1.37) vs max 2.02 (min 1.09)" and "per setting" in g5.setting


def test_claims_fail_when_reversed():
    df = _paper_like()
    bn_eta = df["sweep"] == "bn_eta"
    flip = {0.001: 1.0, 0.01: 0.1, 0.1: 0.01, 1.0: 0.001}
    df.loc[bn_eta, "value"] = df.loc[bn_eta, "value"].map(flip)  # eta ordering reversed
    v = _verdicts(bn_claims.claims(df, bn_settings.settings("cpu")))
    assert v["Conj. 1: max lambda_K^1 of SimpleCNN-BN decreases with eta"] == "does not hold"
    assert v["Conj. 2: max lambda_K^*/lambda_K^1 of SimpleCNN-BN increases with eta"] == "does not hold"
    gamma = next(c for c in v if c.startswith("eta=1.0 and eta=0.1 initially decrease"))
    assert v[gamma] == "does not hold"


def test_s10_exception_and_within_noise():
    df = _paper_like()
    s = bn_settings.settings("cpu")
    rows = bn_claims.claims(df, s)
    s10 = next(r for r in rows if r.claim.startswith("S=10 is the exception"))
    assert s10.verdict == "holds"
    # S=10 as large as S=32: not smaller -> does not hold
    m = (df["sweep"] == "bn_S") & (df["value"] == 10)
    df.loc[m, "g_over_g5"] *= 5.0 / 3.0
    df.loc[m, "lambda_K_ratio"] *= 0.5 / 0.35 * 1.2
    s10 = next(r for r in bn_claims.claims(df, s) if r.claim.startswith("S=10 is the exception"))
    assert s10.verdict == "does not hold"


def test_maxima_exclude_diverged_runs_and_use_seed_se():
    df = pd.concat([_traj("bn_eta", 0.1, 2.0, seed=0), _traj("bn_eta", 0.1, 2.4, seed=1),
                    _traj("bn_eta", 1.0, 1.0, status="diverged", n=3)], ignore_index=True)
    mx = bn_analysis.maxima(df, 3).set_index("value")
    assert mx.loc[1.0, "n_seeds"] == 0 and mx.loc[1.0, "n_diverged"] == 1
    assert np.isnan(mx.loc[1.0, "max_lambda_K_1"])
    stats = bn_analysis.smoothed_stats
    a = stats(df["iteration"][:10], df["lambda_K_1"][:10], 3, after_transient=True)["max"]
    b = stats(df["iteration"][10:20], df["lambda_K_1"][10:20], 3, after_transient=True)["max"]
    assert mx.loc[0.1, "max_lambda_K_1"] == pytest.approx((a + b) / 2)
    assert mx.loc[0.1, "se_lambda_K_1"] == pytest.approx(abs(a - b) / 2)  # SD/sqrt(2) of two seeds


def test_one_seed_lambda_H_margin_is_the_lanczos_bound_as_in_notebooks_1_2():
    df = _traj("bn_eta", 0.1, lam_h=40.0)
    mx = bn_analysis.maxima(df, 3).set_index("value")
    assert np.isnan(mx.loc[0.1, "se_lambda_H_1"])  # no solver tolerance recorded: no bound
    df["hessian_tol"] = 1e-2
    mx = bn_analysis.maxima(df, 3).set_index("value")
    assert mx.loc[0.1, "se_lambda_H_1"] == pytest.approx(1e-2 * mx.loc[0.1, "max_lambda_H_1"])
    assert np.isnan(mx.loc[0.1, "se_g_over_g5"])  # only Hessian eigenvalues get the bound
    # the two-point comparison is claims.ordering_steps' step: same margins, same outcomes
    assert bn_claims.compare(10.0, 9.0, 0.2, 0.2, +1)[0] == "holds"  # 1.0 > 1.96 * 0.283
    assert bn_claims.compare(10.0, 9.7, 0.2, 0.2, +1)[0] == "not testable at this scale"
    assert bn_claims.compare(9.0, 10.0, np.nan, 0.2, +1)[0] == "does not hold"  # 5% fallback: 0.5


def test_paper_values_carry_their_sentences():
    for value, quote in bn_settings.PAPER_VALUES.values():
        assert isinstance(value, float) and quote.startswith("Sec. 4.")
    assert bn_settings.PAPER_VALUES["g_over_g5_max_bn_0.001"][0] == 1.90
    assert "1.90 (1.37) and 2.02 (1.09)" in bn_settings.PAPER_VALUES["g_over_g5_max_bn_0.001"][1]


def test_claims_table_saves_and_loads(tmp_path):
    rows = bn_claims.claims(_paper_like(), bn_settings.settings("cpu"))
    cl.save_claims(rows, tmp_path)
    assert cl.load_claims(tmp_path) == rows


def test_panel_draws_diverged_label():
    df = _paper_like()
    fig, ax = plt.subplots()
    bn_figures.panel(ax, df[df["sweep"] == "plain_eta"], "lambda_K_1")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "η = 1 (diverged at iteration 7)" in texts and "η = 0.01" in texts
    fig2, ax2 = plt.subplots()
    bn_figures.panel(ax2, df[df["sweep"] == "plain_eta"], "gamma_norm")
    assert ax2.texts[0].get_text() == "not measured"
    plt.close("all")


def test_non_finite_gradients_behind_K_are_a_clear_error():
    m, lf, x, y = problems.cnn_problem(n=48, bn=True)
    with torch.no_grad():
        m[0].weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="not finite"):
        gradient_covariance(m, lf, (x, y), L=4, M=8)


def test_a_run_whose_K_blows_up_is_recorded_as_diverged():
    """A state whose loss is still finite but whose mini-batch gradients overflow: the K
    measurement ends the run as diverged (before: eigh failed and the run 'failed')."""
    s = bn_settings.settings("smoke")
    c = bn_runs.sweeps(s)[1].configs[0].replace(lr=1e4, n_train=256)
    out = recorder.train(c, data=recorder.load_run_data(c), progress=False)
    assert out.status == "diverged" and out.diverged_at is not None


def test_comparison_figure_names_models_and_divergence():
    cmp, names = bn_figures.comparison(_paper_like(), bn_settings.settings("cpu"))
    assert list(dict.fromkeys(cmp["curve"])) == ["bn_low", "plain", "bn_high"]
    fig = bn_figures.figure([dict(d=cmp, y="lambda_K_1", hue="curve", names=names)], "t", "footer")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["SimpleCNN-BN, η = 0.001", "SimpleCNN, η = 0.01", "SimpleCNN-BN, η = 1"]
    assert any(t.get_text() == "footer" for t in fig.texts)
    plt.close("all")


def test_decay_within_noise_is_not_testable_never_a_failure():
    """Issue 20, item 3: eta=0.01's visible decay 2.46 -> 1.80 inside 1.96 SE made the row fail."""
    lrs = [0.001, 0.01, 0.1, 1.0]
    H, N, F = cl.HOLDS, cl.UNTESTABLE, cl.FAILS
    assert bn_claims.decay_verdict({0.001: N, 0.01: H, 0.1: H, 1.0: H}, lrs)[0] == H
    v, why = bn_claims.decay_verdict({0.001: N, 0.01: N, 0.1: H, 1.0: H}, lrs)
    assert v == N and why.startswith("within noise: the decay at eta=0.01")
    assert bn_claims.decay_verdict({0.001: H, 0.01: H, 0.1: H, 1.0: H}, lrs)[0] == F  # the smallest decays
    assert bn_claims.decay_verdict({0.001: N, 0.01: F, 0.1: H, 1.0: H}, lrs)[0] == F  # no decay at all
    assert bn_claims.decay_verdict({0.001: N, 0.01: None, 0.1: H, 1.0: H}, lrs)[0] == N
    # through claims(): eta=0.01 decays by less than its bootstrap SEs -> not testable, not "does not hold"
    df = _paper_like()
    m = (df["sweep"] == "bn_eta") & (df["value"] == 0.01)
    df.loc[m, "lambda_K_1_se"] = 50.0
    rows = bn_claims.claims(df, bn_settings.settings("cpu"))
    row = next(r for r in rows if "starts high and decays" in r.claim)
    assert row.verdict == N and "within noise" in row.reason


def test_divergence_row_needs_a_diverged_run():
    df = _paper_like()
    s = bn_settings.settings("cpu")
    assert bn_claims.divergence_claim(df, s).verdict == cl.HOLDS
    df.loc[df["sweep"] == "plain_eta", "status"] = "done"
    row = bn_claims.divergence_claim(df, s)
    assert row.verdict == cl.UNTESTABLE and "no divergence within" in row.reason


def test_runs_that_stop_before_the_break_even_point_are_not_testable():
    """Sec. 4.3 compares extremes over whole trajectories: a run cut while lambda_K^1 still
    rises gives 'not testable', never 'does not hold', and says which run and why."""
    df = _paper_like()
    cut = df["sweep"].isin(["bn_eta", "plain_eta"]) & (df["iteration"] > 60)
    rows = bn_claims.claims(df[~cut], bn_settings.settings("cpu"))
    for r in rows:
        if r.figure.startswith("Fig. 7") and r.claim.startswith(("max ", "||g||", "with eta")):
            assert r.verdict == "not testable at this scale", r.claim
            assert "stops before its break-even point" in r.reason and "SimpleCNN eta=0.01" in r.reason


def test_ranges_verdict_needs_a_gap_beyond_the_scatter():
    peaked = _traj("bn_eta", 0.1, 1.0)
    rng = np.random.default_rng(0)   # point noise 0.2 on both curves
    a, b = peaked.assign(g_over_g5=2.0 + 0.2 * rng.standard_normal(10)), peaked.copy()
    b["g_over_g5"] = 2.5 + 0.2 * rng.standard_normal(10)
    v, why = bn_claims.ranges_verdict(a, b, "g_over_g5", (1.8, 2.2), (2.3, 2.7), labels=("a", "b"), window=3)
    assert v == "not testable at this scale" and "within noise" in why
    v, why = bn_claims.ranges_verdict(a, b, "g_over_g5", (1.8, 2.2), (5.3, 5.7), labels=("a", "b"), window=3)
    assert v == "does not hold" and "disjoint" in why
    v, _ = bn_claims.ranges_verdict(a, b, "g_over_g5", (1.8, 2.2), (2.0, 2.7), labels=("a", "b"), window=3)
    assert v == "holds"


def test_gamma_decrease_is_judged_for_the_two_largest_eta_only():
    assert bn_claims.decrease_verdict({0.1: "holds", 1.0: "holds"})[0] == "holds"
    v, why = bn_claims.decrease_verdict({0.1: "not testable at this scale", 1.0: "holds"})
    assert v == "not testable at this scale" and "eta=0.1" in why
    v, why = bn_claims.decrease_verdict({0.1: "does not hold", 1.0: "holds"})
    assert v == "does not hold" and "never below" in why
    assert bn_claims.decrease_verdict({0.1: None, 1.0: "holds"})[0] == "not testable at this scale"
