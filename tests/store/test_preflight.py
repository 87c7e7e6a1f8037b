"""store.preflight: every run of a profile built, its model constructed, one forward and backward
pass of its first batch; failures recorded, missing data stood in for, large full-batch passes flagged."""
import re
import time

import numpy as np
import pandas as pd
import pytest

from breakeven_utils.core.data import load_data
from breakeven_utils.papers import registry
from breakeven_utils.recorder import RunConfig
from breakeven_utils.store import preflight as P
from breakeven_utils.store import runs as R
from breakeven_utils.store.runs import read_status, run
from breakeven_utils.store.truncation import ENV, effective, preflight_steps, truncate

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(dataset="synthetic", n_train=256, n_val=32, n_test=32, n_measure=32, model="mlp",
            model_kwargs={"hidden": (8,)}, batch_size=32, lr=0.05, max_epochs=1, metrics=("train",))


def test_smoke_profile_of_notebook_1_builds_and_steps():
    df = P.preflight(registry.notebook_runs("smoke", ["01_break_even"]), progress=False)
    assert len(df) == 3 and df["ok"].all() and set(df["data_source"]) == {"on disk"}
    assert (df["parameters"] > 0).all() and (df["batch"] == 32).all()
    text = P.report(df, "smoke", 1.0)
    assert "3 runs built and checked in 1 s: 3 ok, 0 failed" in text and "## Signatures" in text


def test_a_failing_run_is_recorded_and_the_others_go_on():
    bad = RunConfig(**{**TINY, "model": "simple_cnn", "model_kwargs": {"no_such_argument": 1}})
    df = P.preflight({"nb": [bad, RunConfig(**TINY)]}, progress=False)
    assert sorted(df["ok"].tolist()) == [False, True]
    err = df.loc[~df["ok"], "error"].item()
    assert "no_such_argument" in err and "TypeError" in err
    assert "## Failures" in P.report(df, "x", 0.0)


def test_missing_data_is_stood_in_for_with_its_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("BREAKEVEN_DATA", str(tmp_path))  # nothing on disk
    c = RunConfig(**{**TINY, "dataset": "mnist", "n_train": 2048, "batch_size": 100})
    x, y, k, source = P.first_batch(c, {})
    assert x.shape == (100, 1, 28, 28) and k == 10 and source.startswith("stand-in")
    df = P.preflight({"nb": [c]}, progress=False)
    assert df["ok"].all() and "mnist (1 runs)" in P.report(df, "x", 0.0)


def test_a_full_batch_pass_larger_than_max_pass_is_flagged(tmp_path, monkeypatch):
    c = RunConfig(**{**TINY, "n_train": 2048, "optimizer": "gd"})
    check = P.check_run("nb", c, {})
    assert check.ok and check.batch == P.MAX_PASS
    assert "full-batch gradient over 2,048 examples in one pass (gd_chunk unset)" in check.note
    assert P.check_run("nb", RunConfig(**{**TINY, "n_train": 2048, "optimizer": "gd", "gd_chunk": 512}),
                       {}).note == ""
    assert "## Warnings" in P.report(pd.DataFrame([check.__dict__]), "x", 0.0)


# -- second stage: every signature executed at full size for a few steps ---------------------------

def _without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_truncate_cuts_steps_only_and_the_parent_by_the_same_rule():
    c = RunConfig(**{**TINY, "max_epochs": 30, "measure_at": (0, 2, 10, 500)})
    t = truncate(c, 3)
    assert t.max_iters == 3 and t.measure_at == (0, 2, 3) and t.max_epochs == 30
    assert truncate(RunConfig(**TINY), 3).measure_at == (0, 3)  # the default schedule: start and end
    cut = ("max_iters", "measure_at")
    assert _without(t.to_dict(), *cut) == _without(c.to_dict(), *cut)
    grand = RunConfig(**{**TINY, "max_iters": 1000})
    parent = RunConfig(**{**TINY, "max_iters": 2000,
                          "init_from": {"config": grand.to_dict(), "iteration": 700}})
    child = RunConfig(**{**TINY, "lr": 0.1, "init_from": {"config": parent.to_dict(), "iteration": 1500}})
    tc = truncate(child, 4)
    tp = RunConfig.from_dict(tc.init_from["config"])
    assert tc.init_from["iteration"] == 4 and tp == truncate(parent, 4)
    assert tp.init_from == {"config": truncate(grand, 4).to_dict(), "iteration": 4}
    assert truncate(RunConfig(**{**TINY, "max_iters": 2}), 3).max_iters == 2  # shorter runs stay
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        truncate(c, 0)


