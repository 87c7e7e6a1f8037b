import numpy as np
import pandas as pd
import pytest

from breakeven_utils.break_even import (
    break_even_points,
    breakeven_lhs,
    claims_break_even,
    first_crossing,
    negative_delta_shares,
    outliers,
)


def test_lhs_of_eq1():
    # full batch (S = N): no noise term, LHS = 1 exactly at lambda_H^1 = 2 / lr
    assert breakeven_lhs(0.01, 200.0, s2=123.0, n_train=1000, batch_size=1000) == pytest.approx(1.0)
    assert breakeven_lhs(0.01, 100.0, s2=0.0, n_train=1000, batch_size=10) == pytest.approx(0.0)
    # noise term: s^2 lr^2 (N - S) / (S (N - 1))
    v = breakeven_lhs(0.1, 0.0, s2=50.0, n_train=101, batch_size=10)
    assert v == pytest.approx(1 + 50 * 0.01 * 91 / (10 * 100))


def test_first_crossing():
    assert first_crossing([0, 1, 2, 3], [0.2, np.nan, 1.0, 3]) == 2
    assert first_crossing([0, 1], [0.2, 0.9]) is None


def test_outlier_rule():
    bulk = np.linspace(1.0, 1.2, 20)
    assert outliers(bulk) == 0
    assert outliers(np.r_[bulk, 10.0, 20.0]) == 2


def test_negative_delta_shares():
    g = pd.DataFrame(dict(iteration=range(6), lambda_K_1=[1, 2, 3, 10, 8, 9],
                          delta_loss=[0.1, 0.1, 0.2, -0.1, 0.1, -0.2]))
    before, after = negative_delta_shares(g)
    assert before == 0.0 and after == pytest.approx(2 / 3)


def _trajectories(swap=False):
    """Two learning rates, two seeds; the small lr peaks higher and later (the paper's picture)."""
    rows = []
    for lr, peak, t_be in ((0.01, 1.0, 40), (0.001, 3.0, 80)):
        for seed in (0, 1):
            for it in range(0, 120, 10):
                lk = peak * min(it, 60) / 60
                lh = 20 * lk + seed
                lhs = 0.5 if it < t_be else 1.5
                dl = 0.1 if lk < 0.5 * peak else (-0.05 if it % 20 else 0.05)
                rows.append(dict(lr=lr, seed=seed, iteration=it, lambda_K_1=lk, lambda_H_1=lh,
                                 delta_loss=dl, breakeven_lhs=lhs, train_acc=it / 200))
    df = pd.DataFrame(rows)
    if swap:
        df["lr"] = df["lr"].map({0.01: 0.001, 0.001: 0.01})
    return df


def test_break_even_points_per_run():
    bep = break_even_points(_trajectories())
    assert set(bep.loc[bep.lr == 0.01, "iteration"]) == {40}
    assert set(bep.loc[bep.lr == 0.001, "iteration"]) == {80}


def test_claims_hold_on_papers_picture_and_fail_when_reversed():
    sk = {0.001: np.r_[np.ones(20), 9, 10, 11], 0.01: np.r_[np.ones(22), 5]}
    sh = {0.001: np.r_[np.ones(7), 30, 40, 50], 0.01: np.r_[np.ones(9), 20]}
    table = claims_break_even(_trajectories(), sk, sh)
    assert list(table.columns) == ["claim", "measured", "criterion", "verdict"]
    assert len(table) == 5
    assert (table["verdict"] == "holds").all(), table.to_string()
    rev = claims_break_even(_trajectories(swap=True), {0.01: sk[0.001], 0.001: sk[0.01]},
                            {0.01: sh[0.001], 0.001: sh[0.01]})
    for letter in "bde":
        v = rev.loc[rev.claim.str.startswith(f"({letter})"), "verdict"].item()
        assert v.startswith("does not hold"), (letter, v)


def test_claim_e_not_testable_without_crossing():
    df = _trajectories()
    df["breakeven_lhs"] = 0.1
    table = claims_break_even(df, {}, {})
    assert table.loc[4, "verdict"].startswith("not testable")
    assert table.loc[3, "verdict"].startswith("not testable")


def test_break_even_when_training_starts_unstable():
    """Theorem 2: unstable at the start -> the break-even point is where LHS first drops below 1."""
    df = pd.DataFrame(dict(lr=0.1, seed=0, iteration=[0, 10, 20, 30], lambda_H_1=[30, 25, 15, 18],
                           lambda_K_1=1.0, train_acc=0.1, breakeven_lhs=[1.5, 1.2, 0.8, 1.1]))
    bep = break_even_points(df)
    assert bep["iteration"].item() == 20 and bep["start"].item().startswith("unstable")


def test_claims_not_testable_with_too_few_points():
    df = _trajectories()
    df = df[(df.iteration <= 10) & (df.seed == 0)].copy()
    df["breakeven_lhs"] = 1.5  # unstable from the start and never stabilising
    table = claims_break_even(df, {}, {})
    assert table.loc[0, "verdict"].startswith("not testable")
