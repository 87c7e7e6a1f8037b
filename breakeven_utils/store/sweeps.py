"""Sweeps: many run configurations computed at most once each, in this process, a
local process pool, or any ``concurrent.futures``-style executor (submitit's
``AutoExecutor``, a Dask ``Client``), returned as one tidy DataFrame.

The notebooks take the executor from the environment, set by ``make reproduce
EXECUTOR=slurm|dask DEVICE=... JOBS=... THREADS=...``::

    df = sweep(configs, store, **sweep_env(store, jobs=jobs, profile=profile))

by hand::

    import submitit
    ex = submitit.AutoExecutor(folder="/shared/slurm_logs")
    ex.update_parameters(timeout_min=240, slurm_partition="gpu", gpus_per_node=1)
    df = sweep(configs, store="/shared/runs", executor=ex, device="auto")

A job that dies (pre-emption, time limit) leaves its checkpoint; sweeping again
resumes it and loads every finished run without recomputing.
"""
from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch

from breakeven_utils.core.device import resolve_device
from breakeven_utils.recorder.config import RunConfig
from breakeven_utils.store.executors import (
    as_completed,
    check_store,
    is_remote,
    submit_runs,
    sweep_env,  # noqa: F401  (re-exported: the notebooks' one call)
)
from breakeven_utils.store.progress import SweepProgress
from breakeven_utils.store.runs import (
    RunResult,
    RunStoreError,
    discard,
    flat_config,
    load_dir,
    read_status,
    run_job,
    stale_reason,
    store_root,
)
from breakeven_utils.store.truncation import effective

__all__ = ["sweep", "sweep_env", "tidy"]


def tidy(res: RunResult) -> pd.DataFrame:
    """A run's metrics with its key, status, threshold crossings and config fields as columns."""
    df = res.metrics.copy()
    cfg = flat_config(res.config.to_dict())
    extra = {"key": res.key, "status": res.status, "diverged_at": res.diverged_at}
    for thr in res.config.acc_thresholds:
        c = res.crossings.get(repr(thr)) or {}
        extra[f"cross_{thr:g}_iteration"] = c.get("iteration")
        extra[f"cross_{thr:g}_epoch"] = c.get("epoch")
    cols = {**extra, **{k: v for k, v in cfg.items() if k not in df.columns}}
    front = pd.DataFrame({k: [v] * len(df) for k, v in cols.items()}, index=df.index)
    return pd.concat([front, df], axis=1)


def init_worker(threads: int | None, counter, n_gpus: int) -> None:
    """A local pool worker's set-up: its torch threads, and with ``n_gpus`` > 1 its GPU (the
    workers in turn, by a shared counter), so ``JOBS=auto`` spreads runs over every GPU.
    Silences torch's own warning that its forward-mode AD decompositions use the deprecated
    ``torch.jit.script`` (the notebook kernel does the same, ``papers.notebook.start``): a
    kernel shows its workers' output, and a reader's copy would carry it."""
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
    if threads:
        torch.set_num_threads(threads)
    if n_gpus > 1:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        torch.cuda.set_device(i % n_gpus)