def test_groups_take_the_largest_run_of_each_signature_and_keep_child_runs_apart():
    small = RunConfig(**TINY)
    large = RunConfig(**{**TINY, "n_measure": 64, "seed": 1})
    child = RunConfig(**{**TINY, "init_from": {"config": small.to_dict(), "iteration": 5}})
    g = P.groups({"a": [small, child], "b": [large, small], "c": "not built at this profile"})
    assert [e["runs"] for e in g] == [2, 1]
    assert g[0]["config"] == large and g[0]["notebooks"] == ["a", "b"]
    assert g[1]["group"].endswith("| from a parent run") and g[1]["config"] == child


def test_execute_runs_each_signature_in_its_own_process_and_records_failures(tmp_path):
    ok = RunConfig(**{**TINY, "metrics": ("train", "lambda_H", "K"), "K_L": 4})
    child = RunConfig(**{**TINY, "lr": 0.1, "init_from": {"config": ok.to_dict(), "iteration": 5}})
    bad = RunConfig(**{**TINY, "model": "simple_cnn", "model_kwargs": {"no_such_argument": 1}})
    seen = []
    df = P.execute({"nb": [ok, child, bad]}, tmp_path, steps=2, threads=1, progress=False,
                   on_row=lambda row: seen.append(row["ok"].item()))
    assert df["ok"].tolist() == [True, True, False] and seen == [True, True, False]
    assert "no_such_argument" in df["error"].iloc[2]
    first = df.iloc[0]
    assert first["iterations"] == 2 and first["measurements"] == 2  # at 0 and after the last step
    assert first["slowest_metric"] in ("lambda_H", "K", "train") and first["s_per_measurement"] > 0
    assert first["peak_mb"] >= first["start_mb"] > 0
    text = P.execution_report(df, "x", 1.0, 2)
    assert "3 signatures executed at full size for 2 steps each" in text and "## Failures" in text


def test_a_data_set_not_on_disk_is_executed_on_a_stand_in_of_its_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("BREAKEVEN_DATA", str(tmp_path / "empty"))
    c = RunConfig(**{**TINY, "dataset": "mnist", "n_train": 512, "batch_size": 64})
    d = P.stand_in_data(c)
    assert d.train.x.shape == (512, 1, 28, 28) and len(d.val) == 32 and d.num_classes == 10
    df = P.execute({"nb": [c]}, tmp_path / "store", steps=2, threads=1, progress=False)
    assert df["ok"].all() and df["data_source"].item() == "stand-in (not on disk)"


def test_a_paper_signature_at_full_size(tmp_path):
    """The sample at the paper profile: the Fashion-MNIST MLP of notebook 2, with its 2,250-example
    Hessian and K at L = 25, cut to 2 steps (the other signatures: `make preflight`)."""
    runs = registry.notebook_runs("paper", ["02_conjectures"])
    mlp = [c for c in runs["02_conjectures"] if c.model == "mlp"]
    assert mlp and truncate(mlp[0], 2).hessian_n == mlp[0].hessian_n
    df = P.execute({"02_conjectures": mlp}, tmp_path, steps=2, threads=1, progress=False)
    assert df["ok"].all() and df["runs"].item() == len(mlp)
    assert df["measurements"].item() == 2 and df["slowest_metric"].item() in ("lambda_H", "K")


