"""A run store that loses nothing: every trajectory cached by its configuration.

Layout under the store root (argument ``store``, else ``$BREAKEVEN_RUNS``,
else ``./runs``)::

    <root>/<key>/config.json      {"key", "version", "config"}  (RunConfig.to_dict())
                 status.json      status, iteration, diverged_at, error, checksums, ...
                 metrics.parquet  one row per measurement (train.METRIC_COLUMNS)
                 arrays.npz       spectra: H_top (n x k), K_eigs (n x L-1), *_iteration
                 softmax.npy      test-set softmax snapshots (n x n_test x C), if measured
                 checkpoint.pt    while running (model, update rule, schedule, RNG,
                                  iterator position, metrics so far); removed when done
                 .lock            fcntl.flock: one process computes a run at a time

``key = RunConfig.key()``: sha256 of the canonical JSON of the configuration
and ``breakeven_utils.__version__``, so a new version never reuses old runs;
a stored ``config.json`` that differs from the requested configuration raises
:class:`ConfigMismatchError`. Every file is written to a temporary name and
renamed (``os.replace``); ``status.json`` is written last and holds sha256
checksums of the data files, so a damaged file raises :class:`CorruptRunError`
instead of being read as data.

:func:`run` returns a done run from disk, resumes an interrupted one from its
last checkpoint, and records a NaN/inf loss as status ``'diverged'``.
:func:`sweep` runs a list of configurations (in process, ``jobs=N`` processes,
or any ``concurrent.futures``-style executor such as submitit's
``AutoExecutor`` or a Dask ``Client``) and returns one tidy DataFrame.

Beyond one machine (the store must be on a file system every worker sees;
each job runs ``records._run_job`` and writes its run directory, the notebook
then reads the results). The notebooks take the executor from the environment
(``sweep(configs, store, **sweep_env(store, jobs=jobs, profile=profile))``, set by
``make reproduce EXECUTOR=slurm|dask DEVICE=...``, see ``breakeven_utils.executors``);
by hand::

    import submitit
    ex = submitit.AutoExecutor(folder="/shared/slurm_logs")
    ex.update_parameters(timeout_min=240, slurm_partition="gpu", gpus_per_node=1)
    df = sweep(configs, store="/shared/runs", executor=ex, device="auto")

    from distributed import Client
    df = sweep(configs, store="/shared/runs", executor=Client("scheduler:8786"))

A job that dies (pre-emption, time limit) leaves its checkpoint; sweeping
again resumes it and loads every finished run without recomputing (SLURM jobs
are requeued by submitit and resume by themselves).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import __version__
from .device import device_from_env, resolve_device
from .executors import check_store, executor_from_env, is_remote, sweep_env
from .train import RunConfig, train

__all__ = [
    "RunResult",
    "run",
    "load",
    "sweep",
    "list_runs",
    "compute_time",
    "store_root",
    "RunStoreError",
    "CorruptRunError",
    "ConfigMismatchError",
    "RunNotFinishedError",
    "STATUSES",
    "state_at", "save_state_hook",
    "executor_from_env",
    "device_from_env",
    "sweep_env",
]

ENV_VAR = "BREAKEVEN_RUNS"
STATUSES = ("running", "done", "diverged", "failed")
METRICS_FILE, ARRAYS_FILE, SOFTMAX_FILE = "metrics.parquet", "arrays.npz", "softmax.npy"
CHECKPOINT_FILE, STATUS_FILE, CONFIG_FILE, LOCK_FILE = ("checkpoint.pt", "status.json",
                                                        "config.json", ".lock")
STATES_DIR = "states"  # <key>/states/iter_<t>.pt: model states other runs start from (init_from)


class RunStoreError(RuntimeError):
    """Base class of run-store errors."""


class CorruptRunError(RunStoreError):
    """A stored file does not match its checksum or cannot be parsed."""


class ConfigMismatchError(RunStoreError):
    """The run directory holds a different configuration or code version."""


class RunNotFinishedError(RunStoreError):
    """``load`` was asked for a run that is not done or diverged."""


def store_root(store: str | os.PathLike | None = None) -> Path:
    """The store root: ``store``, else ``$BREAKEVEN_RUNS``, else ``./runs``."""
    if store is None:
        store = os.environ.get(ENV_VAR) or "runs"
    return Path(store).expanduser()


# ----------------------------------------------------------------------------- atomic files


def _atomic_write(path: Path, data: bytes) -> str:
    """Write bytes to ``path`` via a temporary file + rename; returns their sha256."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def _atomic_json(path: Path, obj: Any) -> None:
    _atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True, default=_json_default)
                         + "\n").encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRunError(f"{path} is not valid JSON ({e}); delete the run directory "
                              f"{path.parent} to recompute it") from None


