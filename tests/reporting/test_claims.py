"""The claims ledger and the shared verdict rules (claims.py), on known answers."""

import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from breakeven_utils.reporting import claims as C

# ----------------------------------------------------------------------------- the record


def _claim(**kw):
    base = dict(paper="break_even", section="4.2", figure="Fig. 4", claim="max lambda_K^1 falls with eta",
                setting="SimpleCNN, vary eta", paper_value=3.3, ours=2.71828, verdict=True,
                quote='Sec. 4.2: "the maximum falls"')
    base.update(kw)
    return C.Claim(**base)


def test_claim_normalises_verdicts_and_formats_numbers():
    assert _claim(verdict=True).verdict == "holds"
    assert _claim(verdict=np.bool_(False)).verdict == "does not hold"
    c = _claim(verdict=None, reason="no run reached the threshold")
    assert (c.verdict, c.reason) == ("not testable at this scale", "no run reached the threshold")
    c = _claim(verdict="not testable at this scale (within noise)")
    assert (c.verdict, c.reason) == ("not testable at this scale", "within noise")
    c = _claim(paper_value={"eta=0.1": 0.68, "eta=0.01": 3.3}, ours=float("nan"))
    assert c.paper_value == "eta=0.1 = 0.68, eta=0.01 = 3.3" and c.ours == ""
    assert _claim().ours == "2.72"
    assert _claim(ours="2.718 +- 0.1").ours == "2.718 +- 0.1"
    assert _claim(paper="walk").paper_title.startswith("A Walk with SGD")
    assert set(C.PAPERS) == {"break_even", "sharpest", "walk"}


@pytest.mark.parametrize("kw, match", [
    (dict(paper="breakeven"), "paper must be one of"),
    (dict(verdict="holds mostly"), "verdict must be one of"),
    (dict(verdict=None), "needs a reason"),
    (dict(verdict="not testable at this scale", reason="  "), "needs a reason"),
    (dict(claim=" "), "non-empty"),
])
def test_claim_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        _claim(**kw)


def test_no_verdict_is_decided_at_smoke_and_the_rules_outcome_is_kept_in_the_reason():
    cs = [_claim(verdict=False, reason="eta=0.1 below eta=0.01 beyond 1.96 SE"), _claim(verdict=True),
          _claim(verdict=None, reason="within noise")]
    smoke = C.at_profile(cs, "smoke")
    assert [c.verdict for c in smoke] == [C.UNTESTABLE] * 3
    assert smoke[0].reason.startswith("the smoke profile trains tiny models on synthetic data")
    assert smoke[0].reason.endswith("the rule gave 'does not hold' (eta=0.1 below eta=0.01 beyond 1.96 SE)")
    assert smoke[1].reason.endswith("the rule gave 'holds'") and smoke[1].claim == cs[1].claim
    assert C.at_profile(cs, "cpu") == cs and C.at_profile(cs, "paper") == cs


def test_save_and_load_roundtrip(tmp_path):
    cs = [_claim(), _claim(paper="sharpest", section="3", figure="Table 1", claim="a | pipe",
                           verdict=None, reason="within noise", figure_file="fig1.png")]
    paths = C.save_claims(cs, tmp_path / "out")
    assert [p.name for p in paths] == ["claims.csv", "claims.md"]
    full = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    assert list(full.columns) == list(C.FIELDS)
    md = paths[1].read_text().splitlines()
    assert [h.strip() for h in md[0].strip("|").split("|")] == [
        "claim", "paper says", "setting", "paper", "ours", "verdict", "reason"]
    assert "a \\| pipe" in md[3] and "within noise" in md[3] and len(md) == 4
    assert C.load_claims(paths[0]) == cs
    with pytest.raises(ValueError, match="without the paper's sentence"):
        C.save_claims([_claim(quote="")], tmp_path / "bare")
    assert not (tmp_path / "bare").exists()
    assert C.save_claims([_claim(quote="")], tmp_path / "bare", require_quote=False)
    assert C.load_claims(tmp_path / "out") == cs
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp")]
    assert C.verdict_counts(cs) == {"holds": 1, "does not hold": 0, "not testable at this scale": 1}
    assert list(C.compact_table(cs)["paper"]) == ["3.3", "3.3"]


# ----------------------------------------------------------------------------- smoothing


