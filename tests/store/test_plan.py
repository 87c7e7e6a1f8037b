"""The cost plan: the cost model's arithmetic, the calibration cache, the tables,
cached runs, and scripts/reproduce.py --plan with its input checks."""
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from breakeven_utils.papers import registry
from breakeven_utils.recorder import RunConfig
from breakeven_utils.store import plan

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

C = RunConfig(dataset="synthetic", n_train=512, n_val=64, n_test=128, n_measure=64, model="mlp",
              model_kwargs={"hidden": (8,)}, batch_size=32, max_epochs=2, measure_every=4,
              measure_dense_until=8, K_L=4, K_M=16, hessian_n=32, hessian_k=2,
              metrics=("train", "val", "test", "lambda_H", "K", "grad_cos"))


def fake_calibration(c):
    s = plan.sizes(c)
    sk = plan._shape_key(c, s)
    rk = plan._rule_key(c, sk)
    return {"shapes": {sk: {"fb_a": 0.01, "fb_b": 0.001, "eval_b": 1e-4, "hvp_a": 0.02,
                            "hvp_b": 0.002, "n_params": 1000}},
            "lanczos": {json.dumps([c.hessian_k, c.hessian_tol, c.hessian_which]): 12},
            "rules": {rk: {"update": 0.001, "on_start_per_example": 0.0, "epoch_per_example": 0.0}},
            "metrics": {}, "device": {"gram_flops": 1e9, "eigh_c": 1e-9}}


def test_cost_model_arithmetic():
    s = plan.sizes(C)
    assert (s["bpe"], s["iterations"]) == (16, 32)
    assert s["n_measurements"] == 4  # 0, 4 (every 4 below 8), 16 and 32 (epoch ends)
    cost = plan.run_cost(C, fake_calibration(C))
    assert cost["train"] == pytest.approx(32 * (0.01 + 0.001 * 32 + 0.001))
    per = cost["per_measurement"]
    assert per["train"] == pytest.approx(1e-4 * 64) and per["val"] == pytest.approx(1e-4 * 64)
    assert per["test"] == pytest.approx(1e-4 * 128)
    # 12 HVPs on 32 examples + the graph the 'cached' HVPs build
    assert per["lambda_H"] == pytest.approx(12 * (0.02 + 0.002 * 32) + (0.01 + 0.001 * 32))
    assert per["K"] == pytest.approx(4 * (0.01 + 0.001 * 16)) and per["grad_cos"] == 0
    assert cost["measure"] == pytest.approx(4 * sum(per.values()))
    assert cost["total"] == pytest.approx(cost["train"] + cost["measure"] + cost["once"])


def test_lanczos_solves_cost_hvp_counts_times_one_hvp():
    """hessian_top and an NSGD-type rule's eigenvector refreshes: the proxy's cold HVP
    count times one HVP on their examples (not timed as plugins); the Fig. 4 probes from
    passes and evaluations; NSGD steps as SGD (one shared rule timing)."""
    c = C.replace(metrics=("train", "hessian_top", "sharpest_probe"), hessian_k=5, hessian_which="LM",
                  update_rule="nsgd", rule_kwargs={"gamma": 0.1, "k": 2, "refresh": "epoch",
                                                   "hessian_n": 32})
    cal = fake_calibration(C)
    s = plan.sizes(c)
    assert plan._rule_key(c, plan._shape_key(c, s)) == plan._rule_key(C, plan._shape_key(C, s))
    cal["rules"] = {plan._rule_key(c, plan._shape_key(c, s)): cal["rules"].popitem()[1]}
    cal["lanczos"].update({json.dumps([5, C.hessian_tol, "LM"]): 20,
                           json.dumps([2, C.hessian_tol, "LM"]): 11})
    assert plan._rule_solves(c, s) == [(2, C.hessian_tol, "LM", 32, 2)]  # refreshed at 2 epoch starts
    cost = plan.run_cost(c, cal)
    hvp, fb, ev = (lambda n: 0.02 + 0.002 * n), (lambda n: 0.01 + 0.001 * n), 1e-4
    assert cost["per_measurement"]["hessian_top"] == pytest.approx(20 * hvp(32) + fb(32))
    # 10 gradients at S, e_1/e_3/e_5 lines of 33 points, 5 x 10 + 1 alpha points on 32 examples
    assert cost["per_measurement"]["sharpest_probe"] == pytest.approx(10 * fb(32) + ev * 32 * (33 * 3 + 51))
    assert cost["train"] == pytest.approx(32 * (fb(32) + 0.001) + 2 * 11 * hvp(32))
    with pytest.raises(KeyError):  # the plugin timing table is not used for them
        cal["metrics"][json.dumps([plan._shape_key(c, s), "hessian_top"])]


