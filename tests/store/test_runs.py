"""Run store: caching, resume after a kill, divergence, corruption, mismatch, sweeps."""
import json
import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from breakeven_utils.recorder import RunConfig
from breakeven_utils.recorder import metrics as M
from breakeven_utils.store import runs as records
from breakeven_utils.store.runs import (
    ConfigMismatchError,
    CorruptRunError,
    RunNotFinishedError,
    RunStoreError,
    load,
    run,
)
from breakeven_utils.store.sweeps import sweep

TINY = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
            model_kwargs={"hidden": (16,)}, batch_size=32, lr=0.05, max_epochs=2,
            measure_every=4, K_L=4, metrics=("train", "val", "delta_loss", "grad_cos"))
RICH = ("train", "val", "test", "delta_loss", "lambda_H", "K", "dist_init", "grad_cos",
        "grad_norm", "softmax")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw):
    return RunConfig(**{**TINY, **kw})


def status(root, c):
    return json.loads((root / c.key() / "status.json").read_text())


def assert_same_result(a, b):
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
    assert sorted(a.arrays) == sorted(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    sa, sb = a.softmax(), b.softmax()
    assert (sa is None) == (sb is None)
    if sa is not None:
        np.testing.assert_array_equal(sa, sb)
    assert a.crossings == b.crossings and a.status == b.status


# ----------------------------------------------------------------------------- caching


def test_done_run_loads_without_training(tmp_path, monkeypatch):
    c = tiny(metrics=RICH, acc_thresholds=(0.3,))
    first = run(c, tmp_path, progress=False)
    assert first.status == "done" and len(first.metrics) == 5
    files = sorted(p.name for p in (tmp_path / c.key()).iterdir())
    assert files == [".lock", "arrays.npz", "config.json", "metrics.parquet", "softmax.npy",
                     "status.json"]  # no temporary files, checkpoint removed when done
    assert first.softmax().shape == (5, 64, 10)
    assert first.arrays["H_top"].shape == (5, 1) and first.arrays["K_eigs"].shape == (5, 3)
    assert "lr_t" in first.metrics and "0.3" in first.crossings

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(records, "train", boom)
    again = run(c, tmp_path, progress=False)
    assert_same_result(first, again)
    assert_same_result(first, load(c, tmp_path))
    assert_same_result(first, load(c.key(), tmp_path))
    assert status(tmp_path, c)["n_starts"] == 1
    with pytest.raises(RunNotFinishedError):
        load(c.replace(lr=0.07), tmp_path)


def test_store_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BREAKEVEN_RUNS", str(tmp_path / "env_runs"))
    c = tiny(max_epochs=1, metrics=("train",))
    run(c, progress=False)
    assert (tmp_path / "env_runs" / c.key() / "status.json").exists()
    assert records.list_runs()["status"].tolist() == ["done"]


# ----------------------------------------------------------------------------- resume


class Kill(Exception):
    pass


def kill_at(n):
    def hook(info):
        if info["iteration"] == n:
            raise Kill(f"killed at {n}")
    return hook


@pytest.mark.parametrize("kw, every, at", [
    (dict(momentum=0.9, metrics=RICH), "measure", 10),  # momentum buffers, Hessian warm start
    (dict(optimizer="gd_noise", noise_factor=0.1, max_epochs=None, max_iters=12,
          metrics=("train", "grad_cos", "param_norm")), 5, 10),  # noise generator state
    # plateau scheduler state: lr halves at epoch 2 (iteration 16), killed after it
    (dict(schedule="plateau", plateau_patience=0, plateau_factor=0.5, lr=1.0, max_epochs=4,
          momentum=0.5, metrics=("train", "val")), 3, 20),
])
def test_resume_after_kill_equals_uninterrupted(tmp_path, kw, every, at):
    c = tiny(**kw)
    ref = run(c, tmp_path / "a", progress=False, checkpoint_every=every)
    with pytest.raises(Kill):
        run(c, tmp_path / "b", progress=False, checkpoint_every=every, hooks=[kill_at(at)])
    st = status(tmp_path / "b", c)
    assert st["status"] == "failed" and f"killed at {at}" in st["error"]
    assert (tmp_path / "b" / c.key() / "checkpoint.pt").exists()
    with pytest.raises(RunNotFinishedError, match="failed"):
        load(c, tmp_path / "b")
    resumed = run(c, tmp_path / "b", progress=False, checkpoint_every=every)
    st = status(tmp_path / "b", c)
    assert st["n_starts"] == 2 and 0 < st["resumed_from"] <= at
    assert_same_result(ref, resumed)


def test_resume_after_sigkill_in_another_process(tmp_path):
    c = tiny(momentum=0.9, metrics=("train", "lambda_H", "grad_cos", "delta_loss"))
    script = textwrap.dedent(f"""
        import os, signal, json, torch
        torch.set_num_threads(1)
        from breakeven_utils.recorder import RunConfig
        from breakeven_utils.store.runs import run
        c = RunConfig.from_dict(json.loads({c.to_json()!r}))
        def hook(info):
            if info["iteration"] == 11:
                os.kill(os.getpid(), signal.SIGKILL)
        run(c, {str(tmp_path / 'b')!r}, progress=False, hooks=[hook])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert status(tmp_path / "b", c)["status"] == "running"  # died without a word
    resumed = run(c, tmp_path / "b", progress=False)  # the lock died with the process
    assert status(tmp_path / "b", c)["resumed_from"] == 8
    assert_same_result(run(c, tmp_path / "a", progress=False), resumed)


# ----------------------------------------------------------------------------- faults


def test_huge_learning_rate_is_diverged_not_an_error(tmp_path):
    bad, good = tiny(lr=1e4, metrics=("train",)), tiny(metrics=("train",))
    res = run(bad, tmp_path, progress=False)
    assert res.status == "diverged" and isinstance(res.diverged_at, int)
    assert status(tmp_path, bad)["diverged_at"] == res.diverged_at
    df = sweep([bad, good], tmp_path, progress=False)  # the sweep continues
    assert set(df["status"]) == {"diverged", "done"}
    assert (df[df.status == "diverged"]["iteration"] <= res.diverged_at).all()
    assert len(df[df.status == "done"]) == 5


def test_corrupt_metrics_file_is_detected(tmp_path, monkeypatch):
    c = tiny()
    run(c, tmp_path, progress=False)
    path = tmp_path / c.key() / "metrics.parquet"
    # an equally valid parquet file with different numbers: only the checksum tells
    df = pd.read_parquet(path)
    df.loc[0, "train_loss"] += 1.0
    df.to_parquet(path, index=False)
    with pytest.raises(CorruptRunError, match="checksum"):
        load(c, tmp_path)
    monkeypatch.setattr(records, "train", lambda *a, **k: pytest.fail("recomputed silently"))
    with pytest.raises(CorruptRunError):
        run(c, tmp_path, progress=False)
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptRunError):
        load(c, tmp_path)
    path.unlink()
    with pytest.raises(CorruptRunError, match="missing"):
        load(c, tmp_path)
    (tmp_path / c.key() / "status.json").write_text('{"status": "do')
    with pytest.raises(CorruptRunError, match="not valid JSON"):
        load(c, tmp_path)


def test_config_or_version_mismatch_is_never_reused(tmp_path):
    c = tiny(max_epochs=1)
    run(c, tmp_path, progress=False)
    cfg_file = tmp_path / c.key() / "config.json"
    rec = json.loads(cfg_file.read_text())
    rec["config"]["lr"] = 0.5
    cfg_file.write_text(json.dumps(rec))
    with pytest.raises(ConfigMismatchError, match="lr"):
        run(c, tmp_path, progress=False)
    rec["config"]["lr"] = c.lr
    rec["version"] = "0.0.1"
    cfg_file.write_text(json.dumps(rec))
    with pytest.raises(ConfigMismatchError, match="0.0.1"):
        load(c, tmp_path)
    assert c.key() != c.key(version="0.0.1")


def test_failed_runs_in_a_sweep(tmp_path):
    @M.register_metric("fails_test")
    def fails(ctx):
        if ctx.iteration >= 4:
            raise RuntimeError("estimator broke")
        return {}

    try:
        bad, good = tiny(metrics=("train", "fails_test")), tiny()
        with pytest.raises(RunStoreError, match="estimator broke"):
            sweep([bad, good], tmp_path, progress=False)
        df = sweep([bad, good], tmp_path, progress=False, errors="record")
        assert set(df["key"]) == {good.key()}
        assert [f["key"] for f in df.attrs["failed"]] == [bad.key()]
        assert status(tmp_path, bad)["status"] == "failed"
    finally:
        M.USER_METRICS.pop("fails_test")


def test_compute_time_sums_the_stored_seconds_of_the_runs_used(tmp_path):
    a, b = tiny(), tiny(lr=0.1)
    t0 = time.time()
    df = sweep([a, b, a], tmp_path, progress=False)
    sa, sb = status(tmp_path, a), status(tmp_path, b)
    assert sa["seconds"] > 0 and 0 < sa["measure_seconds"] < sa["seconds"]
    ct = records.compute_time(df, tmp_path, since=t0)
    assert ct == {"runs": 2, "compute_seconds": round(sa["seconds"] + sb["seconds"], 1),
                  "measure_seconds": round(sa["measure_seconds"] + sb["measure_seconds"], 1),
                  "runs_without_time": [], "code": records.code_fingerprint(), "runs_by_other_code": 0,
                  "runs_computed": 2, "computed_seconds": round(sa["seconds"] + sb["seconds"], 1)}
    # a redraw loads the runs: it still reports what they cost, but computed none of them
    t1 = time.time()
    again = records.compute_time(sweep([a, b], tmp_path, progress=False), tmp_path, since=t1)
    assert again["compute_seconds"] == ct["compute_seconds"]
    assert (again["runs_computed"], again["computed_seconds"]) == (0, 0.0)
    # RunResults, configs and keys mixed (each once); a run not in the store has no time
    ghost = "0" * 64
    mixed = records.compute_time([load(a, tmp_path), b, a.key(), ghost], tmp_path)
    assert mixed["runs"] == 3 and mixed["runs_without_time"] == [ghost]
    assert mixed["compute_seconds"] == ct["compute_seconds"] and "runs_computed" not in mixed
    df.attrs["failed"] = [{"key": ghost, "error": "broke"}]  # a sweep's failed runs count, without time
    assert records.compute_time(df, tmp_path)["runs_without_time"] == [ghost]
    with pytest.raises(TypeError, match="compute_time takes"):
        records.compute_time([1.5], tmp_path)


# ----------------------------------------------------------------------------- sweeps


def grid():
    return [tiny(lr=lr, batch_size=b) for lr in (0.02, 0.1) for b in (16, 32)]


def test_sweep_is_tidy(tmp_path):
    cs = grid()
    df = sweep(cs + cs[:1], tmp_path, progress=False)  # duplicates run once
    assert df["key"].nunique() == 4 and len(df) == sum(
        len(load(c, tmp_path).metrics) for c in cs)
    assert {"lr", "batch_size", "lr_t", "train_acc", "iteration", "status", "model"} <= set(df)
    assert df.groupby(["lr", "batch_size"]).size().to_dict() == {
        (0.02, 16): 9, (0.02, 32): 5, (0.1, 16): 9, (0.1, 32): 5}


def test_process_pool_sweep_equals_serial_sweep(tmp_path):
    cs = grid()
    serial = sweep(cs, tmp_path / "serial", progress=False)
    # bitwise equality needs the same torch thread count as this process
    pooled = sweep(cs, tmp_path / "pool", jobs=2, threads_per_job=1, progress=False)
    pd.testing.assert_frame_equal(serial, pooled, check_exact=True)
    for c in cs:
        assert status(tmp_path / "pool", c)["n_starts"] == 1


class InlineExecutor:
    """The smallest executor: submit(fn, *args) -> object with .result() (like submitit/Dask)."""

    def __init__(self):
        self.calls = 0

    def submit(self, fn, *args, **kwargs):
        self.calls += 1
        f = Future()
        f.set_result(fn(*args, **kwargs))
        return f


def test_any_executor_with_submit_works(tmp_path):
    ex = InlineExecutor()
    cs = grid()[:2]
    df = sweep(cs, tmp_path, executor=ex, progress=False)
    assert ex.calls == 2 and df["key"].nunique() == 2


def test_overlapping_sweeps_compute_each_run_once(tmp_path):
    cs = [c.replace(max_epochs=4) for c in grid()]
    a, b = cs[:3], [cs[0], cs[3], cs[1]]  # both start with the same run
    out = {}
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads, initargs=(1,))
    try:
        t = threading.Thread(target=lambda: out.setdefault(
            "a", sweep(a, tmp_path, executor=pool, progress=False)))
        t.start()
        # wait until a worker is computing the shared run, then ask for it here too
        first = tmp_path / cs[0].key() / "status.json"
        deadline = time.time() + 120
        while not (first.exists() and '"running"' in first.read_text()):
            assert time.time() < deadline, "the pool never started"
            time.sleep(0.02)
        out["b"] = sweep(b, tmp_path, progress=False)  # in this process, at the same time
        t.join()
    finally:
        pool.shutdown()
    for c in cs:
        assert status(tmp_path, c)["n_starts"] == 1, c
    for c in (cs[0], cs[1]):
        ra = out["a"][out["a"].key == c.key()].reset_index(drop=True)
        rb = out["b"][out["b"].key == c.key()].reset_index(drop=True)
        pd.testing.assert_frame_equal(ra, rb, check_exact=True)


def test_a_second_caller_waits_for_the_running_computation(tmp_path, monkeypatch):
    c = tiny()
    started = threading.Event()
    calls = []
    real_train = records.train
    monkeypatch.setattr(records, "train",
                        lambda *a, **k: (calls.append(1), real_train(*a, **k))[1])

    def slow(info):
        started.set()
        time.sleep(0.05)

    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "first", run(c, tmp_path, progress=False, hooks=[slow])))
    t.start()
    assert started.wait(60)
    second = run(c, tmp_path, progress=False)  # blocks on the lock, then loads
    t.join()
    assert len(calls) == 1 and status(tmp_path, c)["n_starts"] == 1
    assert_same_result(res["first"], second)


def test_runs_know_the_code_that_computed_them(tmp_path, monkeypatch, capsys):
    """Issue 24: a stored run records the fingerprint of the code that computed it; a sweep
    reports runs computed by other code and, with recompute='stale', computes them again."""
    c = tiny()
    first = records.run(c, tmp_path, progress=False)
    assert first.info["code"] == records.code_fingerprint() and len(records.code_fingerprint()) == 16
    assert records.stale_reason(first.info) == ""
    assert "before code fingerprints" in records.stale_reason({"status": "done"})
    df = sweep([c], tmp_path, progress=False)
    assert df.attrs["stale"] == [] and "computed by other code" not in capsys.readouterr().out
    # the loop changes: the same configuration (same key) was computed by other code
    records.code_fingerprint.cache_clear()
    monkeypatch.setattr(records, "code_fingerprint", lambda: "0123456789abcdef")
    assert "computed by other code (fingerprint" in records.stale_reason(first.info)
    df = sweep([c], tmp_path, progress=False)
    assert df.attrs["stale"] == [c.key()]
    assert "1 of 1 stored runs were computed by other code" in capsys.readouterr().out
    mtime = (tmp_path / c.key() / "status.json").stat().st_mtime_ns
    df = sweep([c], tmp_path, progress=False, recompute="stale")
    assert df.attrs["stale"] == [] and "recomputing them" in capsys.readouterr().out
    again = records.load(c, tmp_path)
    assert again.info["code"] == "0123456789abcdef" and again.info["started"] > first.info["started"]
    assert (tmp_path / c.key() / "status.json").stat().st_mtime_ns != mtime
    assert_same_result(first, again)   # same code in truth: the same numbers
    with pytest.raises(ValueError, match="recompute must be None or 'stale'"):
        sweep([c], tmp_path, progress=False, recompute="all")