def test_a_paper_sample_of_every_model_family_and_update_rule_builds_and_steps(cifar_root):
    """Stage 1 at `paper` on one run per (model, update rule) of the five notebooks (the one with
    the smallest batch): model built for its data, one forward and backward pass of its first
    batch at the paper's sizes (all 254 runs: `make preflight STAGE=1`)."""
    runs = registry.notebook_runs("paper")
    sample = {}
    for nb, cfgs in runs.items():
        for c in cfgs:
            k = (c.model, c.rule_name)
            if k not in sample or c.batch_size < sample[k][1].batch_size:
                sample[k] = (nb, c)
    picked = {}
    for nb, c in sample.values():
        picked.setdefault(nb, []).append(c)
    df = P.preflight(picked, progress=False)
    assert df["ok"].all(), df.loc[~df["ok"], ["signature", "error"]].to_string()
    assert {m for m, _ in sample} >= {"simple_cnn", "simple_cnn_bn", "resnet32", "resnet56", "vgg11", "mlp"}
    assert {r for _, r in sample} >= {"sgd", "nsgd", "sgd_top", "sgd_no_top", "gd_noise_minibatch"}


# -- memory per run: the plan's table and JOBS=auto ------------------------------------------------

def test_results_merge_across_preflights_of_different_notebooks(tmp_path):
    path = tmp_path / "preflight_x.json"
    assert P.load_results(path) is None
    row = dict(group="g1", notebooks="nb1", runs=1, ok=True, start_mb=700, peak_mb=900, wall_s=1.0)
    P.save_results(pd.DataFrame([row]), path, "x", 3)
    P.save_results(pd.DataFrame([dict(row, group="g2", notebooks="nb2", peak_mb=2000)]), path, "x", 3)
    P.save_results(pd.DataFrame([dict(row, peak_mb=1000)]), path, "x", 3)  # g1 measured again
    r = P.load_results(path)
    assert r["notebooks"] == ["nb1", "nb2"] and r["steps"] == 3
    assert {g["group"]: g["peak_mb"] for g in r["groups"]} == {"g1": 1000, "g2": 2000}


def test_memory_plan_fits_runs_on_a_gpu_by_their_groups_measured_memory():
    a = RunConfig(**TINY)
    b = RunConfig(**{**TINY, "seed": 1})              # same group as a
    c = RunConfig(**{**TINY, "model_kwargs": {"hidden": (16,)}, "metrics": ("train", "K"), "K_L": 4})
    runs = {"nb1": [a, b], "nb2": [c], "nb3": "not at this profile"}
    res = {"groups": [{"group": P.group_of(a), "ok": True, "start_mb": 800, "peak_mb": 800 + 1024 * 7}]}
    mem = P.memory_plan(runs, res, 80)
    assert mem["need_gb"].iloc[:2].tolist() == [7.0, 7.0] and mem["per_gpu"].iloc[:2].tolist() == [10, 10]
    assert np.isnan(mem["need_gb"].iloc[2]) and pd.isna(mem["per_gpu"].iloc[2])  # c not preflighted
    assert P.auto_jobs(mem, "nb1", 2) == 20 and P.auto_jobs(mem, "nb2", 1) is None
    # a run larger than the GPU: none fit, no JOBS=auto
    assert P.auto_jobs(P.memory_plan(runs, res, 6), "nb1", 1) is None
    text = P.memory_tables(mem, 80)
    assert "on a GPU of 80 GB" in text and "not preflighted" in text and "make preflight" in text
    with pytest.raises(ValueError, match="GPU_MEM"):
        P.memory_plan(runs, res, 0)


# -- third stage: the notebooks on the truncated runs ------------------------------------------------