def test_stale_calibration_entries_are_redone(tmp_path, monkeypatch):
    """A cached entry of an older calibration layout (no version) is measured again,
    not read with missing fields."""
    c = C.replace(metrics=("train",))
    path = tmp_path / "_plan" / "calibration.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({plan._device_key("cpu"): {"created": 1e12, "shapes": {}, "rules": {},
                                                          "metrics": {}, "lanczos": {}}}))
    assert plan.calibrate([c], "cpu", tmp_path, progress=False, cached_only=True) is None
    monkeypatch.setattr(plan, "_calibrate_shape",
                        lambda *a, **k: {"fb_sizes": [8, 32], "hessian_chunked": False})
    monkeypatch.setattr(plan, "_calibrate_rule", lambda *a, **k: {"update": 0.0})
    monkeypatch.setattr(plan, "_calibrate_device", lambda *a, **k: {})
    cal = plan.calibrate([c], "cpu", tmp_path, progress=False)
    assert cal["version"] == plan.CAL_VERSION and cal["calibrated_now"] == 3
    again = plan.calibrate([c], "cpu", tmp_path, progress=False, cached_only=True)
    assert again is not None and again["calibrated_now"] == 0


def test_measurement_count_matches_the_loop():
    from breakeven_utils.core.data import load_data
    from breakeven_utils.recorder import train

    c = C.replace(metrics=("train",))
    out = train(c, data=load_data("synthetic", n_train=512, n_val=64, n_test=128, n_measure=64),
                progress=False)
    assert len(out.rows) == plan.sizes(c)["n_measurements"] and out.iterations == 32


def test_plan_smoke_tables_cache_and_cached_runs(tmp_path):
    runs = registry.notebook_runs("smoke", ["01_break_even"])
    p = plan.plan(runs, "smoke", device="cpu", store=tmp_path, progress=False)
    df = p["runs"]
    assert len(df) == 3 and (df["cost_s"] > 0).all() and set(df["cached"]) == {"no"}
    assert (tmp_path / "_plan" / "calibration.json").exists() and p["calibration"]["calibrated_now"]
    # a stored run is marked cached and left out of the totals to compute
    key = next(c.key() for c in runs["01_break_even"])
    (tmp_path / key).mkdir()
    (tmp_path / key / "status.json").write_text(json.dumps({"status": "done"}))
    again = plan.plan(runs, "smoke", device="cpu", store=tmp_path, progress=False)
    assert again["calibration"]["calibrated_now"] == 0  # the cached calibration
    assert again["runs"]["cached"].tolist().count("yes") == 1
    text = plan.plan_tables(again, jobs=2)
    assert "## 01_break_even: 3 runs" not in text and "make plan ROWS=1" in text  # totals only
    assert "All data sets the runs need are on disk." in text  # smoke: synthetic data
    assert text.index("## Totals") < text.index("Calibration:")
    assert "| 01_break_even       |    3 |      1 |      2 |" in text
    rows = plan.plan_tables(again, jobs=2, rows=True)
    assert "## 01_break_even: 3 runs" in rows and rows.index("## Totals") < rows.index("## 01_break_even")


