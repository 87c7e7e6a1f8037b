"""Notebook 2's sweeps and verdicts (break-even paper Sec. 4.2, App. E-G), on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from breakeven_utils import conjectures as cj


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


def _verdicts(t):
    return t.groupby("sweep", sort=False)[[c for c in t if c.startswith("conj")]].first()


def test_orderings_hold_for_eta():
    t = cj.verdict_table(_table("simplecnn_eta", **GOOD_ETA))
    v = _verdicts(t).loc["simplecnn_eta"]
    assert (v == "holds").all(), v
    assert list(t["value"]) == [0.01, 0.05, 0.1]
    assert (t["n_seeds"] == 2).all()
    # seed mean of the maxima
    assert t.loc[t["value"] == 0.01, "max_lambda_K_1"].item() == pytest.approx(3.3 * 1.005)
    assert t.loc[t["value"] == 0.1, "train_acc_at_max_lambda_K_1"].item() == pytest.approx(0.6)
    # the paper's values where reported
    assert t.loc[t["value"] == 0.1, "paper_max_lambda_K_1"].item() == 0.68
    assert t.loc[t["value"] == 0.01, "paper_max_lambda_H_1"].item() == 211.17
    assert np.isnan(t.loc[t["value"] == 0.05, "paper_max_lambda_K_1"].item())


def test_orderings_reversed_fail_each_check():
    rev = {k: (v[::-1] if k != "values" else v) for k, v in GOOD_ETA.items()}
    v = _verdicts(cj.verdict_table(_table("simplecnn_eta", **rev))).loc["simplecnn_eta"]
    assert (v == "does not hold").all(), v


def test_non_monotone_fails():
    bad = dict(GOOD_ETA, k=[3.3, 0.5, 0.68])  # middle setting breaks the ordering
    v = _verdicts(cj.verdict_table(_table("x_eta", **bad))).loc["x_eta"]
    assert v["conj1_max_lambda_K_1"] == "does not hold"
    assert v["conj2_max_lambda_K_ratio"] == "holds"


def test_batch_size_direction_is_opposite():
    # larger S acts like smaller eta: max lambda_K^1 grows with S, ratio shrinks, Tr(K) grows
    good = dict(values=[10, 100, 300], k=[0.5, 1.0, 2.0], ratio=[0.4, 0.3, 0.2], trace=[5.56, 10.86, 12.0],
                h=[20.0, 50.0, 90.0])
    t = cj.verdict_table(_table("simplecnn_S", **good))
    assert (_verdicts(t).loc["simplecnn_S"] == "holds").all()
    assert t.loc[t["value"] == 10, "paper_max_trace_K"].item() == 5.56
    assert t.loc[t["value"] == 100, "paper_max_trace_K"].item() == 10.86
    # the same numbers read as an eta sweep are the wrong way round
    t2 = cj.verdict_table(_table("simplecnn_S", **good), param_of={"simplecnn_S": "lr"})
    assert (_verdicts(t2).loc["simplecnn_S"] == "does not hold").all()


def test_momentum_acts_like_larger_eta():
    good = dict(values=[0.1, 0.5, 0.9], k=[3.0, 2.0, 1.0], ratio=[0.2, 0.3, 0.4], trace=[9.0, 8.0, 7.0],
                h=[1.0, 2.0, 3.0])
    v = _verdicts(cj.verdict_table(_table("momentum_beta", **good))).loc["momentum_beta"]
    assert v["conj1_max_lambda_K_1"] == "holds"
    assert v["conj1_max_lambda_H_1"] == "does not hold"


def test_diverged_runs_excluded_and_named():
    t = _table("momentum_eta", values=[0.001, 0.01], k=[3.0, 1.0], ratio=[0.2, 0.3], trace=[9.0, 8.0],
               h=[5.0, 2.0])
    div = _traj("momentum_eta", 0.1, 0, 100.0, 0.0, 1e6, 1e6, status="diverged", n=3)
    out = cj.verdict_table(pd.concat([t, div], ignore_index=True))
    row = out[out["value"] == 0.1].iloc[0]
    assert row["n_seeds"] == 0 and row["n_diverged"] == 1 and np.isnan(row["max_lambda_K_1"])
    v = _verdicts(out).loc["momentum_eta"]
    assert v["conj1_max_lambda_K_1"] == "holds (diverged, excluded: eta=0.1)"


def test_not_testable_when_unmeasured_or_single_setting_or_no_growth():
    t = _table("decay_eta", **GOOD_ETA)
    t["lambda_H_1"] = np.nan
    v = _verdicts(cj.verdict_table(t)).loc["decay_eta"]
    assert v["conj1_max_lambda_H_1"] == "not testable at this scale (not measured at this profile)"
    assert v["conj1_max_lambda_K_1"] == "holds"
    one = _table("mlp_eta", values=[0.1], k=[1.0], ratio=[0.3], trace=[2.0], h=[3.0])
    assert _verdicts(cj.verdict_table(one)).loc["mlp_eta"].str.startswith("not testable").all()
    # every setting peaks at its first measurement: no growth, no test
    flat = _table("simplecnn_eta", **GOOD_ETA)
    flat.loc[flat["iteration"] == 0, "lambda_K_1"] = 50.0
    v = _verdicts(cj.verdict_table(flat)).loc["simplecnn_eta"]
    assert v["conj1_max_lambda_K_1"].startswith("not testable at this scale (maximum at the first")
    assert v["conj2_max_trace_K"] == "holds"


def test_ordering_helper():
    assert cj.ordering([0.1, 0.01, 0.05], [1.0, 3.0, 2.0], -1)
    assert not cj.ordering([0.1, 0.01, 0.05], [1.0, 3.0, 3.0], -1)  # ties do not count
    assert not cj.ordering([0.1], [1.0], -1)
    with pytest.raises(ValueError):
        cj.verdict_table(_table("unnamed", **GOOD_ETA))


# ----------------------------------------------------------------------------- configs


def test_profiles_define_sweeps():
    for profile in ("smoke", "cpu", "paper"):
        s = cj.settings(profile)
        sws = {sw.name: sw for sw in cj.sweeps(s)}
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
    smoke = cj.settings("smoke")
    assert "resnet32" in cj.skipped(smoke) and smoke["dataset"] == "synthetic"
    paper = cj.settings("paper")
    sws = {sw.name: sw for sw in cj.sweeps(paper)}
    assert 0.1 in sws["momentum_eta"].values  # diverges in the paper; recorded as diverged
    assert sws["decay_eta"].configs[0].milestones == (100,) and sws["decay_eta"].configs[0].max_epochs == 200
    assert len(paper["seeds"]) == 5 and paper["n_train"] == 45_000
    assert {"lstm_imdb", "bert_mnli", "densenet_imagenet"} <= set(cj.skipped(paper))
    cpu = {sw.name: sw for sw in cj.sweeps(cj.settings("cpu"))}
    assert cpu["simplecnn_eta"].configs[0].dataset == "cifar10"
    assert cpu["mlp_eta"].configs[0].dataset == "fashion_mnist"


def test_config_validation():
    with pytest.raises(ValueError):
        cj.settings("smoke", no_such_key=1)
    with pytest.raises(ValueError):
        cj.settings("nope")
    s = cj.settings("smoke", simple_cnn=dict(cj.settings("smoke")["simple_cnn"], lrs=["fast"]))
    with pytest.raises(ValueError):
        cj.sweeps(s)
    with pytest.raises(ValueError):
        cj.Sweep("x", "x", "dropout", "")
    with pytest.raises(ValueError):
        cj.Sweep("x", "x", "lr", "", configs=[1], values=[])


def test_tidy_selects_sweep_rows():
    s = cj.settings("smoke")
    sw = cj.sweeps(s)[0]
    keys = [c.key() for c in sw.configs]
    raw = pd.DataFrame({"key": keys + ["other"], "x": range(len(keys) + 1)})
    t = cj.tidy(raw, sw)
    assert list(t["key"]) == keys and list(t["value"]) == list(sw.values) and (t["sweep"] == sw.name).all()


def test_ordering_needs_more_than_noise_sized_steps():
    from breakeven_utils.conjectures import ordering

    assert ordering([32, 128, 512], [0.50, 0.60, 0.70], +1)
    # 0.7156 vs 0.7157: strictly increasing, but far inside the estimate's noise
    assert not ordering([32, 128, 512], [0.7156, 0.7157, 0.767], +1)
    assert ordering([32, 128, 512], [0.7156, 0.7157, 0.767], +1, rtol=0.0)