def test_the_switch_makes_the_store_compute_and_load_truncated_runs(tmp_path, monkeypatch):
    c = RunConfig(**{**TINY, "max_epochs": 4})
    assert preflight_steps({}) is None and effective(c) is c and R.run_key(c) == c.key()
    for bad in ("0", "x", "-2"):
        with pytest.raises(ValueError, match=ENV):
            preflight_steps({ENV: bad})
    monkeypatch.setenv(ENV, "2")
    t = effective(c)
    assert t == truncate(c, 2) and effective(t) == t and R.run_key(c) == t.key() != c.key()
    res = R.run(c, tmp_path, progress=False)  # computed as its truncated run
    assert res.key == t.key() and res.metrics["iteration"].tolist() == [0, 2]
    assert R.load(c, tmp_path).key == t.key()
    monkeypatch.delenv(ENV)
    with pytest.raises(R.RunNotFinishedError):
        R.load(c, tmp_path)  # without the switch the full run is not there


def test_materialise_copies_each_signatures_executed_run_to_its_other_runs(tmp_path):
    a = RunConfig(**TINY)
    b = RunConfig(**{**TINY, "seed": 1})                      # a's signature
    c = RunConfig(**{**TINY, "metrics": ("train", "K"), "K_L": 4})  # not executed
    runs = {"nb": [a, b, c]}
    P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False)
    mat = P.materialise(runs, tmp_path, steps=2)
    assert mat["source"].tolist()[0] == "executed" and mat["source"].tolist()[2] == "missing"
    assert mat["source"].iloc[1].startswith("copy of ")
    copied = R.load(truncate(b, 2), tmp_path)  # loads and passes the checksums
    orig = R.load(truncate(a, 2), tmp_path)
    assert copied.config.seed == 1 and copied.metrics.equals(orig.metrics)
    st = R.read_status(tmp_path, truncate(b, 2).key())
    assert st["copy_of"] == truncate(a, 2).key() and "preflight" in st["note"]
    nbs = pd.DataFrame([{"notebook": "nb", "status": "ok", "error": "", "seconds": 3.0}])
    text = P.notebooks_report(mat, nbs, "x", 2)
    assert "| nb " in text and "third stage" in text
    with pytest.raises(R.RunNotFinishedError):
        R.copy_run(truncate(c, 2), truncate(b, 2), tmp_path)


def test_a_budget_leaves_signatures_for_a_resumed_preflight(tmp_path):
    """--budget: a signature not started by the deadline is reported as not run (not a failure);
    --resume: a signature executed without error into the same store is not run again."""
    a = RunConfig(**TINY)
    c = RunConfig(**{**TINY, "metrics": ("train", "K"), "K_L": 4})
    runs = {"nb": [a, c]}
    none = P.execute(runs, tmp_path, steps=2, threads=1, progress=False, deadline=time.perf_counter())
    assert none["skipped"].tolist() == [True, True] and not none["ok"].any()
    assert "time budget" in none["error"].iloc[0]
    saved = []
    first = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False,
                      on_row=lambda row: saved.append(row.iloc[0].to_dict()))
    earlier = {r["group"]: r for r in saved}
    both = P.execute(runs, tmp_path, steps=2, threads=1, progress=False, earlier=earlier)
    assert both["resumed"].tolist() == [True, False] and both["ok"].all()
    assert both["wall_s"].iloc[0] == first["wall_s"].iloc[0]            # the earlier measurement
    other = P.execute({"nb": [a]}, tmp_path / "other", steps=2, threads=1, progress=False, earlier=earlier)
    assert not other["resumed"].iloc[0] and other["ok"].iloc[0]         # not in that store: run
    stood_in = {g: {**r, "data_source": "stand-in (not on disk)"} for g, r in earlier.items()}
    again = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False, earlier=stood_in)
    assert not again["resumed"].iloc[0]              # measured on a stand-in, the data is here now
    assert again["iterations"].iloc[0] == 2 and again["s_per_step"].iloc[0] > 0   # executed afresh
    text = P.execution_report(pd.concat([first, none.iloc[[1]]], ignore_index=True), "x", 1.0, 2)
    assert "1 signatures executed" in text and "1 not run yet" in text and "## Not run yet" in text