def sweep(configs: Iterable[RunConfig], store: str | os.PathLike | None = None, *,
          executor=None, jobs: int | None = None, device: str = "auto",
          checkpoint_every: int | str | None = "measure", progress: bool = True,
          errors: str = "raise", threads_per_job: int | None = None,
          recompute: str | None = None) -> pd.DataFrame:
    """Run every configuration (each at most once, cached) and return one tidy DataFrame.

    One row per measurement of every run, with the run's ``key``, ``status``,
    ``diverged_at``, accuracy-threshold crossings (``cross_<thr>_iteration`` /
    ``_epoch``) and all config fields as columns (``lr`` is the config's
    learning rate, ``lr_t`` the scheduled one). A diverged run contributes its
    rows up to the divergence; the sweep continues.

    executor: any object with ``submit(fn, *args) -> future`` whose futures have
        ``.result()`` (``concurrent.futures``, submitit's ``AutoExecutor``, a
        Dask ``distributed.Client``; the notebooks pass :func:`executor_from_env`);
        the store must be on a file system all workers see (a relative or
        temporary-directory store with a remote executor is an error, raised before
        any submission). ``jobs=N`` (and no executor): a local process pool of N
        workers ('spawn' start method). Neither: in this process.
    threads_per_job: each worker's ``torch.set_num_threads`` (pool and executors;
        results are bitwise reproducible only at the same thread count).
    device: 'auto' (CUDA when present, else CPU; with an executor, resolved on each
        worker), 'cpu', 'cuda[:N]'.
    Progress: run i of n, time left from the cost plan (``progress.SweepProgress``).
    errors: 'raise' (after all runs finished, raise for the failed ones) or
        'record' (skip them; their keys and errors are in ``df.attrs['failed']``).
    Two sweeps sharing configurations may run at the same time: a run being
    computed elsewhere is waited for (file lock) and then loaded.
    recompute: None (stored runs are loaded; those computed by other code, by
        ``runs.code_fingerprint``, are counted in a printed line and listed in
        ``df.attrs['stale']``) or 'stale' (those are discarded and computed again).
    """
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    if recompute not in (None, "", "stale"):
        raise ValueError(f"recompute must be None or 'stale' (RECOMPUTE=stale), got {recompute!r}")
    if threads_per_job is not None and (not isinstance(threads_per_job, int) or threads_per_job < 1):
        raise ValueError(f"threads_per_job must be a positive integer or None, got {threads_per_job!r}")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer or None, got {jobs!r}")
    configs = list(configs)
    for c in configs:
        if not isinstance(c, RunConfig):
            raise TypeError(f"sweep takes RunConfig objects, got {type(c).__name__}")
        c.validate()
    configs = [effective(c) for c in configs]  # the preflight's truncated runs while its switch is on
    unique: dict[str, RunConfig] = {}
    for c in configs:
        unique.setdefault(c.key(), c)
    if executor is not None and not hasattr(executor, "submit"):
        raise TypeError(f"executor must have a submit(fn, *args) method (got {type(executor).__name__}); "
                        "for a named one use executor_from_env() or executors.slurm_executor/dask_client")
    # remote workers resolve 'auto' themselves (the submitting host may have no GPU)
    device = resolve_device(device) if not is_remote(executor) else _check_device_name(device)
    root = check_store(store_root(store), executor)
    root.mkdir(parents=True, exist_ok=True)
    own = None
    if executor is None and jobs is not None and jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        # several GPUs: worker i takes GPU i mod n ('cuda' is then that process's device)
        n_gpus = torch.cuda.device_count() if device == "cuda" else 0
        executor = own = ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=init_worker,
            initargs=(threads_per_job, ctx.Value("i", 0), n_gpus))
    keys = list(unique)
    stale = {k: why for k in keys if (why := _stale(root, k))}
    if stale and recompute == "stale":
        for k in stale:
            discard(unique[k], root)
        print(f"sweep: {len(stale)} of {len(keys)} stored runs were computed by other code: recomputing them")
    elif stale:
        first = next(iter(stale.values()))
        print(f"sweep: {len(stale)} of {len(keys)} stored runs were {first}; "
              "they are reused: RECOMPUTE=stale (make reproduce RECOMPUTE=stale) computes them again")
    reports: dict[str, dict] = {}
    bar = SweepProgress(unique, root, jobs=jobs, progress=progress, device=device, threads=threads_per_job,
                        remote=is_remote(executor))  # run i of n, time left from the cost plan
    try:
        if executor is None:
            for k in keys:
                reports[k] = run_job(unique[k].to_dict(), str(root), device, checkpoint_every,
                                      progress)
                bar.done(k, reports[k])
        else:
            futures = submit_runs(executor, [
                (unique[k].to_dict(), str(root), device, checkpoint_every, False,
                 threads_per_job if own is None else None) for k in keys])
            for i, f in as_completed(futures):
                try:
                    reports[keys[i]] = f.result()
                except Exception as e:  # the job itself died (worker lost, cancelled, ...)
                    reports[keys[i]] = {"key": keys[i], "status": "failed",
                                        "error": f"{type(e).__name__}: {e}"}
                bar.done(keys[i], reports[keys[i]])
    finally:
        bar.close()
        if own is not None:
            own.shutdown()
    failed = [reports[k] for k in keys if reports[k]["status"] == "failed"]
    if failed and errors == "raise":
        msg = "; ".join(f"{r['key']}: {r['error']}" for r in failed[:5])
        raise RunStoreError(f"{len(failed)} of {len(unique)} runs failed: {msg}")
    frames = [tidy(load_dir(root / k, unique[k])) for k in keys if reports[k]["status"] != "failed"]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df.attrs["failed"] = failed
    df.attrs["stale"] = [] if recompute == "stale" else sorted(stale)
    return df


def _stale(root: Path, key: str) -> str:
    """:func:`runs.stale_reason` of a finished stored run, "" for a missing or unfinished one."""
    status = read_status(root, key)
    if not status or status.get("status") not in ("done", "diverged"):
        return ""
    return stale_reason(status)


def _check_device_name(device) -> str:
    """Syntax check of a device name to be resolved elsewhere (on remote workers)."""
    name = str(device).strip().lower()
    if name == "auto" or name == "cpu" or name == "cuda" or (
            name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
