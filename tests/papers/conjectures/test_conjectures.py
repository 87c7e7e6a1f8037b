"""Notebook 2's sweeps and verdicts (break-even paper Sec. 4.2, App. E-G), on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from breakeven_utils.papers import common
from breakeven_utils.papers.conjectures import analysis as cj_analysis
from breakeven_utils.papers.conjectures import claims as cj_claims
from breakeven_utils.papers.conjectures import runs as cj_runs
from breakeven_utils.papers.conjectures import settings as cj_settings


def _traj(sweep, value, seed, peak_k, ratio, trace, peak_h, status="done", n=6, acc_peak=0.6):
    """A trajectory rising to its maxima in the middle (not at the first measurement)."""
    shape = np.array([0.2, 0.5, 1.0, 0.8, 0.7, 0.6])[:n]
    acc = np.linspace(0.1, 0.9, n)
    acc[2] = acc_peak
    return pd.DataFrame(dict(
        sweep=sweep, value=value, seed=seed, status=status, iteration=np.arange(n) * 10,
        epoch=np.arange(n) * 0.5, train_acc=acc, lambda_K_1=peak_k * shape,
        lambda_K_ratio=ratio * shape, trace_K=trace * shape, lambda_H_1=peak_h * shape))


def _table(sweep, values, k, ratio, trace, h, seeds=(0, 1), **kw):
    return pd.concat([_traj(sweep, v, s, k[i] * (1 + 0.01 * s), ratio[i], trace[i], h[i], **kw)
                      for i, v in enumerate(values) for s in seeds], ignore_index=True)


# predicted for growing eta: max lambda_K^1 and lambda_H^1 down, ratio up, Tr(K) down
GOOD_ETA = dict(values=[0.01, 0.05, 0.1], k=[3.3, 1.5, 0.68], ratio=[0.24, 0.3, 0.37],
                trace=[9.0, 7.0, 5.0], h=[211.0, 80.0, 26.0])


def _verdicts(table, mx=None, **kw):
    """{quantity: verdict} of the one sweep of the trajectories ``table`` (conjectures.claims.claims;
    ``mx``: its maxima table, default analysis.setting_maxima(table))."""
    mx = cj_analysis.setting_maxima(table) if mx is None else mx
    cs = cj_claims.claims(mx, table, **kw)
    return {q: c.verdict for q, c in zip(cj_settings.QUANTITIES, cs)}, cs


def test_orderings_hold_for_eta():
    table = _table("simplecnn_eta", **GOOD_ETA)
    t = cj_analysis.setting_maxima(table)
    v, cs = _verdicts(table, t)
    assert set(v.values()) == {"holds"}, v
    assert list(t["value"]) == [0.01, 0.05, 0.1]
    assert (t["n_seeds"] == 2).all() and (t["window"] == cj_settings.WINDOW).all()
    # seed mean of the smoothed maxima (window 3 over 0.2, 0.5, 1.0, 0.8, ... x peak), raw beside
    assert t.loc[t["value"] == 0.01, "max_lambda_K_1"].item() == pytest.approx(3.3 * 1.005 * 2.5 / 3)
    assert t.loc[t["value"] == 0.01, "raw_max_lambda_K_1"].item() == pytest.approx(3.3 * 1.005)
    assert t.loc[t["value"] == 0.01, "max_lambda_K_1_se"].item() == pytest.approx(3.3 * 0.005 * 2.5 / 3)
    # training accuracy at the smoothed peak (index 3: (1.0 + 0.8 + 0.7) / 3 beats (0.5 + 1.0 + 0.8) / 3)
    assert t.loc[t["value"] == 0.1, "train_acc_at_max_lambda_K_1"].item() == pytest.approx(0.58)
    # one claim per predicted ordering, the paper's values from common.BREAK_EVEN_PAPER_VALUES
    assert [c.claim for c in cs] == [
        "Conjecture 1: the maximum lambda_K^1 is smaller for a larger eta",
        "Conjecture 1: the maximum lambda_H^1 is smaller for a larger eta",
        "Conjecture 2: the maximum lambda_K^*/lambda_K^1 is larger for a larger eta",
        "Conjecture 2: the maximum Tr(K) is smaller for a larger eta"]
    assert cs[0].paper_value == "eta=0.01: 3.3; eta=0.1: 0.68"
    assert cs[1].paper_value == "eta=0.01: 211.17; eta=0.1: 26.27" and cs[3].paper_value == ""
    assert cs[0].ours.startswith("eta=0.01: 2.76 ± 0.0138 (raw 3.32, mean of 2 seeds)")
    assert "margin: eta=0.01->eta=0.05" in cs[0].reason and "se: spread over 2, 2, 2 seeds" in cs[0].reason
    assert [(c.figure, c.figure_file) for c in cs] == [
        ("Fig. 4", "fig4_lambda_k_ratio.png"), ("Fig. 5", "fig5_lambda_h.png"),
        ("Fig. 4", "fig4_lambda_k_ratio.png"), ("Fig. 10", "fig10_simplecnn_eta_acc_trace_k.png")]
    assert "raw and smoothed (window 3)" in cs[0].setting


def test_orderings_reversed_fail_each_check():
    rev = {k: (v[::-1] if k != "values" else v) for k, v in GOOD_ETA.items()}
    v, _ = _verdicts(_table("simplecnn_eta", **rev))
    assert set(v.values()) == {"does not hold"}, v


def test_non_monotone_fails_and_noise_sized_steps_are_not_testable():
    bad = dict(GOOD_ETA, k=[3.3, 0.5, 0.68])  # middle setting breaks the ordering
    v, _ = _verdicts(_table("x_eta", **bad))
    assert v["max_lambda_K_1"] == "does not hold" and v["max_lambda_K_ratio"] == "holds"
    # seeds that scatter more than the settings differ: within noise, not "does not hold"
    t = _table("x_eta", **GOOD_ETA)
    t.loc[t["seed"] == 1, "lambda_K_1"] *= 10
    v, cs = _verdicts(t)
    assert v["max_lambda_K_1"] == "not testable at this scale" and cs[0].reason.startswith("within noise")
    assert "to decide: several seeds" not in cs[0].reason  # two seeds already: their spread is the margin


def test_one_seed_uses_bootstrap_se_where_recorded_else_a_stated_fallback():
    t = _table("simplecnn_eta", seeds=(0,), **GOOD_ETA)
    v, cs = _verdicts(t)
    # one seed, no SE recorded: every quantity's noise is the scatter of its own curve about its
    # moving average (never a bare 5% margin); on these peaked shapes that scatter is about 20%
    # of the value, so the 2.2x steps of lambda_K^1 and lambda_H^1 hold and the 25% steps of
    # the ratio and Tr(K) are within noise
    noisy = "not testable at this scale"
    assert v == {"max_lambda_K_1": "holds", "max_lambda_H_1": "holds",
                 "max_lambda_K_ratio": noisy, "max_trace_K": noisy}
    assert all("se: scatter of the raw curve" in c.reason and "margin 5%" not in c.reason for c in cs)
    # bootstrap SEs of the K metric: huge ones make the lambda_K^1 ordering untestable
    t["lambda_K_1_se"] = 5.0
    t["trace_K_se"] = 1e-3
    mx = cj_analysis.setting_maxima(t)
    assert set(mx["max_lambda_K_1_se_kind"]) == {"bootstrap over the L gradients"}
    assert mx["max_lambda_K_1_se"].iloc[0] == pytest.approx(5.0 / np.sqrt(3))
    v, cs = _verdicts(t, mx)
    assert v["max_lambda_K_1"] == "not testable at this scale" and v["max_trace_K"] == "holds"
    assert "se: bootstrap over the L gradients" in cs[3].reason
    # one seed inside the noise: the reason says what would decide it
    assert "to decide: several seeds" in cs[0].reason and "to decide" not in cs[3].reason


def test_batch_size_direction_is_opposite():
    # larger S acts like smaller eta: max lambda_K^1 grows with S, ratio shrinks, Tr(K) grows
    good = dict(values=[10, 100, 300], k=[0.5, 1.0, 2.0], ratio=[0.4, 0.3, 0.2], trace=[5.56, 10.86, 12.0],
                h=[20.0, 50.0, 90.0])
    t = _table("simplecnn_S", **good)
    v, cs = _verdicts(t)
    assert set(v.values()) == {"holds"}, v
    assert cs[3].paper_value == "S=10: 5.56; S=100: 10.86"
    assert cs[0].claim.endswith("is larger for a larger S")
    # the same numbers read as an eta sweep are the wrong way round
    v, _ = _verdicts(t, param_of={"simplecnn_S": "lr"})
    assert set(v.values()) == {"does not hold"}


def test_momentum_acts_like_larger_eta():
    good = dict(values=[0.1, 0.5, 0.9], k=[3.0, 2.0, 1.0], ratio=[0.2, 0.3, 0.4], trace=[9.0, 8.0, 7.0],
                h=[1.0, 2.0, 3.0])
    v, cs = _verdicts(_table("momentum_beta", **good))
    assert v["max_lambda_K_1"] == "holds" and v["max_lambda_H_1"] == "does not hold"
    assert cs[0].section == "App. F" and cs[0].figure == "Fig. 20"


def test_diverged_runs_excluded_and_named():
    t = _table("momentum_eta", values=[0.001, 0.01], k=[3.0, 1.0], ratio=[0.2, 0.3], trace=[9.0, 8.0],
               h=[5.0, 2.0])
    div = _traj("momentum_eta", 0.1, 0, 100.0, 0.0, 1e6, 1e6, status="diverged", n=3)
    both = pd.concat([t, div], ignore_index=True)
    out = cj_analysis.setting_maxima(both)
    row = out[out["value"] == 0.1].iloc[0]
    assert row["n_seeds"] == 0 and row["n_diverged"] == 1 and np.isnan(row["max_lambda_K_1"])
    v, cs = _verdicts(both, out)
    assert v["max_lambda_K_1"] == "holds"
    assert "excluded (diverged): eta=0.1" in cs[0].reason
    assert cs[0].ours.endswith("eta=0.1: diverged")


def test_not_testable_when_unmeasured_or_single_setting_or_no_growth():
    t = _table("decay_eta", **GOOD_ETA)
    t["lambda_H_1"] = np.nan
    v, cs = _verdicts(t)
    assert v["max_lambda_H_1"] == "not testable at this scale"
    assert cs[1].reason == "not measured at this profile"
    assert v["max_lambda_K_1"] == "holds"
    one = _table("mlp_eta", values=[0.1], k=[1.0], ratio=[0.3], trace=[2.0], h=[3.0])
    assert set(_verdicts(one)[0].values()) == {"not testable at this scale"}
    # every setting peaks at its first measurement: no growth, no test
    flat = _table("simplecnn_eta", **GOOD_ETA)
    # the shared first measurement is never a peak (issue 20): a huge value there changes nothing
    flat.loc[flat["iteration"] == 0, "lambda_K_1"] = 50.0
    v, cs = _verdicts(flat)
    assert v["max_lambda_K_1"] == "holds"
    assert "the first measurement (shared initial state) excluded from the maxima" in cs[0].reason
    # a curve still rising at its last measurement is a lower bound: no verdict if its rise could flip it
    rising = _table("simplecnn_eta", **GOOD_ETA)
    last = rising["iteration"] == rising["iteration"].max()
    rising.loc[last & (rising["value"] == 0.1), "lambda_K_1"] = 1.45  # below eta=0.05's 1.51, at its end
    v, cs = _verdicts(rising)
    assert v["max_lambda_K_1"] == "not testable at this scale" and "eta=0.1" in cs[0].reason
    assert "still rising" in cs[0].ours
    assert v["max_trace_K"] == "holds"
    with pytest.raises(ValueError, match="varied parameter"):
        _verdicts(_table("unnamed", **GOOD_ETA))


def _bn_traj(sweep, value, peak, seed=0):
    """A batch-normalised run: starts high (the transient), dips, then grows to ``peak``."""
    shape = np.array([3.0, 2.0, 1.0, 0.5, 0.6, 0.8, 1.0, 1.0, 0.9, 0.8])
    return pd.DataFrame(dict(
        sweep=sweep, value=value, seed=seed, status="done", iteration=np.arange(10) * 10,
        epoch=np.arange(10) * 0.25, train_acc=np.linspace(0.1, 0.7, 10), lambda_K_1=peak * shape,
        lambda_K_1_se=0.02 * peak * shape,
        lambda_K_ratio=0.1, trace_K=peak * shape, lambda_H_1=np.nan, model="resnet32", model_kwargs="{}"))


def test_batch_normalised_maxima_are_taken_after_the_initial_transient():
    t = pd.concat([_bn_traj("resnet32_eta", v, p) for v, p in ((0.01, 3.0), (0.05, 2.0), (0.1, 1.0))],
                  ignore_index=True)
    mx = cj_analysis.setting_maxima(t)
    assert mx["after_transient"].all()
    # smoothed (window 3) after the dip at index 3: largest (1 + 1 + 0.9) / 3 x peak, at index 7
    assert mx["max_lambda_K_1"].tolist() == pytest.approx([3 * 2.9 / 3, 2 * 2.9 / 3, 1 * 2.9 / 3])
    assert mx["raw_max_lambda_K_1"].tolist() == pytest.approx([3.0, 2.0, 1.0])  # raw, after the transient
    assert not mx["max_lambda_K_1_at_start"].any()
    v, cs = _verdicts(t, mx)
    assert v["max_lambda_K_1"] == "holds" and "and the initial transient" in cs[0].setting
    assert "and the initial transient excluded from the maxima" in cs[0].reason
    # the same runs without the transient rule: the maxima sit in the transient (index 1)
    v, cs = _verdicts(t, cj_analysis.setting_maxima(t, after_transient=()))
    assert "(raw 6)" in cs[0].ours  # eta=0.01's raw peak is the transient's 2.0 x 3, not the later 3.0
    bn = cj_analysis.batch_normalised
    assert bn("resnet32", "{}") and not bn("resnet32", {"bn": False})
    assert bn("simple_cnn", '{"bn": true}') and not bn("mlp")


# ----------------------------------------------------------------------------- configs


def test_profiles_define_sweeps():
    for profile in ("smoke", "cpu", "paper"):
        s = cj_settings.settings(profile)
        sws = {sw.name: sw for sw in cj_runs.sweeps(s)}
        for name in ("simplecnn_eta", "simplecnn_S", "mlp_eta", "momentum_beta", "momentum_eta", "decay_eta"):
            assert name in sws, (profile, name)
        assert len(set(sws["simplecnn_eta"].values)) >= 3 and len(set(sws["simplecnn_S"].values)) >= 3
        for c in sws["simplecnn_eta"].configs:  # vary eta: K with M = S
            assert c.K_M == c.batch_size == s["simple_cnn"]["batch_for_eta"]
            assert "K" in c.metrics and "val" in c.metrics
            assert c.acc_thresholds == (s["acc_threshold"],)
        for c in sws["simplecnn_S"].configs:  # vary S: K with M = 128 (K_M)
            assert c.K_M == s["K_M"] and c.lr == s["simple_cnn"]["lr_for_S"]
        for c in sws["mlp_eta"].configs:
            assert c.model == "mlp" and c.normalize == "unit" and c.batch_size == 64
        for c in sws["decay_eta"].configs:
            assert c.schedule == "step" and c.milestones == (s["decay"]["decay_epoch"],) and c.gamma == 0.1
        assert {c.momentum for c in sws["momentum_beta"].configs} == {0.1, 0.5, 0.9}
        assert {c.momentum for c in sws["momentum_eta"].configs} == {0.9}
        assert all("lambda_H" not in c.metrics for c in sws["momentum_beta"].configs)
        if "resnet32_eta" in sws:
            for c in sws["resnet32_eta"].configs + sws["resnet32_S"].configs:
                assert c.model == "resnet32" and c.augment and c.weight_decay == 1e-4
                assert c.weight_decay_on == "conv_kernels"


def test_profile_specifics():
    smoke = cj_settings.settings("smoke")
    assert "resnet32" in cj_runs.skipped(smoke) and smoke["dataset"] == "synthetic"
    paper = cj_settings.settings("paper")
    sws = {sw.name: sw for sw in cj_runs.sweeps(paper)}
    assert 0.1 in sws["momentum_eta"].values  # diverges in the paper; recorded as diverged
    assert sws["decay_eta"].configs[0].milestones == (100,) and sws["decay_eta"].configs[0].max_epochs == 200
    assert len(paper["seeds"]) == 5 and paper["n_train"] == 45_000
    assert {"lstm_imdb", "bert_mnli", "densenet_imagenet"} <= set(cj_runs.skipped(paper))
    cpu = {sw.name: sw for sw in cj_runs.sweeps(cj_settings.settings("cpu"))}
    assert cpu["simplecnn_eta"].configs[0].dataset == "cifar10"
    assert cpu["mlp_eta"].configs[0].dataset == "fashion_mnist"
    # ResNet-32 is skipped at cpu, with the reason; the paper profile runs it
    assert "resnet32_eta" not in cpu and "resnet32" in cj_runs.skipped(cj_settings.settings("cpu"))
    assert "lambda_K^1 peak" in cj_runs.skipped(cj_settings.settings("cpu"))["resnet32"]
    assert "resnet32_eta" in sws


def test_config_validation():
    with pytest.raises(ValueError):
        cj_settings.settings("smoke", no_such_key=1)
    with pytest.raises(ValueError):
        cj_settings.settings("nope")
    s = cj_settings.settings("smoke",
                             simple_cnn=dict(cj_settings.settings("smoke")["simple_cnn"], lrs=["fast"]))
    with pytest.raises(ValueError):
        cj_runs.sweeps(s)
    with pytest.raises(ValueError):
        common.Sweep("x", "x", "dropout", "")
    with pytest.raises(ValueError):
        common.Sweep("x", "x", "lr", "", configs=[1], values=[])


def test_tidy_selects_sweep_rows():
    s = cj_settings.settings("smoke")
    sw = cj_runs.sweeps(s)[0]
    keys = [c.key() for c in sw.configs]
    raw = pd.DataFrame({"key": keys + ["other"], "x": range(len(keys) + 1)})
    t = common.tidy(raw, sw)
    assert list(t["key"]) == keys and list(t["value"]) == list(sw.values) and (t["sweep"] == sw.name).all()


def test_a_skipped_family_keeps_its_claims_as_not_testable_with_the_reason():
    rows = cj_claims.skipped_claims({"resnet32": "too slow on a CPU", "lstm": "no IMDB offline"})
    assert len(rows) == 2 * len(cj_settings.QUANTITIES)  # resnet32_eta and resnet32_S; lstm has no sweep
    assert {r.verdict for r in rows} == {"not testable at this scale"}
    assert all("not run at this profile: too slow on a CPU" in r.reason and r.quote for r in rows)
    assert rows[0].claim == "Conjecture 1: the maximum lambda_K^1 is smaller for a larger eta"
    assert rows[4].claim == "Conjecture 1: the maximum lambda_K^1 is larger for a larger S"
