"""Sweeps through submitit and Dask equal the serial sweep; a killed worker's run resumes;
bad executor settings fail before anything is submitted.

The engine tests need the optional extra ``pip install '.[cluster]'`` (``make test``
installs it); without it they skip, saying so.
"""
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from breakeven_utils.recorder import RunConfig
from breakeven_utils.store import executors
from breakeven_utils.store import runs as records
from breakeven_utils.store.runs import load
from breakeven_utils.store.sweeps import sweep

TINY = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
            model_kwargs={"hidden": (16,)}, batch_size=32, lr=0.05, max_epochs=2,
            measure_every=4, K_L=4, metrics=("train", "val", "delta_loss", "grad_cos", "K"))
# a run of several seconds with a checkpoint before every measurement (to be killed midway)
LONG = dict(TINY, n_train=1024, batch_size=8, max_epochs=12, measure_every=16,
            metrics=("train", "val", "lambda_H", "grad_cos"), momentum=0.9)

pytestmark = pytest.mark.usefixtures("one_thread")


def grid():
    return [RunConfig(**{**TINY, "seed": s, "lr": lr}) for lr in (0.02, 0.1) for s in (0, 1)]


def status(root, c):
    return json.loads((root / c.key() / "status.json").read_text())


def wait_for_checkpoint(root, c, after=32, timeout=240):
    """Until the running run has checkpointed past iteration ``after``; returns its status."""
    import torch

    deadline = time.time() + timeout
    p = root / c.key()
    while time.time() < deadline:
        try:
            st = json.loads((p / "status.json").read_text())
            it = torch.load(p / "checkpoint.pt", weights_only=False)["loop"]["iteration"]
        except (FileNotFoundError, json.JSONDecodeError, RuntimeError, EOFError):
            time.sleep(0.05)
            continue
        if st["status"] == "running" and it >= after:
            return st
        assert st["status"] == "running", f"the run ended before it could be killed: {st['status']}"
        time.sleep(0.05)
    raise AssertionError(f"the run never checkpointed past iteration {after}")


def assert_same_metrics(a, b):
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)


# ----------------------------------------------------------------------------- bad input


def test_unknown_executor_and_missing_scheduler_are_clear_errors():
    with pytest.raises(ValueError, match="unknown executor 'slrum'.*local, slurm, dask"):
        executors.executor_from_env(environ={"BREAKEVEN_EXECUTOR": "slrum"})
    with pytest.raises(ValueError, match="SCHEDULER=host:port"):
        executors.executor_from_env(environ={"BREAKEVEN_EXECUTOR": "dask"})
    assert executors.executor_from_env(environ={}) is None  # local: the sweep's own pool
    assert executors.executor_from_env(environ={"BREAKEVEN_EXECUTOR": "local"}) is None
    with pytest.raises(TypeError, match="submit"):
        sweep(grid()[:1], "/tmp/never", executor="dask", progress=False)


def test_sweep_env_jobs_and_threads_defaults():
    # the one place that decides local processes and torch threads per run for every notebook
    env = {}
    assert executors.sweep_env(environ=env, profile="smoke") == {
        "executor": None, "device": "auto", "jobs": 1, "threads_per_job": None, "recompute": None}
    assert executors.sweep_env(environ={"RECOMPUTE": "stale"})["recompute"] == "stale"
    with pytest.raises(ValueError, match="RECOMPUTE must be empty or 'stale'"):
        executors.sweep_env(environ={"RECOMPUTE": "all"})
    kw = executors.sweep_env(environ=env, profile="cpu")
    assert kw["jobs"] == 2 and kw["threads_per_job"] == 1  # side by side: one thread each
    assert executors.sweep_env(environ=env)["jobs"] == 1  # no profile: serial
    assert executors.sweep_env(environ=env, jobs=3, profile="smoke")["jobs"] == 3
    kw = executors.sweep_env(environ={"BREAKEVEN_THREADS": "4", "BREAKEVEN_DEVICE": "cpu"}, jobs=2)
    assert kw["threads_per_job"] == 4 and kw["device"] == "cpu"  # THREADS= wins
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="jobs must be a positive integer"):
            executors.sweep_env(environ=env, jobs=bad)


def test_slurm_without_a_cluster_is_a_clear_error(tmp_path):
    pytest.importorskip("submitit", reason="needs the optional extra '.[cluster]'")
    if shutil.which("sbatch"):
        pytest.skip("this host has sbatch: EXECUTOR=slurm is legitimate here")
    with pytest.raises(RuntimeError, match="no SLURM cluster is reachable"):
        executors.executor_from_env(tmp_path, {"BREAKEVEN_EXECUTOR": "slurm"})