@contextlib.contextmanager
def _locked(run_dir: Path):
    """Exclusive ``fcntl.flock`` on ``run_dir/.lock`` (released if the process dies)."""
    fd = os.open(run_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RunResult:
    """A stored run.

    metrics: one row per measurement (``iteration``, ``epoch``, ``lr_t`` = the
        scheduled learning rate of the step taken at that iteration, and the
        metric columns of ``train.METRIC_COLUMNS``).
    arrays: ``H_top`` (n x hessian_k), ``K_eigs`` (n x K_L-1) and their
        ``*_iteration`` vectors, ``softmax_iteration``; see :meth:`softmax`.
    crossings: {threshold (str): {'iteration', 'epoch'}}: first measurement
        with train accuracy above the threshold.
    """

    config: RunConfig
    key: str
    path: Path
    status: str
    metrics: pd.DataFrame
    arrays: dict = field(repr=False)
    crossings: dict
    diverged_at: int | None
    info: dict = field(repr=False)

    def softmax(self, mmap: bool = True) -> np.ndarray | None:
        """Test-set softmax snapshots (n_snapshots x n_test x C), or None."""
        p = self.path / SOFTMAX_FILE
        if not p.exists():
            return None
        return np.load(p, mmap_mode="r" if mmap else None)


def _config_record(config: RunConfig) -> dict:
    return {"key": config.key(), "version": __version__, "config": config.to_dict()}


def _check_config(run_dir: Path, config: RunConfig) -> None:
    """Write config.json if new; otherwise it must equal the requested one."""
    want = _config_record(config)
    have = _read_json(run_dir / CONFIG_FILE)
    if have is None:
        _atomic_json(run_dir / CONFIG_FILE, want)
        return
    if have.get("version") != want["version"]:
        raise ConfigMismatchError(
            f"{run_dir} was computed by breakeven_utils {have.get('version')}, this is "
            f"{want['version']}: not reusing it")
    if have.get("config") != want["config"]:
        diff = sorted(k for k in set(want["config"]) | set(have.get("config", {}))
                      if want["config"].get(k) != have.get("config", {}).get(k))
        raise ConfigMismatchError(f"{run_dir}/config.json differs from the requested "
                                  f"configuration in {diff}: not reusing it")


def _write_results(run_dir: Path, out, status: dict) -> dict:
    """Data files first (atomic), then status.json with their checksums."""
    df = pd.DataFrame(out.rows)
    if "lr" in df:
        df = df.rename(columns={"lr": "lr_t"})
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    checksums = {METRICS_FILE: _atomic_write(run_dir / METRICS_FILE, buf.getvalue())}
    arrays = {}
    for name, vals in out.arrays.items():
        try:
            arrays[name] = np.asarray(vals)
        except ValueError:  # ragged (e.g. a spectrum that changed length)
            arrays[name] = np.asarray(vals, dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    checksums[ARRAYS_FILE] = _atomic_write(run_dir / ARRAYS_FILE, buf.getvalue())
    if out.softmax:
        buf = io.BytesIO()
        np.save(buf, np.stack(out.softmax).astype(np.float32))
        checksums[SOFTMAX_FILE] = _atomic_write(run_dir / SOFTMAX_FILE, buf.getvalue())
    status.update(status=out.status, diverged_at=out.diverged_at, iteration=out.iterations,
                  crossings=out.crossings, seconds=out.seconds,
                  measure_seconds=out.measure_seconds, info=out.info, checksums=checksums,
                  n_measurements=len(df), error=None, finished=time.time())
    _atomic_json(run_dir / STATUS_FILE, status)
    return status


def _verify(run_dir: Path, status: dict) -> None:
    for name, digest in (status.get("checksums") or {}).items():
        p = run_dir / name
        if not p.exists():
            raise CorruptRunError(f"{p} is missing (status.json lists it); delete {run_dir} "
                                  "to recompute the run")
        if _sha256(p) != digest:
            raise CorruptRunError(f"{p} does not match its checksum in status.json: the file "
                                  f"is damaged; delete {run_dir} to recompute the run")


def _load_dir(run_dir: Path, config: RunConfig | None = None) -> RunResult:
    status = _read_json(run_dir / STATUS_FILE)
    rec = _read_json(run_dir / CONFIG_FILE)
    if rec is None or status is None:
        raise RunNotFinishedError(f"no finished run in {run_dir}")
    if status.get("status") not in ("done", "diverged"):
        raise RunNotFinishedError(f"run {run_dir.name} is {status.get('status')!r}"
                                  + (f": {status.get('error')}" if status.get("error") else ""))
    _verify(run_dir, status)
    try:
        metrics = pd.read_parquet(run_dir / METRICS_FILE)
        with np.load(run_dir / ARRAYS_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # checksum matched but unreadable: written by something else
        raise CorruptRunError(f"cannot read the results in {run_dir}: {e}") from e
    if config is None:
        config = RunConfig.from_dict(rec["config"])
    return RunResult(config=config, key=run_dir.name, path=run_dir, status=status["status"],
                     metrics=metrics, arrays=arrays, crossings=status.get("crossings") or {},
                     diverged_at=status.get("diverged_at"), info=status)


# ----------------------------------------------------------------------------- run / load


def run(config: RunConfig, store: str | os.PathLike | None = None, *, device: str = "auto",
        checkpoint_every: int | str | None = "measure", keep_checkpoint: bool = False,
        progress: bool = True, hooks: Iterable = (), data=None) -> RunResult:
    """Compute ``config`` once and keep it: done/diverged runs load from disk.

    An interrupted run (status running or failed, e.g. killed or raised)
    resumes from its last checkpoint (``checkpoint_every``: ``'measure'`` =
    before every measurement, an int = every that many iterations, None =
    never) and gives the same metrics as an uninterrupted run. A NaN/inf loss
    stores status ``'diverged'`` with its iteration (no exception); any other
    exception stores status ``'failed'`` with the message and is re-raised.
    Concurrent calls for the same configuration (threads, processes, other
    sweeps) wait on a per-run file lock; the waiter then loads the result.
    ``hooks`` and ``data`` are passed to :func:`train.train` (``data``: a
    preloaded ``Data`` equal to what the config would load). ``device``:
    ``'auto'`` (CUDA when present, else CPU), ``'cpu'``, ``'cuda[:N]'``; a run
    may resume on another device than it started on.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    config.validate()
    device = resolve_device(device)
    root = store_root(store)
    key = config.key()
    run_dir = root / key
    run_dir.mkdir(parents=True, exist_ok=True)
    with _locked(run_dir):
        _check_config(run_dir, config)
        status = _read_json(run_dir / STATUS_FILE) or {}
        if status.get("status") in ("done", "diverged"):
            return _load_dir(run_dir, config)
        resume = None
        ckpt = run_dir / CHECKPOINT_FILE
        if ckpt.exists():
            import torch
            try:
                resume = _rng_states_to_cpu(torch.load(ckpt, map_location=device,
                                                       weights_only=False))
            except Exception as e:
                raise CorruptRunError(f"cannot read {ckpt} ({e}); delete it to restart the "
                                      "run from the beginning") from e
        status = {"key": key, "version": __version__, "status": "running",
                  "n_starts": int(status.get("n_starts", 0)) + 1,
                  "resumed_from": (resume["loop"]["iteration"] if resume else None),
                  "host": socket.gethostname(), "pid": os.getpid(), "device": str(device),
                  "started": time.time(), "checksums": {}}
        _atomic_json(run_dir / STATUS_FILE, status)

        def save_checkpoint(state: dict) -> None:
            import torch
            buf = io.BytesIO()
            torch.save(state, buf)
            _atomic_write(ckpt, buf.getvalue())

        init_state = None
        if config.init_from is not None and resume is None:  # the parent's state, from this store
            init_state = state_at(RunConfig.from_dict(config.init_from["config"]),
                                  config.init_from["iteration"], root, device=device,
                                  progress=progress)
        try:
            out = train(config, data=data, device=device, resume=resume, init_state=init_state,
                        checkpoint=save_checkpoint if checkpoint_every is not None else None,
                        checkpoint_every=checkpoint_every, hooks=hooks, progress=progress,
                        desc=f"run {key[:8]}")
        except BaseException as e:
            status.update(status="failed", error=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc(limit=8), finished=time.time())
            _atomic_json(run_dir / STATUS_FILE, status)
            raise
        _write_results(run_dir, out, status)
        if not keep_checkpoint and ckpt.exists():
            ckpt.unlink()
        return _load_dir(run_dir, config)


def _state_path(root: Path, config: RunConfig, iteration: int) -> Path:
    return root / config.key() / STATES_DIR / f"iter_{int(iteration)}.pt"


def _save_state(path: Path, model, iteration: int, key: str) -> None:
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"model": {k: v.detach().clone().cpu() for k, v in model.state_dict().items()},
                "iteration": int(iteration), "key": key}, buf)
    _atomic_write(path, buf.getvalue())


def save_state_hook(config: RunConfig, iteration: int, store: str | os.PathLike | None = None):
    """A ``hooks`` entry for :func:`run` / ``train``: keeps the model state of
    ``config``'s trajectory after ``iteration`` steps in the store, where
    :func:`state_at` (and so ``RunConfig.init_from``) finds it without a replay."""
    path = _state_path(store_root(store), config, iteration)
    key = config.key()

    def hook(info: dict) -> None:
        if info["iteration"] == iteration and not path.exists():
            _save_state(path, info["model"], iteration, key)
    return hook


class _Reached(Exception):
    pass


def state_at(config: RunConfig, iteration: int, store: str | os.PathLike | None = None,
             *, device: str = "cpu", progress: bool = True) -> dict:
    """``{'model': state_dict, 'iteration', 'key'}`` of ``config``'s trajectory after
    ``iteration`` steps: read from the store (kept by :func:`save_state_hook` or an
    earlier call), else replayed in memory with the same configuration (the same
    trajectory, measurements included) up to that step and kept in the store."""
    import torch

    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
        raise ValueError(f"iteration must be a positive integer, got {iteration!r}")
    path = _state_path(store_root(store), config, iteration)
    if path.exists():
        try:
            return torch.load(path, map_location=device, weights_only=False)
        except Exception as e:
            raise CorruptRunError(f"cannot read {path} ({e}); delete it to replay the run") from e
    got = {}

    def capture(info):
        if info["iteration"] == iteration:
            _save_state(path, info["model"], iteration, config.key())
            got["ok"] = True
            raise _Reached
    try:
        out = train(config, device=device, hooks=[capture], checkpoint=None, progress=progress,
                    desc=f"replay {config.key()[:8]} to t={iteration}")
    except _Reached:
        return torch.load(path, map_location=device, weights_only=False)
    raise ValueError(f"run {config.key()} ended at iteration {out.iterations} ({out.status}) before "
                     f"iteration {iteration}: no state to start from")


def _rng_states_to_cpu(obj):
    """Random-generator states (uint8 tensors: ``torch.get_rng_state``,
    ``Generator.get_state``) back on the CPU after ``torch.load(map_location=cuda)``:
    ``torch.set_rng_state`` and CPU generators take CPU states only."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.cpu() if obj.dtype == torch.uint8 else obj
    if isinstance(obj, dict):
        return {k: _rng_states_to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_rng_states_to_cpu(v) for v in obj)
    return obj


def load(config_or_key: RunConfig | str, store: str | os.PathLike | None = None) -> RunResult:
    """A finished (done or diverged) run, without computing anything.

    Raises RunNotFinishedError if it is missing or unfinished, CorruptRunError
    if a file is damaged, ConfigMismatchError if the stored config differs.
    """
    root = store_root(store)
    if isinstance(config_or_key, RunConfig):
        run_dir = root / config_or_key.key()
        if not (run_dir / CONFIG_FILE).exists():
            raise RunNotFinishedError(f"no run for this configuration in {root}")
        _check_config(run_dir, config_or_key)
        return _load_dir(run_dir, config_or_key)
    return _load_dir(root / str(config_or_key))


def list_runs(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run directory: key, status, iteration, version and the config fields."""
    root = store_root(store)
    rows = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        if not (d / CONFIG_FILE).exists():
            continue
        try:
            rec = _read_json(d / CONFIG_FILE)
            st = _read_json(d / STATUS_FILE) or {}
        except CorruptRunError as e:
            rows.append({"key": d.name, "status": "corrupt", "error": str(e)})
            continue
        rows.append({"key": d.name, "status": st.get("status"), "iteration": st.get("iteration"),
                     "diverged_at": st.get("diverged_at"), "version": rec.get("version"),
                     "error": st.get("error"), **_flat_config(rec.get("config", {}))})
    return pd.DataFrame(rows)


def _run_keys(runs) -> list[str]:
    """Run keys from a ``sweep`` table (its ``key`` column and ``attrs['failed']``), RunResults,
    RunConfigs or key strings (or an iterable mixing them), in first-seen order."""
    if isinstance(runs, pd.DataFrame):
        keys = list(runs["key"].dropna().astype(str)) if "key" in runs else []
        return list(dict.fromkeys(keys + [str(f["key"]) for f in runs.attrs.get("failed", [])]))
    if isinstance(runs, (str, RunConfig, RunResult)):
        runs = [runs]
    keys = []
    for r in runs:
        if isinstance(r, pd.DataFrame):
            keys += _run_keys(r)
        elif isinstance(r, RunResult):
            keys.append(r.key)
        elif isinstance(r, RunConfig):
            keys.append(r.key())
        elif isinstance(r, str):
            keys.append(r)
        else:
            raise TypeError(f"compute_time takes sweep tables, RunResults, RunConfigs or keys, "
                            f"got {type(r).__name__}")
    return list(dict.fromkeys(keys))


def compute_time(runs, store: str | os.PathLike | None = None, *, since: float | None = None) -> dict:
    """What the runs a notebook used cost to compute, from their stored ``status.json``.

    ``seconds`` of a run is its training + measurement time summed over every resume
    (``measure_seconds`` the measurement part), whether it was computed now or loaded
    from the store, so a notebook that only redraws still reports what its results
    cost. ``runs``: a ``sweep`` table, RunResults, RunConfigs or keys (duplicates once).
    ``since`` (a ``time.time()``): also count the runs that finished at or after it
    (computed by this execution) and their seconds. Returns a manifest entry:
    {"runs", "compute_seconds", "measure_seconds", "runs_without_time": [keys of runs
    not finished in the store (failed, missing)], and with ``since``: "runs_computed",
    "computed_seconds"}.
    """
    root = store_root(store)
    total = measure = now_s = 0.0
    now, missing = 0, []
    keys = _run_keys(runs)
    for k in keys:
        st = _read_json(root / k / STATUS_FILE) or {}
        if st.get("status") not in ("done", "diverged") or st.get("seconds") is None:
            missing.append(k)
            continue
        total += float(st["seconds"])
        measure += float(st.get("measure_seconds") or 0.0)
        if since is not None and float(st.get("finished") or 0.0) >= since:
            now += 1
            now_s += float(st["seconds"])
    out = {"runs": len(keys), "compute_seconds": round(total, 1), "measure_seconds": round(measure, 1),
           "runs_without_time": missing}
    if since is not None:
        out.update(runs_computed=now, computed_seconds=round(now_s, 1))
    return out


# ----------------------------------------------------------------------------- sweeps


def _flat_config(d: dict) -> dict:
    """Config fields as DataFrame cells: lists -> tuples, dicts -> JSON strings."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = json.dumps(v, sort_keys=True)
        elif isinstance(v, list):
            out[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        else:
            out[k] = v
    return out


def _run_job(config_dict: dict, root: str, device: str = "auto",
             checkpoint_every: int | str | None = "measure", progress: bool = False,
             threads: int | None = None) -> dict:
    """Executor entry point (picklable, importable): run one config, report its status.
    ``device`` is resolved on the worker ('auto': its GPU if it has one); ``threads``
    sets the worker's ``torch.set_num_threads`` first."""
    if threads:
        _set_threads(threads)
    config = RunConfig.from_dict(config_dict)
    try:
        res = run(config, root, device=device, checkpoint_every=checkpoint_every,
                  progress=progress)
        return {"key": res.key, "status": res.status, "error": None}
    except Exception as e:  # recorded in status.json too; the sweep decides
        return {"key": config.key(), "status": "failed", "error": f"{type(e).__name__}: {e}"}


def _set_threads(n: int) -> None:
    import torch
    torch.set_num_threads(n)


def _tidy(res: RunResult) -> pd.DataFrame:
    df = res.metrics.copy()
    cfg = _flat_config(res.config.to_dict())
    extra = {"key": res.key, "status": res.status, "diverged_at": res.diverged_at}
    for thr in res.config.acc_thresholds:
        c = res.crossings.get(repr(thr)) or {}
        extra[f"cross_{thr:g}_iteration"] = c.get("iteration")
        extra[f"cross_{thr:g}_epoch"] = c.get("epoch")
    cols = {**extra, **{k: v for k, v in cfg.items() if k not in df.columns}}
    front = pd.DataFrame({k: [v] * len(df) for k, v in cols.items()}, index=df.index)
    return pd.concat([front, df], axis=1)


def sweep(configs: Iterable[RunConfig], store: str | os.PathLike | None = None, *,
          executor=None, jobs: int | None = None, device: str = "auto",
          checkpoint_every: int | str | None = "measure", progress: bool = True,
          errors: str = "raise", threads_per_job: int | None = None) -> pd.DataFrame:
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
    """
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    if threads_per_job is not None and (not isinstance(threads_per_job, int) or threads_per_job < 1):
        raise ValueError(f"threads_per_job must be a positive integer or None, got {threads_per_job!r}")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer or None, got {jobs!r}")
    from .executors import as_completed, submit_runs
    from .progress import SweepProgress

    configs = list(configs)
    for c in configs:
        if not isinstance(c, RunConfig):
            raise TypeError(f"sweep takes RunConfig objects, got {type(c).__name__}")
        c.validate()
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
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        executor = own = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=_set_threads if threads_per_job else None,
            initargs=(threads_per_job,) if threads_per_job else ())
    keys = list(unique)
    reports: dict[str, dict] = {}
    bar = SweepProgress(unique, root, jobs=jobs, progress=progress, device=device, threads=threads_per_job,
                        remote=is_remote(executor))  # run i of n, time left from the cost plan
    try:
        if executor is None:
            for k in keys:
                reports[k] = _run_job(unique[k].to_dict(), str(root), device, checkpoint_every,
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
    frames = [_tidy(_load_dir(root / k, unique[k])) for k in keys if reports[k]["status"] != "failed"]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df.attrs["failed"] = failed
    return df


def _check_device_name(device) -> str:
    """Syntax check of a device name to be resolved elsewhere (on remote workers)."""
    name = str(device).strip().lower()
    if name == "auto" or name == "cpu" or name == "cuda" or (
            name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
