"""papers.common: the peak rule on tidy frames, between named runs, and the break-even gate."""

import numpy as np
import pandas as pd

from breakeven_utils.papers import common
from breakeven_utils.reporting import claims as cl


def _run(values, se=None, seed=0, status="done"):
    v = np.asarray(values, dtype=float)
    d = dict(iteration=np.arange(v.size) * 10, seed=seed, status=status, lambda_K_1=v)
    if se is not None:
        d["lambda_K_1_se"] = np.full(v.size, se)
    return pd.DataFrame(d)


PEAKED = [1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.8]   # rises, peaks, falls well past it
RISING = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5]   # still rising at its end
FLAT = [2.0, 2.1, 1.9, 2.0, 2.1, 1.9, 2.0, 2.1, 1.9, 2.0]      # no peak beyond the noise


def test_break_even_reached_needs_a_fall_beyond_the_noise():
    ok, why = common.break_even_reached(_run(PEAKED, se=0.1))
    assert ok and "falls beyond the noise" in why
    ok, why = common.break_even_reached(_run(RISING, se=0.1))
    assert not ok and "no fall beyond the noise" in why
    ok, _ = common.break_even_reached(_run(FLAT))            # no se column: the curve's scatter
    assert not ok
    assert common.break_even_reached(_run(PEAKED, status="diverged")) == (False, "diverged")
    # a fall inside a large bootstrap SE is not a fall
    assert not common.break_even_reached(_run(PEAKED, se=3.0))[0]
    # every seed must pass
    two = pd.concat([_run(PEAKED, se=0.1), _run(RISING, se=0.1, seed=1)])
    assert not common.break_even_reached(two)[0]


def test_break_even_gate_after_the_batchnorm_transient():
    """#21: SimpleCNN-BN's lambda_K^1 starts high and decays (Sec. 4.3) before it rises towards
    the break-even point; that first fall is not the break-even point. Read after the transient,
    a curve still rising at its end has not reached it; one that peaks and falls again has."""
    bn_rising = [9.0, 8.0, 6.0, 4.0, 3.0, 3.2, 3.6, 4.0, 4.4, 4.8, 5.2, 5.6]
    bn_peaked = [9.0, 8.0, 6.0, 4.0, 3.0, 4.0, 5.0, 6.0, 5.0, 4.0, 3.5, 3.0]
    assert common.break_even_reached(_run(bn_rising, se=0.1))[0]  # the transient's fall fools the plain gate
    ok, why = common.break_even_reached(_run(bn_rising, se=0.1), after_transient=True)
    assert not ok and "after the initial transient" in why and "no fall beyond the noise" in why
    ok, why = common.break_even_reached(_run(bn_peaked, se=0.1), after_transient=True)
    assert ok and "smoothed max 5.33 at iteration 70" in why
    # a curve without a transient reads the same either way
    assert common.break_even_reached(_run(PEAKED, se=0.1), after_transient=True)[0]
    assert not common.break_even_reached(_run(RISING, se=0.1), after_transient=True)[0]


def test_compare_runs_peaks_names_the_runs():
    small, big = _run(PEAKED, se=0.1), _run(np.array(PEAKED) * 2, se=0.1)
    o = common.compare_runs_peaks({"run A": small, "run B": big}, "lambda_K_1", +1)
    assert o.verdict == cl.HOLDS and "run A->run B" in o.margin
    o = common.compare_runs_peaks({"run B": big, "run A": small}, "lambda_K_1", +1)
    assert o.verdict == cl.FAILS and "run B -> run A" in o.reason
    # a run whose maximum is its last measurement is a lower bound: not testable
    o = common.compare_runs_peaks({"run B": big, "rising": _run(RISING, se=0.1)}, "lambda_K_1", +1)
    assert o.verdict == cl.UNTESTABLE and "still rising" in o.reason and "rising" in o.reason


def test_compare_peaks_of_uses_the_scatter_without_per_point_se():
    rng = np.random.default_rng(0)
    a = np.array(PEAKED) * (1 + 0.3 * rng.standard_normal(10))
    b = np.array(PEAKED) * 1.1 * (1 + 0.3 * rng.standard_normal(10))
    df = pd.concat([_run(a).assign(lr=0.1), _run(b).assign(lr=0.01)])
    o = common.compare_peaks_of(df, "lambda_K_1", -1, "lr", symbol="eta")
    # 30% point noise: a 10% difference of the peaks is within the curve's own scatter
    assert o.verdict == cl.UNTESTABLE and "scatter of the raw curve" in o.reason
    assert "5% of the larger value" not in o.reason