def test_slurm_parameters_from_a_toml_file_and_variables(tmp_path):
    cfg = tmp_path / "slurm.toml"
    cfg.write_text('slurm_partition = "gpu"\ngpus_per_node = 1\ntimeout_min = 240\n')
    env = {"BREAKEVEN_SLURM_CONFIG": str(cfg), "BREAKEVEN_SLURM_TIME": "600",
           "BREAKEVEN_SLURM_CPUS": "8"}
    assert executors.slurm_params_from_env(env) == {
        "slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 600, "cpus_per_task": 8}
    assert executors.threads_from_env(env) == 8
    with pytest.raises(ValueError, match="BREAKEVEN_SLURM_GPUS='one'"):
        executors.slurm_params_from_env({"BREAKEVEN_SLURM_GPUS": "one"})
    with pytest.raises(ValueError, match="no such file"):
        executors.slurm_params_from_env({"BREAKEVEN_SLURM_CONFIG": str(tmp_path / "nope.toml")})
    cfg.write_text("slurm_partition = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        executors.slurm_params_from_env({"BREAKEVEN_SLURM_CONFIG": str(cfg)})


def test_the_example_slurm_config_is_accepted_by_submitit(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit", reason="needs the optional extra '.[cluster]'")
    example = Path(__file__).resolve().parents[2] / "scripts" / "slurm.example.toml"
    params = executors.slurm_params_from_env({"BREAKEVEN_SLURM_CONFIG": str(example),
                                              "BREAKEVEN_SLURM_PARTITION": "debug"})
    assert params["slurm_partition"] == "debug" and params["gpus_per_node"] == 1
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    ex = submitit.AutoExecutor(folder=str(tmp_path), cluster="slurm")
    ex.update_parameters(**params)  # submitit rejects unknown names
    with pytest.raises(Exception, match="partiton"):
        ex.update_parameters(slurm_partiton="gpu")


def test_remote_executor_rejects_a_store_the_workers_cannot_see(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit", reason="needs the optional extra '.[cluster]'")
    # a real SLURM executor object (no srun here: pretend one CPU is allotted); nothing is submitted
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    ex = submitit.SlurmExecutor(folder=str(tmp_path / "logs"))
    assert executors.is_remote(ex)
    calls = []
    monkeypatch.setattr(executors, "submit_runs", lambda *a: calls.append(a) or [])
    with pytest.raises(ValueError, match="temporary directory"):
        sweep(grid()[:1], tmp_path / "runs", executor=ex, progress=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="relative path"):
        sweep(grid()[:1], "runs", executor=ex, progress=False)
    assert calls == [] and not (tmp_path / "runs").exists()
    # a local executor may use any path
    local = submitit.AutoExecutor(folder=str(tmp_path / "logs"), cluster="local")
    assert not executors.is_remote(local)
    assert executors.check_store(tmp_path / "runs", local) == tmp_path / "runs"


# ----------------------------------------------------------------------------- submitit


def test_submitit_local_sweep_equals_serial_and_an_interrupted_job_resumes(tmp_path):
    submitit = pytest.importorskip("submitit", reason="needs the optional extra '.[cluster]'")
    cs = grid()
    serial = sweep(cs, tmp_path / "serial", progress=False)
    ex = submitit.AutoExecutor(folder=str(tmp_path / "logs"), cluster="local")
    ex.update_parameters(timeout_min=10)
    viasub = sweep(cs, tmp_path / "submitit", executor=ex, threads_per_job=1, progress=False)
    pd.testing.assert_frame_equal(serial, viasub, check_exact=True)
    assert {status(tmp_path / "submitit", c)["n_starts"] for c in cs} == {1}

    # pre-emption: the job checkpoints its callable, is requeued and resumes its run
    c = RunConfig(**LONG)
    job = executors.submit_runs(ex, [(c.to_dict(), str(tmp_path / "submitit"), "cpu", "measure",
                                      False, 1)])[0]
    st = wait_for_checkpoint(tmp_path / "submitit", c)
    # what SLURM does on pre-emption: the job's process gets submitit's signal (USR2)
    from submitit.local.local import LocalJobEnvironment
    os.kill(st["pid"], LocalJobEnvironment._usr_sig())
    assert job.result()["status"] == "done"
    st = status(tmp_path / "submitit", c)
    assert st["n_starts"] == 2 and st["resumed_from"] > 0
    ref = records.run(c, tmp_path / "serial", progress=False)
    assert_same_metrics(ref, load(c, tmp_path / "submitit"))


# ----------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_cluster():
    pytest.importorskip("distributed", reason="needs the optional extra '.[cluster]'")
    from distributed import Client, LocalCluster

    # distributed puts its workers' settings (OMP_NUM_THREADS=1, ...) into this process's
    # environment when it spawns them; a module fixture outlives the per-test restore of
    # conftest, and nbval's notebook kernels (started after the unit tests) would inherit
    # one torch thread: restore the environment when the cluster goes
    saved = dict(os.environ)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
    for k in set(os.environ) - set(saved):
        del os.environ[k]
    os.environ.update(saved)


def test_dask_sweep_equals_serial_sweep(tmp_path, dask_cluster):
    cs = grid()
    serial = sweep(cs, tmp_path / "serial", progress=False)
    assert not executors.is_remote(dask_cluster)
    viadask = sweep(cs, tmp_path / "dask", executor=dask_cluster, threads_per_job=1, progress=False)
    pd.testing.assert_frame_equal(serial, viadask, check_exact=True)
    hosts = {status(tmp_path / "dask", c)["pid"] for c in cs}
    assert os.getpid() not in hosts  # computed by the workers


def test_dask_worker_killed_midway_its_run_resumes(tmp_path, dask_cluster):
    c = RunConfig(**LONG)
    futures = executors.submit_runs(dask_cluster, [(c.to_dict(), str(tmp_path / "dask"), "cpu",
                                                    "measure", False, 1)])
    st = wait_for_checkpoint(tmp_path / "dask", c)
    os.kill(st["pid"], signal.SIGKILL)  # the worker dies; the scheduler reruns the task
    assert futures[0].result(timeout=300)["status"] == "done"
    st = status(tmp_path / "dask", c)
    assert st["n_starts"] == 2 and st["resumed_from"] > 0 and st["pid"] != os.getpid()
    ref = records.run(c, tmp_path / "serial", progress=False)
    assert_same_metrics(ref, load(c, tmp_path / "dask"))