def test_signatures_run_cheapest_first_and_a_budget_starts_none_it_cannot_fit(tmp_path, monkeypatch):
    """The plan's estimates order the groups (cheapest first) and gate the budget: a group whose
    estimate runs past the deadline is not started, with its estimate in the report."""
    a = RunConfig(**TINY)
    c = RunConfig(**{**TINY, "metrics": ("train", "K"), "K_L": 4})
    est = P.estimates([truncate(a, 2), truncate(c, 2)], tmp_path)
    assert all(np.isfinite(est)) and 0 < est[0] < est[1]          # K's mini-batch gradients cost more
    monkeypatch.setattr(P, "estimates", lambda cfgs, store, progress=False: [7200.0, 1.0][:len(cfgs)])
    df = P.execute({"nb": [a, c]}, tmp_path, steps=2, threads=1, progress=False,
                   deadline=time.perf_counter() + 600)
    assert df["group"].tolist() == [P.group_of(c), P.group_of(a)]  # c "costs" 1 s, a two hours
    assert df["ok"].tolist() == [True, False] and df["skipped"].tolist() == [False, True]
    assert "estimated 2.0 h, more than the" in df["error"].iloc[1] and df["estimated_s"].iloc[1] == 7200
    text = P.execution_report(df, "x", 1.0, 2)
    assert "## Not run yet" in text and "2.0 h in all" in text


def test_an_estimate_charges_a_parent_only_until_it_is_in_the_store(tmp_path):
    """A child's estimate includes its truncated parent's run while that is not stored, not after:
    a stored parent is copied, not run again."""
    parent = truncate(RunConfig(**TINY), 2)
    child = truncate(RunConfig(**{**TINY, "lr": 0.1,
                                    "init_from": {"config": RunConfig(**TINY).to_dict(), "iteration": 5}}), 2)
    assert RunConfig.from_dict(child.init_from["config"]) == parent
    (alone,), (with_parent,) = P.estimates([parent], tmp_path), P.estimates([child], tmp_path)
    assert with_parent > alone > 0                       # the parent's run is charged to the child
    run(parent, tmp_path, progress=False)
    assert read_status(tmp_path, parent.key())["status"] == "done"
    (after,) = P.estimates([child], tmp_path)
    assert 0 < after < with_parent                       # now only the child's own steps


def test_a_stand_in_data_root_loads_like_the_real_files_and_never_writes_beside_them(tmp_path):
    """Stage 3 executes a notebook whose data set is not on disk on random idx files: they load
    through core.data at the set's full size and shape; the real root's entries and caches are
    linked, the stand-in's decoded cache stays in the temporary root, which is removed."""
    real = tmp_path / "data"
    (real / "breakeven_cache").mkdir(parents=True)
    (real / "breakeven_cache" / "cifar10-jpeg.npz").write_bytes(b"cifar")
    (real / "breakeven_cache" / "mnist-torchvision.npz").write_bytes(b"an old MNIST cache")
    (real / "cifar10-jpeg").mkdir()
    with P.stand_in_root(["mnist"], root=real) as base:
        assert (base / "cifar10-jpeg").resolve() == (real / "cifar10-jpeg").resolve()
        assert (base / "breakeven_cache" / "cifar10-jpeg.npz").read_bytes() == b"cifar"
        assert not (base / "breakeven_cache" / "mnist-torchvision.npz").exists()
        d = load_data("mnist", root=base, n_train=100, n_test=50, download=False)
        assert d.train.x.shape == (100, 1, 28, 28) and len(d.test) == 50 and d.num_classes == 10
        assert d.train.x.std() > 0.5 and set(d.train.y.tolist()) <= set(range(10))   # random, not zeros
        assert (base / "breakeven_cache" / "mnist-torchvision.npz").is_file()       # its cache, here
    assert not base.exists()
    assert (real / "breakeven_cache" / "mnist-torchvision.npz").read_bytes() == b"an old MNIST cache"
    assert sorted(p.name for p in (real / "breakeven_cache").iterdir()) == ["cifar10-jpeg.npz",
                                                                          "mnist-torchvision.npz"]
    with pytest.raises(ValueError, match="cifar100"):
        with P.stand_in_root(["cifar100"], root=real):
            pass