def test_smooth_is_the_centred_nan_aware_mean():
    v = np.array([1.0, 2.0, np.nan, 4.0, 8.0, 16.0, 3.0])
    for w in (1, 2, 3, 4, 5):
        out = C.smooth(v, w)
        for i in range(len(v)):
            win = v[max(0, i - (w - 1) // 2): i + w // 2 + 1]
            exp = np.nanmean(win) if np.isfinite(win).any() else np.nan
            assert out[i] == pytest.approx(exp, nan_ok=True)
    np.testing.assert_array_equal(C.smooth([np.nan, np.nan, 1.0, np.inf], 3), [np.nan, 1.0, 1.0, 1.0])
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            C.smooth(v, bad)


V_CURVE = [10.0, 8.0, 6.0, 4.0, 2.0, 4.0, 6.0, 8.0, 7.0, 6.0]  # BN-like: decays, rises, falls


def test_transient_end_on_synthetic_curves():
    # window 3 smooths V_CURVE to 9, 8, 6, 4, 3.33, 4, 6, 7, 7, 6.5: first local minimum at 4
    assert C.transient_end(V_CURVE, 3) == 4
    assert C.transient_end(np.arange(10.0), 3) == 0          # monotone rise: no transient
    assert C.transient_end(np.arange(10.0)[::-1], 3) == 9    # monotone decay: all transient
    assert C.transient_end([3.0, 3.0, 3.0, 5.0], 1) == 0     # flat start is not a decrease
    assert C.transient_end([np.nan] + V_CURVE, 3) == 5       # leading NaN shifts the index
    assert C.transient_end([1.0], 3) == 0 and C.transient_end([], 3) == 0
    # exp decay + linear rise: the continuous minimum of 10 exp(-t/3) + 0.5 t is at
    # t = 3 ln(20/3) = 5.69; sampled at integers the smallest value is at t = 6
    t = np.arange(40.0)
    clean = 10 * np.exp(-t / 3) + 0.5 * t
    assert int(np.argmin(clean)) == 6 and C.transient_end(clean, 5) == 6


def test_transient_end_with_noise_stays_near_the_true_minimum():
    # noise sd 0.3 against a curve whose slope is ~2/step early and 0.5/step late:
    # the window-5 smoothing plus the +-2 neighbourhood keep the end within 2 steps of 6
    t = np.arange(40.0)
    clean = 10 * np.exp(-t / 3) + 0.5 * t
    ends = [C.transient_end(clean + np.random.default_rng(s).normal(0, 0.3, t.size), 5) for s in range(50)]
    assert max(abs(e - 6) for e in ends) <= 2, ends
    # a noisy monotone rise mostly has no transient, and never a late one
    rises = [C.transient_end(t + np.random.default_rng(s).normal(0, 0.3, t.size), 5) for s in range(50)]
    assert max(rises) <= 2 and np.mean(np.array(rises) == 0) > 0.5


def test_smoothed_max_whole_curve_and_after_transient():
    m = C.smoothed_max(V_CURVE, 3)
    assert (m.value, m.index, m.raw_value, m.raw_index, m.start, m.at_start) == (9.0, 0, 10.0, 0, 0, True)
    m = C.smoothed_max(V_CURVE, 3, after_transient=True)
    assert m.start == 4 and m.index == 7 and m.value == pytest.approx(7.0)
    assert (m.raw_value, m.raw_index, m.at_start) == (8.0, 7, False)
    # the smoothed max of a curve decaying to its end after the transient sits at its start
    m = C.smoothed_max(np.arange(10.0)[::-1], 3, after_transient=True)
    assert m.at_start and m.index == 9
    # se of the window mean of independent points: sqrt(sum se^2) / n
    m = C.smoothed_max(V_CURVE, 3, after_transient=True, ses=np.arange(1.0, 11.0))
    assert m.se == pytest.approx(math.sqrt(7**2 + 8**2 + 9**2) / 3) and m.raw_se == 8.0
    m = C.smoothed_max([1.0, np.nan, 5.0, 2.0], 3, ses=[1.0, np.nan, 2.0, 2.0])  # NaN value skipped
    assert m.index == 2 and m.value == pytest.approx(3.5) and m.se == pytest.approx(math.sqrt(8) / 2)
    m = C.smoothed_max([np.nan, np.nan], 3)
    assert math.isnan(m.value) and m.index == -1


# ----------------------------------------------------------------------------- orderings


def test_ordering_holds_only_beyond_the_combined_uncertainty():
    # unsorted input; sorted: eta 0.01 -> 3.0 (se 0.4), 0.05 -> 2.0 (0.3), 0.1 -> 1.0 (0.3);
    # margins 1.96 * sqrt(0.4^2 + 0.3^2) = 0.98 and 1.96 * sqrt(0.3^2 + 0.3^2) = 0.83
    o = C.ordering_verdict([0.1, 0.01, 0.05], [1.0, 3.0, 2.0], [0.3, 0.4, 0.3], sign=-1, symbol="eta")
    assert o.verdict == "holds"
    steps = C.ordering_steps([0.1, 0.01, 0.05], [1.0, 3.0, 2.0], [0.3, 0.4, 0.3], sign=-1)
    assert list(steps["setting_a"]) == [0.01, 0.05]
    np.testing.assert_allclose(steps["margin"], [1.96 * 0.5, 1.96 * math.hypot(0.3, 0.3)])
    np.testing.assert_allclose(steps["step"], [1.0, 1.0])
    assert list(steps["outcome"]) == ["as predicted", "as predicted"]


def test_ordering_verdicts():
    x = [0.01, 0.05, 0.1]
    o = C.ordering_verdict(x, [3.0, 2.0, 1.0], [0.1, 0.1, 0.1], -1, symbol="eta")
    assert o.verdict == "holds" and o.reason == ""
    assert "eta=0.01->eta=0.05: 0.277 (1.96 se)" in o.margin
    # second step 0.2 < 1.96 * sqrt(2) * 0.1 = 0.277: inside the noise, not a failure
    o = C.ordering_verdict(x, [3.0, 1.2, 1.0], [0.1, 0.1, 0.1], -1, symbol="eta")
    assert o.verdict == "not testable at this scale" and o.reason.startswith("within noise")
    assert "eta=0.05 -> eta=0.1" in o.reason
    # a step against the prediction beyond the noise fails, whatever the other steps do
    o = C.ordering_verdict(x, [3.0, 1.2, 1.0], [0.1, 0.1, 0.1], +1, symbol="eta")
    assert o.verdict == "does not hold" and "against" in o.reason
    # a step of exactly the margin is not beyond it
    m = 1.96 * math.hypot(0.3, 0.4)
    assert C.ordering_verdict([1, 2], [0.0, m], [0.3, 0.4], +1).verdict == "not testable at this scale"
    assert C.ordering_verdict([1, 2], [0.0, m * 1.001], [0.3, 0.4], +1).verdict == "holds"
    # z is the caller's: z = 1 makes the same step significant
    assert C.ordering_verdict(x, [3.0, 1.2, 1.0], [0.1, 0.1, 0.1], -1, z=1.0).verdict == "holds"


def test_ordering_without_standard_errors_uses_the_stated_relative_margin():
    o = C.ordering_verdict([1, 2, 3], [1.0, 1.1, 1.2], None, +1)
    assert o.verdict == "holds" and "5% of the larger value" in o.reason
    o = C.ordering_verdict([1, 2, 3], [1.0, 1.04, 1.2], None, +1)
    assert o.verdict == "not testable at this scale" and "within noise" in o.reason
    # mixed: the step with both se uses them, the other the 5% rule
    s = C.ordering_steps([1, 2, 3], [1.0, 2.0, 2.05], [0.1, 0.1, np.nan], +1)
    assert list(s["margin_kind"]) == ["se", "relative"]
    assert s["margin"].iloc[1] == pytest.approx(0.05 * 2.05)


def test_ordering_excludes_diverged_settings_and_needs_two():
    o = C.ordering_verdict([0.01, 0.1, 1.0], [3.0, 1.0, np.nan], [0.1, 0.1, np.nan], -1, symbol="eta")
    assert o.verdict == "holds" and "eta=1" in o.reason and "excluded" in o.reason
    o = C.ordering_verdict([0.01, 0.1], [3.0, np.nan], [0.1, 0.1], -1, symbol="eta")
    assert o.verdict == "not testable at this scale" and "1 setting(s)" in o.reason and "eta=0.1" in o.reason
    with pytest.raises(ValueError, match="sign"):
        C.ordering_verdict([1, 2], [1.0, 2.0], None, 0)
    with pytest.raises(ValueError, match="distinct"):
        C.ordering_verdict([1, 1], [1.0, 2.0], None, 1)
    with pytest.raises(ValueError, match="shape"):
        C.ordering_verdict([1, 2], [1.0, 2.0, 3.0], None, 1)


def test_mean_se():
    assert C.mean_se([1.0, 2.0, 3.0, np.nan]) == (2.0, pytest.approx(1 / math.sqrt(3)), 3)
    m, se, n = C.mean_se([4.0])
    assert (m, n) == (4.0, 1) and math.isnan(se)


# ----------------------------------------------------------------------------- bootstrap


def test_resampled_gram_equals_the_gram_of_resampled_gradients():
    rng = np.random.default_rng(0)
    L, D = 7, 30
    G = rng.normal(size=(L, D)) + 3.0  # non-zero mean: centring matters
    Cc = G - G.mean(0)
    idx = rng.integers(0, L, size=(20, L))
    for gram in (Cc @ Cc.T / L, G @ G.T / L):  # the centred or the uncentred Gram
        got = C.resampled_grams(gram, idx)
        for b, r in enumerate(idx):
            Gs = G[r]
            Cs = Gs - Gs.mean(0)
            np.testing.assert_allclose(got[b], Cs @ Cs.T / L, atol=1e-10)
            np.testing.assert_allclose(np.linalg.eigvalsh(got[b]), np.linalg.eigvalsh(Cs @ Cs.T / L),
                                       atol=1e-10)


def test_bootstrap_converges_to_the_exact_bootstrap_distribution():
    # L = 3: all 27 resamples enumerated give the exact bootstrap SE of Tr(K*)
    rng = np.random.default_rng(1)
    G = rng.normal(size=(3, 5))
    gram = G @ G.T / 3
    all_idx = np.array(np.meshgrid(*[range(3)] * 3, indexing="ij")).reshape(3, -1).T
    tr = np.trace(C.resampled_grams(gram, all_idx), axis1=1, axis2=2)
    exact = math.sqrt(np.mean((tr - tr.mean()) ** 2))
    assert C.bootstrap_se(gram, "trace", n_boot=40000, seed=0) == pytest.approx(exact, rel=0.02)


def _gaussian_grams(sig, L, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        G = rng.normal(size=(L, len(sig))) * sig
        Cc = G - G.mean(0)
        yield Cc @ Cc.T / L


def test_bootstrap_se_of_trace_matches_the_analytic_se():
    # i.i.d. N(0, diag(sig^2)) gradients: L Tr(K^M) = sum_j sig_j^2 chi^2_{L-1} (independent),
    # so SE(Tr K^M) = sqrt(2 (L-1) sum_j sig_j^4) / L
    L, sig = 25, np.linspace(0.5, 2.0, 40)
    analytic = math.sqrt(2 * (L - 1) * np.sum(sig ** 4)) / L
    grams = list(_gaussian_grams(sig, L, 300, seed=1))
    mc = np.std([np.trace(g) for g in grams], ddof=1)
    assert mc == pytest.approx(analytic, rel=0.1)  # the formula itself
    boot = np.mean([C.bootstrap_se(g, "trace", n_boot=200, seed=k) for k, g in enumerate(grams[:60])])
    assert boot == pytest.approx(analytic, rel=0.15)


def test_bootstrap_se_of_lambda_1_matches_monte_carlo_for_an_outlier():
    # one direction (sd 6) stands out of a bulk (sd 0.5-2): the regime of Fig. 3's outliers
    L, sig = 25, np.linspace(0.5, 2.0, 40)
    sig[0] = 6.0
    grams = list(_gaussian_grams(sig, L, 300, seed=2))
    mc = np.std([np.linalg.eigvalsh(g)[-1] for g in grams], ddof=1)
    out = [C.bootstrap_se(g, ["lambda_1", "trace"], n_boot=200, seed=k) for k, g in enumerate(grams[:60])]
    assert np.mean([o["lambda_1"] for o in out]) == pytest.approx(mc, rel=0.15)


def test_bootstrap_of_the_ratio_is_wrong_hence_refused():
    # the measurement behind refusing "ratio": the bootstrap SE of lambda_K^*/lambda_K^1
    # (lambda_K^* = smallest non-zero eigenvalue of the resample) is several times the true SE
    L, sig = 25, np.linspace(0.5, 2.0, 40)
    sig[0] = 6.0
    grams = list(_gaussian_grams(sig, L, 200, seed=3))

    def ratio(g):
        ev = np.linalg.eigvalsh(g)[::-1]
        rank = int(np.sum(ev > 1e-9 * ev[0]))
        return ev[rank - 1] / ev[0]

    mc = np.std([ratio(g) for g in grams], ddof=1)
    boot = np.mean([C.bootstrap_se(g, ratio, n_boot=100, seed=k) for k, g in enumerate(grams[:20])])
    assert boot > 2 * mc
    with pytest.raises(ValueError, match="seeds"):
        C.bootstrap_se(grams[0], "ratio")


def test_bootstrap_se_input_checks():
    g = np.eye(3)
    for bad, match in ((np.ones((2, 3)), "square"), (np.full((3, 3), np.nan), "NaN")):
        with pytest.raises(ValueError, match=match):
            C.bootstrap_se(bad)
    with pytest.raises(ValueError, match="unknown statistic"):
        C.bootstrap_se(g, "lambda_2")
    with pytest.raises(ValueError, match="n_boot"):
        C.bootstrap_se(g, n_boot=1)
    assert C.bootstrap_se(g, seed=5) == C.bootstrap_se(torch.eye(3, dtype=torch.float64), seed=5)


def test_gradient_covariance_keeps_the_gram_for_the_bootstrap(one_thread):
    from breakeven_utils.curvature import gradient_noise as noise
    from tests.problems import cnn_problem

    m, lf, x, y = cnn_problem(n=40)
    plain = noise.gradient_covariance(m, lf, (x, y), L=8, M=5, seed=3)
    kept = noise.gradient_covariance(m, lf, (x, y), L=8, M=5, seed=3, keep_gram=True, per_example=True)
    assert plain.gram is None
    torch.testing.assert_close(kept.eigenvalues, plain.eigenvalues * 5)
    ev = torch.linalg.eigvalsh(kept.gram).flip(0)[:7]
    torch.testing.assert_close(ev, kept.eigenvalues)
    assert float(torch.trace(kept.gram)) == pytest.approx(kept.trace)
    se = kept.bootstrap_se(["lambda_1", "trace"], n_boot=50)
    assert se == C.bootstrap_se(kept.gram, ["lambda_1", "trace"], n_boot=50)
    assert se["lambda_1"] > 0 and se["trace"] > 0
    with pytest.raises(ValueError, match="keep_gram"):
        plain.bootstrap_se()


@pytest.mark.usefixtures("one_thread")
def test_k_metric_records_the_bootstrap_se_of_its_own_gram(monkeypatch):
    """The recorder's K metric writes lambda_K_1_se / trace_K_se: the bootstrap SE of the very
    Gram it measured (captured here), seeded by the measurement, so a rerun gives the same."""
    from breakeven_utils.recorder import RunConfig, metrics, train

    seen = []
    real = metrics.gradient_covariance

    def capture(*a, **kw):
        gc = real(*a, **kw)
        seen.append((gc, kw["seed"]))
        return gc

    monkeypatch.setattr(metrics, "gradient_covariance", capture)  # the name the K metric calls
    c = RunConfig(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
                  model_kwargs={"hidden": (16,)}, batch_size=32, lr=0.05, max_epochs=1, measure_every=4,
                  measure_dense_until=9, K_L=6, K_M=16, metrics=("train", "K"))
    out = train(c, progress=False)
    rows = [r for r in out.rows if "lambda_K_1" in r]
    assert len(rows) == len(seen) >= 3
    for r, (gc, seed) in zip(rows, seen):
        assert gc.gram is not None and r["lambda_K_1"] == pytest.approx(float(gc.lambda_1))
        want = C.bootstrap_se(gc.gram, ["lambda_1", "trace"], seed=seed)
        assert (r["lambda_K_1_se"], r["trace_K_se"]) == (want["lambda_1"], want["trace"])
        assert 0 < r["lambda_K_1_se"] < r["lambda_K_1"] and 0 < r["trace_K_se"] < r["trace_K"]
    again = train(c, progress=False)
    assert [r["lambda_K_1_se"] for r in again.rows if "lambda_K_1" in r] == [r["lambda_K_1_se"] for r in rows]


# ----------------------------------------------------------------------------- correlations


def test_correlation_needs_enough_points():
    x = np.arange(10.0)
    c = C.correlation(x, 2 * x + 1)
    assert c.r == pytest.approx(1.0) and c.n == 10 and c.testable and c.p < 1e-10
    assert C.correlation_verdict(c)[0] == "holds"
    c = C.correlation([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])   # r = 1 from 3 points
    assert c.r == pytest.approx(1.0) and not c.testable and "at least 8" in c.reason
    assert C.correlation_verdict(c) == ("not testable at this scale", c.reason)
    y = np.array([1.0, -1.0] * 5)
    c = C.correlation(x, y)            # r = -0.17 from 10 points: interval [-0.73, 0.52] reaches 0.5
    verdict, why = C.correlation_verdict(c)
    assert c.testable and verdict == "not testable at this scale" and "within noise" in why
    xl = np.arange(40.0)
    c = C.correlation(xl, np.array([1.0, -1.0] * 20))   # 40 points: interval below 0.5
    lo, hi = C.correlation_interval(c)
    assert lo < c.r < hi < 0.5
    assert C.correlation_verdict(c)[0] == "does not hold"
    assert C.correlation_verdict(c, r_min=0.7)[0] == "does not hold"
    from scipy import stats
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    b[3] = np.nan
    c = C.correlation(a, b)
    r, p = stats.pearsonr(np.delete(a, 3), np.delete(b, 3))
    assert (c.n, c.r, c.p) == (11, pytest.approx(r), pytest.approx(p))
    assert not C.correlation(x, np.ones(10)).testable


# ----------------------------------------------------------------------------- compare_peaks


def _hump(top, n=9, at=4):
    """A curve that starts at 1 (the shared initial state), peaks at ``top`` at index ``at``
    and falls again."""
    x = np.arange(n, dtype=float)
    return 1.0 + (top - 1.0) * np.exp(-0.5 * ((x - at) / 1.5) ** 2) * (x > 0)


def test_cite_and_absence_and_quote_field():
    assert C.cite("Sec. 4.2, Fig. 4", "  the  maximum\n falls ") == 'Sec. 4.2, Fig. 4: "the maximum falls"'
    with pytest.raises(ValueError):
        C.cite("", "text")
    a = C.Absence("walk", "5", "Fig. 9", "Tiny-ImageNet panel", C.cite("Sec. 5", "x"), "not offline")
    assert a.why == "not offline"
    with pytest.raises(ValueError):
        C.Absence("walk", "5", "Fig. 9", "Tiny-ImageNet panel", C.cite("Sec. 5", "x"), " ")
    assert _claim(quote=C.cite("Sec. 4.2", "q")).quote == 'Sec. 4.2: "q"'


def test_quoted_fills_quotes_by_pattern_in_order_and_names_a_row_without_one():
    rows = [_claim(figure="Fig. 4", claim="Conjecture 1: max falls", quote=""),
            _claim(figure="Fig. 5", claim="Conjecture 1: max falls", quote=""),
            _claim(figure="Fig. 5", claim="kept", quote=C.cite("Sec. 1", "own"))]
    table = [(r"^Fig\. 4 \| Conjecture 1", C.cite("Sec. 4.2", "four")),
             (r"Conjecture 1", C.cite("Sec. 4.2", "any")), (r"kept", C.cite("Sec. 9", "never"))]
    out = C.quoted(rows, table)
    assert [c.quote for c in out] == ['Sec. 4.2: "four"', 'Sec. 4.2: "any"', 'Sec. 1: "own"']
    with pytest.raises(ValueError, match="Fig. 5 \\| Conjecture 1"):
        C.quoted(rows[:2], table[:1])


def test_compare_peaks_orders_clear_peaks_both_ways():
    o = C.compare_peaks({0.01: _hump(10), 0.1: _hump(5)}, -1, symbol="eta")
    assert o.verdict == C.HOLDS and o.peaks[0.01].index == 4 and not o.peaks[0.01].at_end
    assert "eta=0.01: " in C.peaks_text(o.peaks, "eta")
    assert C.compare_peaks({0.01: _hump(10), 0.1: _hump(5)}, +1).verdict == C.FAILS


def test_compare_peaks_never_takes_the_shared_first_measurement():
    # both runs start at the same high value (e.g. lambda_K^*/lambda_K^1 = 0.472 at t = 0) and
    # fall; afterwards eta=1 sits clearly higher: the shared start must not decide (a plain
    # maximum gives 9 = 9, "within noise")
    a = np.array([9, 2, 2.5, 3, 2.5, 2, 1.8, 1.7])
    b = np.array([9, 4, 5, 6, 5, 4, 3.6, 3.4])
    o = C.compare_peaks({0.1: a, 1.0: b}, +1)
    assert o.verdict == C.HOLDS and o.peaks[0.1].raw_index > 0 and o.peaks[1.0].raw_value == 6
    assert "shared initial state" in o.reason
    assert C.ordering_verdict([0.1, 1.0], [a.max(), b.max()], None, +1).verdict == C.UNTESTABLE


def test_compare_peaks_after_transient_skips_the_initial_decay():
    # BatchNorm (Sec. 4.3): a high start decays, then the curve grows to its peak; the
    # transient's second point (8) would otherwise be the maximum of the first run
    a = np.array([10, 8, 4, 2, 3, 4, 5, 4, 3, 2.5])
    b = np.array([10, 8, 4, 2, 4, 6, 7, 6, 5, 4.5])
    assert C.compare_peaks({0.1: a, 1.0: b}, +1).verdict != C.HOLDS
    o = C.compare_peaks({0.1: a, 1.0: b}, +1, after_transient=True)
    assert o.verdict == C.HOLDS and o.peaks[0.1].raw_index == 6 and "initial transient" in o.reason


def test_compare_peaks_a_still_rising_peak_is_a_lower_bound():
    rising = np.linspace(1, 6, 9)  # peak at the last measurement
    # predicted: the peak shrinks with eta; eta=0.1 (larger) is still rising above eta=0.01's
    # peak: it could only rise further -> the failure stands
    o = C.compare_peaks({0.01: _hump(4), 0.1: rising}, -1, symbol="eta")
    assert o.verdict == C.FAILS
    # eta=0.1 lower than eta=0.01 but still rising: it could catch up -> not testable, named
    o = C.compare_peaks({0.01: _hump(10), 0.1: rising}, -1, symbol="eta")
    assert o.verdict == C.UNTESTABLE and "still rising" in o.reason and "eta=0.1" in o.reason
    assert "(runs continued past their peak would decide it)" in o.reason
    assert o.peaks[0.1].at_end and "still rising" in C.peaks_text(o.peaks, "eta")
    # the smaller eta still rising above the larger one's peak: a rise only helps -> holds
    o = C.compare_peaks({0.01: rising * 2, 0.1: _hump(4)}, -1, symbol="eta")
    assert o.verdict == C.HOLDS


def test_tail_rise_bounds_a_rise_by_the_steep_end_of_the_tail_trend():
    assert C.tail_rise([1.0, 2.0, 3.0]) == np.inf  # too short to read a trend
    assert C.tail_rise(np.linspace(6, 1, 12)) == 0.0  # falling: no rise
    assert C.tail_rise(np.full(12, 2.0)) == 0.0
    # exactly linear, slope 0.5 per measurement: 0.5 x 12 more measurements (the run twice as long)
    assert C.tail_rise(np.linspace(1, 6.5, 12)) == pytest.approx(6.0)
    # noise widens the slope's interval, so the bound grows with it
    rng = np.random.default_rng(0)
    flat = 0.5 + 0.01 * rng.standard_normal(40)
    noisy = 0.5 + 0.05 * rng.standard_normal(40)
    assert 0 <= C.tail_rise(flat) < C.tail_rise(noisy) < 1.0


def test_a_still_rising_peak_far_below_the_other_keeps_its_step():
    """#21 item 6: notebook 1 under two thread layouts. eta=0.1's lambda_K^1 (peak 0.43 after its
    transient, flat and noisy later) ended at its maximum in one seed under one layout and not
    under the other; eta=0.01 peaks at 2.06. A rise the tail's trend cannot plausibly make must
    not turn the step into 'still rising'; one it can make still does."""
    rng = np.random.default_rng(1)
    hump = np.r_[0.2, np.linspace(0.5, 2.1, 8), np.linspace(2.0, 1.2, 31)]
    seeds_a = np.stack([hump + 0.03 * rng.standard_normal(hump.size) for _ in range(3)])
    seeds_b = []
    for k in range(3):
        c = np.r_[0.1, 0.4 + 0.02 * rng.standard_normal(39)]
        if k == 0:
            c[-1] = c.max() + 0.01  # this seed ends at its maximum
        seeds_b.append(c)
    seeds_b = np.stack(seeds_b)
    o = C.compare_peaks({0.01: seeds_a, 0.1: seeds_b}, -1, symbol="eta")
    assert o.peaks[0.1].raw_at_end and o.peaks[0.1].raw_reach < 1.0
    assert o.verdict == C.HOLDS, o.reason
    assert "still rising at its last measurement, but its tail's trend" in o.reason
    # against the prediction (eta=0.1 above eta=0.01) with eta=0.01 still rising, however
    # slowly: a curve short of its peak never makes a "does not hold"
    o = C.compare_peaks({0.01: seeds_b, 0.1: seeds_a}, -1, symbol="eta")
    assert o.peaks[0.01].raw_reach < o.peaks[0.1].raw_value
    assert o.verdict == C.UNTESTABLE and "still rising" in o.reason and "eta=0.01" in o.reason
    # the same seed rising steeply over its last quarter: it could reach eta=0.01's peak
    steep = seeds_b.copy()
    steep[0, -10:] = np.linspace(0.5, 1.6, 10)
    o = C.compare_peaks({0.01: seeds_a, 0.1: steep}, -1, symbol="eta")
    assert o.verdict == C.UNTESTABLE and "still rising" in o.reason and "eta=0.1" in o.reason


def test_compare_peaks_raw_and_smoothed_must_agree():
    # run a has one spike (raw max 12) on a low plateau, run b a broad peak at 8: the
    # smoothed maxima put b above a, the raw ones a above b
    a = np.array([1, 3, 3, 3, 12, 3, 3, 3, 3.])
    b = np.array([1, 6, 7, 8, 8, 8, 7, 6, 5.])
    o = C.compare_peaks({1: a, 2: b}, +1, window=3)
    assert o.verdict == C.UNTESTABLE and "depends on the smoothing" in o.reason
    assert "denser measurements around the peaks, or several seeds, would decide it" in o.reason


def test_compare_peaks_excludes_and_names_missing_settings():
    nan = np.full(6, np.nan)
    o = C.compare_peaks({0.01: _hump(10), 0.1: _hump(5), 1.0: nan}, -1, symbol="eta")
    assert o.verdict == C.HOLDS and "eta=1" in o.reason and 1.0 not in o.peaks
    one = np.array([3.0, np.nan, np.nan])  # only the shared first measurement
    o = C.compare_peaks({0.01: _hump(10), 1.0: one}, -1, symbol="eta")
    assert o.verdict == C.UNTESTABLE and "needs 2" in o.reason and "eta=1" in o.reason


def test_compare_peaks_margins_from_ses_and_fallback():
    a, b = _hump(10), _hump(9)
    # 10 vs 9 with a tiny SE: a clear step; with SE 1 per point: within noise
    tiny = {1: np.full(9, 0.01), 2: np.full(9, 0.01)}
    assert C.compare_peaks({1: a, 2: b}, -1, ses=tiny).verdict == C.HOLDS
    o = C.compare_peaks({1: a, 2: b}, -1, ses={1: np.full(9, 1.0), 2: np.full(9, 1.0)})
    assert o.verdict == C.UNTESTABLE and "within noise" in o.reason and "1.96 se" in o.margin
    # no SE: 5% of the larger value (0.5 < 1 as predicted), said in the reason
    o = C.compare_peaks({1: a, 2: b}, -1)
    assert o.verdict == C.HOLDS and "5% of the larger value" in o.reason
    # a floor (e.g. the Lanczos tolerance) raises a smaller SE
    o = C.compare_peaks({1: a, 2: b}, -1, ses={1: np.full(9, 0.01), 2: np.full(9, 0.01)},
                        floor={1: 1.0, 2: 1.0})
    assert o.verdict == C.UNTESTABLE


def test_compare_peaks_seed_spread_is_the_se():
    rng = np.random.default_rng(0)
    seeds_a = np.stack([_hump(10 + d) for d in (-0.2, 0.0, 0.2)])
    seeds_b = np.stack([_hump(9 + d) for d in (-0.2, 0.0, 0.2)])
    o = C.compare_peaks({1: seeds_a, 2: seeds_b}, -1)
    assert o.verdict == C.HOLDS and o.peaks[1].n_seeds == 3 and "3, 3 seeds" in o.reason
    assert o.peaks[1].raw_se == pytest.approx(np.std([9.8, 10, 10.2], ddof=1) / np.sqrt(3), rel=1e-6)
    assert o.peaks[1].raw_value == pytest.approx(10.0)
    wide_b = np.stack([_hump(9 + d) for d in rng.normal(0, 3, 3)])
    assert C.compare_peaks({1: seeds_a, 2: wide_b}, -1).verdict == C.UNTESTABLE


def test_scatter_se_recovers_the_noise_of_a_smooth_curve():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 400)
    v = 50 + 10 * x + rng.normal(0, 2.0, x.size)  # a slow trend plus sigma = 2
    se = C.scatter_se(v, 3)
    assert np.nanmedian(se) == pytest.approx(2.0, rel=0.15)
    with pytest.raises(ValueError):
        C.scatter_se(v, 1)
    # lambda_H^1-like curves 20% apart in scatter, 5% apart in peak: within the noise
    base = _hump(100, n=30, at=15)
    a = base * (1 + rng.normal(0, 0.2, 30))
    b = base * 0.95 * (1 + rng.normal(0, 0.2, 30))
    a[0] = b[0] = 1.0
    o = C.compare_peaks({1: a, 2: b}, -1, ses="scatter")
    assert o.verdict == C.UNTESTABLE and "scatter" in o.reason


def test_compare_peaks_rejects_bad_input():
    with pytest.raises(ValueError):
        C.compare_peaks({1: _hump(3), 2: _hump(4)}, 0)
    with pytest.raises(ValueError):
        C.compare_peaks({}, 1)
    with pytest.raises(ValueError):
        C.compare_peaks({1: _hump(3), 2: _hump(4)}, 1, ses="bootstrap")
    with pytest.raises(ValueError):
        C.compare_peaks({1: np.ones((2, 2, 2)), 2: _hump(4)}, 1)
    with pytest.raises(ValueError):
        C.compare_peaks({1: _hump(3), 2: _hump(4)}, 1, ses={1: np.ones(3), 2: np.ones(9)})
