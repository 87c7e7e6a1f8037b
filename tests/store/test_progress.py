"""Sweep progress: the time-left arithmetic (cost plan x measured/estimated ratio / jobs)
with a fake calibration, and the per-run lines a smoke sweep prints. Nothing is timed."""
import json
import math

import pytest

from breakeven_utils.recorder import RunConfig
from breakeven_utils.store import plan, progress
from breakeven_utils.store.progress import RATIO_CAP, SweepProgress, eta_seconds
from breakeven_utils.store.sweeps import sweep

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
            model_kwargs={"hidden": (8,)}, batch_size=32, lr=0.05, max_epochs=1, measure_every=4,
            metrics=("train", "val"))


def fake_calibration(configs):
    """Primitive costs as ``plan.calibrate`` returns them, made up (nothing is timed)."""
    cal = {"shapes": {}, "rules": {}, "lanczos": {}, "metrics": {},
           "device": {"gram_flops": 1e9, "eigh_c": 1e-9}}
    for c in configs:
        sk = plan._shape_key(c, plan.sizes(c))
        cal["shapes"][sk] = {"fb_a": 0.01, "fb_b": 0.001, "eval_b": 1e-4, "hvp_a": 0.02,
                             "hvp_b": 0.002, "n_params": 1000}
        cal["rules"][plan._rule_key(c, sk)] = {"update": 0.001, "on_start_per_example": 0.0,
                                               "epoch_per_example": 0.0}
    return cal


def test_eta_from_the_cost_plan_rescaled_by_measured_runs():
    cfgs = [RunConfig(**{**TINY, "lr": lr, "max_epochs": e}) for lr, e in ((0.1, 1), (0.05, 2), (0.01, 4))]
    cal = fake_calibration(cfgs)
    est = {c.key(): plan.run_cost(c, cal)["total"] for c in cfgs}
    a, b, c = (cf.key() for cf in cfgs)
    assert est[b] == pytest.approx(2 * est[a], rel=0.05)  # twice the epochs: about twice the cost
    # before any run: the plan's total, over the parallel jobs
    assert eta_seconds(est, set(), {}, jobs=1) == pytest.approx(sum(est.values()))
    # two jobs: each run to the first free worker (a, b, then c after a), not the sum / 2
    assert eta_seconds(est, set(), {}, jobs=2) == pytest.approx(plan.makespan(list(est.values()), 2))
    assert eta_seconds(est, set(), {}, jobs=2) == pytest.approx(est[a] + est[c])
    # the first run took 3x its estimate: the rest is rescaled by 3
    assert eta_seconds(est, {a}, {a: 3 * est[a]}, jobs=1) == pytest.approx(3 * (est[b] + est[c]))
    # ... but 100x after one run is clipped to RATIO_CAP until MIN_MEASURED runs are measured
    assert eta_seconds(est, {a}, {a: 100 * est[a]}, jobs=1) == pytest.approx(
        RATIO_CAP * (est[b] + est[c]))
    # two measured runs: the ratio of the sums; one run left: one job works on it
    m = {a: 2 * est[a], b: 1 * est[b]}
    ratio = (2 * est[a] + est[b]) / (est[a] + est[b])
    assert eta_seconds(est, {a, b}, m, jobs=4) == pytest.approx(ratio * est[c])
    # a failed run (done, not measured) leaves the ratio alone
    assert eta_seconds(est, {a, b}, {a: 2 * est[a]}, jobs=1) == pytest.approx(2 * est[c])
    assert eta_seconds(est, {a, b, c}, m, jobs=1) == 0.0


def test_eta_without_estimates_counts_runs():
    est = {"a": math.nan, "b": math.nan, "c": math.nan, "d": math.nan}
    assert math.isnan(eta_seconds(est, set(), {}, jobs=1))  # nothing measured yet: unknown
    # one run took 10 s: 10 s per run left, three runs on two jobs take two rounds
    assert eta_seconds(est, {"a"}, {"a": 10.0}, jobs=2) == pytest.approx(2 * 10.0)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        eta_seconds(est, set(), {}, jobs=0)


def test_progress_uses_the_calibration_cached_in_the_run_store(tmp_path, monkeypatch):
    """No measuring when the store's calibration (as make plan leaves it) covers the runs."""
    cfgs = [RunConfig(**{**TINY, "dataset": "fashion_mnist", "n_train": 512, "lr": lr}) for lr in (0.1, 0.2)]
    cal = fake_calibration(cfgs)
    monkeypatch.setattr(plan, "_calibrate_shape", lambda *a, **k: pytest.fail("calibrated"))
    monkeypatch.setattr(plan, "calibrate", lambda configs, device, store, **kw: (
        {**cal, "key": "fake"} if kw.get("cached_only") else pytest.fail("calibrated")))
    bar = SweepProgress({c.key(): c for c in cfgs}, tmp_path, jobs=2, progress=True, device="cpu")
    bar.close()
    assert bar.source == "cached"
    assert bar.estimates == pytest.approx({c.key(): plan.run_cost(c, cal)["total"] for c in cfgs})


def test_smoke_sweep_prints_one_line_per_run(tmp_path, capsys, monkeypatch):
    cfgs = [RunConfig(**{**TINY, "lr": lr}) for lr in (0.1, 0.05)]
    fake = {c.key(): 5.0 for c in cfgs}
    monkeypatch.setattr(progress, "sweep_estimates", lambda configs, *a, **k: (fake, "fake"))
    sweep(cfgs, tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "sweep: 2 runs (0 in the store), 2 to compute, about 10 s with 1 job(s)" in out
    for i, c in enumerate(cfgs, 1):
        assert f"sweep: run {i} of 2 ({c.key()[:10]}) done in " in out
    assert "compute (estimated 5.0 s)" in out and "sweep done" in out
    status = json.loads((tmp_path / cfgs[0].key() / "status.json").read_text())
    assert f"done in {progress._fmt(status['seconds'])} compute" in out
    # again: both runs come from the store, nothing to estimate
    monkeypatch.setattr(progress, "sweep_estimates", lambda *a, **k: pytest.fail("estimated"))
    sweep(cfgs, tmp_path, progress=True)
    out = capsys.readouterr().out
    assert out.count("loaded from the store") == 2 and "to compute" not in out
    assert "; 1 left, in the store" in out
    # progress=False: silent
    sweep(cfgs, tmp_path, progress=False)
    assert "sweep:" not in capsys.readouterr().out


def test_synthetic_sweeps_are_not_calibrated_and_fall_back_to_the_run_count(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plan, "_calibrate_shape", lambda *a, **k: pytest.fail("calibrated"))
    cfgs = [RunConfig(**{**TINY, "lr": lr}) for lr in (0.1, 0.05)]
    sweep(cfgs, tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "no cost estimate: none cached; time left from the runs' mean" in out
    assert "(estimated ?)" in out and "1 left, about " in out


def test_a_failing_estimate_does_not_stop_the_sweep(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("no device")
    monkeypatch.setattr(progress, "sweep_estimates", boom)
    df = sweep([RunConfig(**TINY)], tmp_path, progress=True)
    assert len(df) and "calibration failed (RuntimeError: no device)" in capsys.readouterr().out
    assert progress.eta_seconds({}, set(), {}) == 0.0