def test_the_budget_scales_the_estimates_by_the_ratio_measured_so_far(tmp_path, monkeypatch):
    """Full-size runs took up to 2x the plan's estimates: the budget and the time left use the
    median measured/estimated ratio of the signatures executed (estimates of 5 min or more)."""
    row = {"ok": True, "skipped": False}
    assert P.estimate_scale([]) == 1.0
    assert P.estimate_scale([{**row, "wall_s": 600.0, "estimated_s": 300.0},
                             {**row, "wall_s": 900.0, "estimated_s": 600.0},
                             {**row, "wall_s": 8000.0, "estimated_s": 1000.0}]) == 2.0      # the median
    assert P.estimate_scale([{**row, "wall_s": 60.0, "estimated_s": 10.0},                  # too short
                             {**row, "ok": False, "wall_s": 9000.0, "estimated_s": 600.0},  # failed
                             {**row, "wall_s": None, "estimated_s": 600.0}]) == 1.0
    assert P.estimate_scale([{**row, "wall_s": 300.0, "estimated_s": 600.0}]) == 1.0       # at least 1
    a = RunConfig(**TINY)
    monkeypatch.setattr(P, "estimates", lambda cfgs, store, progress=False: [400.0] * len(cfgs))
    earlier = {"another signature": {**row, "group": "another signature", "wall_s": 1200.0,
                                      "estimated_s": 600.0}}
    df = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False, earlier=earlier,
                   deadline=time.perf_counter() + 600)
    assert df["skipped"].tolist() == [True]                          # 400 s x 2.0 > 600 s left
    assert "(13 min at the 2.0x measured so far), more than the" in df["error"].iloc[0]
    df = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False,
                   deadline=time.perf_counter() + 600)
    assert df["ok"].tolist() == [True]                               # unscaled, 400 s fits
    text = P.execution_report(pd.concat([df.assign(wall_s=1200.0, estimated_s=600.0),
                                         df.assign(group="g2", ok=False, skipped=True)],
                                        ignore_index=True), "x", 1.0, 2)
    assert "13 min at their median ratio (2.0x" in text


def test_the_progress_line_counts_only_signatures_left_to_run(tmp_path, monkeypatch, capsys):
    """A resumed signature (already in the store) is neither time nor a count in "the rest"."""
    a = RunConfig(**TINY)
    c = RunConfig(**{**TINY, "metrics": ("train", "K"), "K_L": 4})
    first = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False)
    earlier = {r["group"]: r for r in first.to_dict("records")}
    monkeypatch.setattr(P, "estimates", lambda cfgs, store, progress=False: [600.0, 1.0][:len(cfgs)])
    df = P.execute({"nb": [a, c]}, tmp_path, steps=2, threads=1, progress=True, earlier=earlier)
    assert df["resumed"].tolist() == [False, True]                     # c ran, then a came from before
    out = capsys.readouterr()
    line = next(x for x in (out.out + out.err).splitlines() if "the rest:" in x)
    assert "the rest: 0 signatures, 0 s by the plan's estimates" in line, line