def test_plan_names_the_data_sets_missing_from_disk_first(tmp_path, monkeypatch):
    monkeypatch.setenv("BREAKEVEN_DATA", str(tmp_path))  # an empty data root
    df = pd.DataFrame({"notebook": ["04_walk_with_sgd", "04_walk_with_sgd", "05_sharpest_directions_nsgd"],
                       "data": ["mnist", "mnist", "cifar100"]})
    lines = plan.missing_data(df)
    assert len(lines) == 2 and "MNIST is not on disk" in lines[0]
    assert "2 run(s) of 04_walk_with_sgd" in lines[0]
    assert "CIFAR-100" in lines[1] and str(tmp_path) in lines[1]
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"")
    assert [ln for ln in plan.missing_data(df) if "MNIST is" in ln] == []
    assert plan.on_disk("mnist") and not plan.on_disk("cifar10") and plan.on_disk("synthetic")
    (tmp_path / "cifar10-jpeg" / "train").mkdir(parents=True)
    (tmp_path / "breakeven_cache").mkdir()
    (tmp_path / "breakeven_cache" / "cifar100-torchvision.npz").write_bytes(b"")
    assert plan.on_disk("cifar10") and plan.on_disk("cifar100")
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        plan.on_disk("imagenet")


ENV = ("BREAKEVEN_EXECUTOR", "BREAKEVEN_SCHEDULER", "BREAKEVEN_DEVICE", "BREAKEVEN_RUNS",
       "BREAKEVEN_THREADS", "BREAKEVEN_SLURM_CONFIG")