def test_the_report_counts_each_notebooks_signatures_ok_failed_and_not_run():
    """A report over the saved rows of several notebooks says per notebook how far it got; a
    signature two notebooks share counts for both, one not run yet is not a failure."""
    rows = pd.DataFrame([
        {"group": "a", "notebooks": "nb1", "ok": True, "skipped": False},
        {"group": "b", "notebooks": "nb1, nb2", "ok": True, "skipped": False},
        {"group": "c", "notebooks": "nb2", "ok": False, "skipped": False},
        {"group": "d", "notebooks": "nb2", "ok": False, "skipped": True},
    ])
    got = P.per_notebook(rows).set_index("notebook")
    assert got.loc["nb1"].tolist() == [2, 2, 0, 0]
    assert got.loc["nb2"].tolist() == [3, 1, 1, 1]
    assert got.columns.tolist() == ["signatures", "ok", "failed", "not run yet"]
    full = rows.assign(peak_mb=2.0, start_mb=1.0, s_per_step=0.1, s_per_measurement=1.0,
                       slowest_metric="train", slowest_metric_s=1.0, wall_s=10.0, estimated_s=5.0,
                       key="k", runs=1, data_source="on disk", resumed=False, error="")
    text = P.execution_report(full, "x", 1.0, 2)
    assert "## Per notebook" in text and re.search(r"\| nb2 +\| +3 \| +1 \| +1 \| +1 \|", text)


def test_a_resumed_signature_counts_once_in_the_scale_with_the_estimate_it_was_measured_against(
        tmp_path, monkeypatch):
    """A signature resumed from the store keeps the estimate its wall time was measured against
    (its parent, run then in its process, is no longer charged once stored) and counts once: the
    budget's scale is the ratio measured, not one inflated by the cheaper estimate of now."""
    a = RunConfig(**TINY)
    c = RunConfig(**{**TINY, "metrics": ("train", "K"), "K_L": 4})
    first = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False)
    earlier = {r["group"]: {**r, "wall_s": 1200.0, "estimated_s": 1200.0}    # measured at 1.0x
               for r in first.to_dict("records")}
    assert P.measured(earlier, [{**earlier[P.group_of(a)], "resumed": True, "estimated_s": 350.0}]) \
        == list(earlier.values())
    monkeypatch.setattr(P, "estimates", lambda cfgs, store, progress=False: [350.0, 400.0][:len(cfgs)])
    df = P.execute({"nb": [a, c]}, tmp_path, steps=2, threads=1, progress=False, earlier=earlier,
                   deadline=time.perf_counter() + 600)
    assert df["resumed"].tolist() == [True, False] and df["estimated_s"].iloc[0] == 1200.0
    assert df["ok"].tolist() == [True, True]     # 400 s at 1.0x fits; at 1200 / 350 = 3.4x it did not


def test_the_bar_counts_estimated_seconds_of_the_signatures_this_call_runs(tmp_path, monkeypatch):
    """The signatures bar's time left is honest: it counts the plan's estimated seconds of the
    signatures to run (tqdm's time left is then the estimates left at the measured rate), not a
    count in which resumed signatures pass instantly; one the budget skips leaves its total."""
    a = RunConfig(**TINY)
    c = RunConfig(**{**TINY, "metrics": ("train", "K"), "K_L": 4})
    d = RunConfig(**{**TINY, "metrics": ("train", "test")})
    first = P.execute({"nb": [a]}, tmp_path, steps=2, threads=1, progress=False)
    earlier = {r["group"]: r for r in first.to_dict("records")}
    real, bars = P.tqdm, []

    def recording(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        bars[-1].initial_total = kwargs.get("total")
        return bars[-1]

    monkeypatch.setattr(P, "tqdm", recording)
    monkeypatch.setattr(P, "estimates",
                        lambda cfgs, store, progress=False: [600.0, 400.0, 5000.0][:len(cfgs)])
    df = P.execute({"nb": [a, c, d]}, tmp_path, steps=2, threads=1, progress=True, earlier=earlier,
                   deadline=time.perf_counter() + 900)
    assert dict(zip(df["group"], zip(df["resumed"], df["skipped"], df["ok"]))) == {
        P.group_of(a): (True, False, True), P.group_of(c): (False, False, True),
        P.group_of(d): (False, True, False)}
    (bar,) = [b for b in bars if b.desc.startswith("preflight: signatures")]
    assert bar.initial_total == 5400          # c and d; a, resumed, is not work of this call
    assert (bar.n, bar.total) == (400, 400)   # c done; d, skipped by the budget, left the total