def test_reproduce_plan_prints_every_notebook(tmp_path, capsys, monkeypatch):
    for var in ENV:  # reproduce.main sets them for the notebooks; restored afterwards
        monkeypatch.delenv(var, raising=False)
    assert reproduce.main(["--plan", "--profile", "smoke", "--run-store", str(tmp_path),
                           "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for sec in registry.SECTIONS:
        assert f"| {sec.notebook}" in out  # its totals row


def test_plan_overheads_and_fresh_times_from_the_manifest(tmp_path):
    """#21: the plan adds each notebook's own time from its last redraw (else a default), and
    reproduce records a fresh wall time only when an execution computed every run."""
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps({"notebooks": {
        "01_break_even": {"profile": "cpu", "status": "ok", "runs": 7, "runs_computed": 0,
                          "wall_time_s": 22.5},
        "02_conjectures": {"profile": "cpu", "status": "ok", "runs": 24, "runs_computed": 24,
                           "wall_time_s": 2000.0, "code": "abc", "git_commit": "1234567890", "cpu_count": 2},
        "03_batchnorm": {"profile": "paper", "status": "ok", "runs_computed": 0, "wall_time_s": 5.0}}}))
    names = ["01_break_even", "02_conjectures", "03_batchnorm", "04_walk_with_sgd"]
    over = plan.notebook_overheads(m, "cpu", names)
    d = plan.DEFAULT_OVERHEAD_S
    assert over == {"01_break_even": 22.5, "02_conjectures": d, "03_batchnorm": d, "04_walk_with_sgd": d}
    entries = json.loads(m.read_text())["notebooks"]
    assert reproduce.fresh_run_entry(entries["01_break_even"]) == {}  # a redraw is no fresh run
    f = reproduce.fresh_run_entry(entries["02_conjectures"], jobs=2)
    assert f["fresh_run_wall_time_s"] == 2000.0 and "24 runs computed" in f["fresh_run_note"]
    assert "2 job(s) x 1 thread(s)" in f["fresh_run_note"] and "git 1234567" in f["fresh_run_note"]
    assert reproduce.fresh_run_entry(dict(entries["02_conjectures"], runs_computed=23)) == {}
    assert reproduce.fresh_run_entry(dict(entries["02_conjectures"], status="failed")) == {}


@pytest.mark.parametrize("argv, match", [
    (["--executor", "slrum"], "unknown executor 'slrum'"),
    (["--executor", "dask"], "run store to a path on a file system every worker"),
    (["--executor", "dask", "--run-store", "/shared/runs"], "SCHEDULER=host:port"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--profile", "papr"], "unknown profile 'papr'"),
])
def test_reproduce_rejects_bad_settings_before_running(argv, match, monkeypatch, tmp_path):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(reproduce, "run_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    with pytest.raises(SystemExit, match=match):
        reproduce.main(argv + ["--notebook-dir", str(tmp_path)])


def test_rule_hooks_that_need_more_than_the_calibration_data_do_not_stop_the_plan():
    """The walk's noise rule draws 50 mini-batches of 100 at theta_0 (on_start): more than
    the 256 calibration examples. Its hook costs NaN (zero in the run's cost), the step is
    timed as a plain SGD step, and the run's cost stays finite."""
    c = RunConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": [16]}, optimizer="gd_noise",
                  noise_factor=0.1, update_rule="gd_noise_minibatch",
                  rule_kwargs={"noise_batch_size": 100, "n_batches": 50}, max_epochs=1,
                  metrics=("train",))
    r = plan._calibrate_rule(c, plan.sizes(c), "cpu")
    assert math.isnan(r["on_start_per_example"]) and r["update"] > 0


def test_plugin_metric_costs_scale_with_the_measurement_set_unless_per_call(monkeypatch):
    """A plugin metric without a cost hook is timed per example of the measurement set;
    rho_W (the weights' spectral norms) costs the same per call whatever the measurement set;
    walk_interp's own hook charges len(ALPHAS) evaluation passes over the training set."""
    from breakeven_utils.papers.walk import measures as walk
    from breakeven_utils.recorder import metrics

    monkeypatch.setitem(metrics.USER_METRICS, "timed_probe", lambda ctx: {})
    c = C.replace(metrics=("timed_probe", "rho_W", "walk_interp"), n_measure=64)
    cal = fake_calibration(c)
    sk = plan._shape_key(c, plan.sizes(c))
    cal["metrics"] = {json.dumps([sk, "timed_probe"]): 0.001, json.dumps([sk, "rho_W"]): 0.05}
    per = plan.run_cost(c, cal)["per_measurement"]
    assert per["timed_probe"] == pytest.approx(0.001 * 64) and per["rho_W"] == pytest.approx(0.05)
    ev = cal["shapes"][sk]["eval_b"]
    assert per["walk_interp"] == pytest.approx(len(walk.ALPHAS) * ev * plan.sizes(c)["n_train"])


def test_makespan_is_the_busiest_worker():
    assert plan.makespan([10, 1, 1, 1], 2) == 10  # not (10 + 3) / 2
    assert plan.makespan([3, 3, 3, 3], 2) == 6
    assert plan.makespan([], 2) == 0 and plan.makespan([5, 5], 1) == 10


def test_jobs_is_a_positive_integer_or_auto_and_auto_on_the_cpu_keeps_the_defaults(tmp_path, capsys,
                                                                                   monkeypatch):
    import argparse
    assert reproduce.jobs_arg("3") == 3 and reproduce.jobs_arg(" AUTO ") == "auto"
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or 'auto'"):
            reproduce.jobs_arg(bad)
    monkeypatch.setenv("BREAKEVEN_DEVICE", "cpu")
    nbs = [tmp_path / "01_break_even.ipynb", tmp_path / "02_conjectures.ipynb"]
    args = argparse.Namespace(jobs="auto", gpu_mem=None, profile="smoke")
    assert reproduce.resolve_jobs(args, nbs) == {"01_break_even": None, "02_conjectures": None}
    assert "--jobs auto on the CPU" in capsys.readouterr().out
    args.jobs = 2
    assert reproduce.resolve_jobs(args, nbs) == {"01_break_even": 2, "02_conjectures": 2}


def test_the_plan_prints_each_runs_gpu_memory_from_the_preflight(tmp_path, capsys, monkeypatch):
    """#22 item 3: the plan's memory table reads figures/preflight_<profile>.json."""
    from breakeven_utils.store import preflight
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    runs = registry.notebook_runs("smoke", ["01_break_even"])
    g = preflight.groups(runs)
    res = {"profile": "smoke", "groups": [{"group": e["group"], "ok": True, "start_mb": 700.0,
                                           "peak_mb": 700.0 + 1024 * 3} for e in g]}
    path = tmp_path / "preflight_smoke.json"
    path.write_text(json.dumps(res))
    monkeypatch.setattr(reproduce, "preflight_results", lambda profile: path)
    assert reproduce.main(["--plan", "--profile", "smoke", "--notebooks", "01_break_even", "--run-store",
                           str(tmp_path / "runs"), "--device", "cpu", "--gpu-mem", "40"]) == 0
    out = capsys.readouterr().out
    # 3 GB per run + 1 GB of CUDA per process: 10 on a 40 GB GPU
    import re
    assert "on a GPU of 40 GB" in out and "(GPU_MEM)" in out
    assert re.search(r"\| 01_break_even \|\s+3 \|\s+3 \|\s+10 \|\s+0 \|", out), out[-600:]
