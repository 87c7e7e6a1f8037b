"""A run store that loses nothing: every trajectory cached by its configuration.

Layout under the store root (argument ``store``, else ``$BREAKEVEN_RUNS``,
else ``./runs``)::

    <root>/<key>/config.json      {"key", "version", "config"}  (RunConfig.to_dict())
                 status.json      status, iteration, diverged_at, error, checksums, ...
                 metrics.parquet  one row per measurement (recorder.metrics.METRIC_COLUMNS)
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
last checkpoint, and records a NaN/inf loss as status ``'diverged'``; :func:`run_job`
is the same as the picklable entry point that executors submit (``store.sweeps``
runs many configurations). A run that starts from another run's state
(``RunConfig.init_from``) finds it here (:func:`state_at`).
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from breakeven_utils import __version__
from breakeven_utils.core import io as io_
from breakeven_utils.core.device import resolve_device
from breakeven_utils.recorder.config import RunConfig
from breakeven_utils.recorder.loop import train
from breakeven_utils.store.truncation import effective

__all__ = [
    "RunResult",
    "run",
    "load",
    "list_runs",
    "compute_time",
    "store_root",
    "RunStoreError",
    "CorruptRunError",
    "ConfigMismatchError",
    "RunNotFinishedError",
    "STATUSES",
    "state_at", "save_state_hook", "copy_run", "run_key",
    "run_job",
    "load_dir",
    "read_json",
    "read_status",
    "flat_config",
    "CODE_SOURCES", "code_fingerprint", "stale_reason", "discard",
]

ENV_VAR = "BREAKEVEN_RUNS"
STATUSES = ("running", "done", "diverged", "failed")
METRICS_FILE, ARRAYS_FILE, SOFTMAX_FILE = "metrics.parquet", "arrays.npz", "softmax.npy"
CHECKPOINT_FILE, STATUS_FILE, CONFIG_FILE, LOCK_FILE = ("checkpoint.pt", "status.json",
                                                        "config.json", ".lock")
STATES_DIR = "states"  # <key>/states/iter_<t>.pt: model states other runs start from (init_from)


#: the sources a stored run's numbers depend on, relative to the package: data, models,
#: parameters and devices, the estimators, the recorder (loop, metrics, rules, schedules)
#: and the metrics / update rules paper sections register with it. Plumbing (the run
#: store itself, profiles, tables, reporting) is left out: changing it changes no number.
CODE_SOURCES = ("core/data.py", "core/models.py", "core/params.py", "core/device.py", "core/stats.py",
                "curvature/*.py", "recorder/*.py", "papers/*/plugins.py", "papers/*/rules.py",
                "papers/*/measures.py", "papers/*/sharpest.py")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 (16 hex digits) of the files of :data:`CODE_SOURCES`, names and contents, in
    sorted order: recorded in every run's ``status.json`` as ``code``, so a run computed by
    other code is known (:func:`stale_reason`) without changing its key."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pattern in CODE_SOURCES:
        for f in sorted(pkg.glob(pattern)):
            h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def stale_reason(status: dict | None) -> str:
    """Why a stored run's numbers may not be what this code computes ("" if it is current):
    its ``code`` fingerprint is missing (stored before fingerprints were recorded) or
    differs from :func:`code_fingerprint`."""
    code = (status or {}).get("code")
    if code is None:
        return "computed before code fingerprints were recorded"
    if code != code_fingerprint():
        return f"computed by other code (fingerprint {code}, this code {code_fingerprint()})"
    return ""


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


# ----------------------------------------------------------------------------- files


def read_json(path: Path) -> dict | None:
    """A run file's JSON, None when absent; a damaged one raises :class:`CorruptRunError`."""
    hint = f"delete the run directory {Path(path).parent} to recompute it"
    return io_.read_json(path, CorruptRunError, hint)


def read_status(root: str | os.PathLike, key: str) -> dict | None:
    """The run's ``status.json`` in store ``root``: {} when absent, None when unreadable
    (a progress line or a plan row must not fail on one bad run directory)."""
    try:
        return read_json(Path(root) / key / STATUS_FILE) or {}
    except (OSError, CorruptRunError):
        return None


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
        metric columns of ``recorder.metrics.METRIC_COLUMNS``).
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
    have = read_json(run_dir / CONFIG_FILE)
    if have is None:
        io_.atomic_write_json(run_dir / CONFIG_FILE, want)
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
    checksums = {METRICS_FILE: io_.atomic_write_bytes(run_dir / METRICS_FILE, buf.getvalue())}
    arrays = {}
    for name, vals in out.arrays.items():
        try:
            arrays[name] = np.asarray(vals)
        except ValueError:  # ragged (e.g. a spectrum that changed length)
            arrays[name] = np.asarray(vals, dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    checksums[ARRAYS_FILE] = io_.atomic_write_bytes(run_dir / ARRAYS_FILE, buf.getvalue())
    if out.softmax:
        buf = io.BytesIO()
        np.save(buf, np.stack(out.softmax).astype(np.float32))
        checksums[SOFTMAX_FILE] = io_.atomic_write_bytes(run_dir / SOFTMAX_FILE, buf.getvalue())
    status.update(status=out.status, diverged_at=out.diverged_at, iteration=out.iterations,
                  crossings=out.crossings, seconds=out.seconds,
                  measure_seconds=out.measure_seconds, info=out.info, checksums=checksums,
                  n_measurements=len(df), error=None, finished=time.time())
    io_.atomic_write_json(run_dir / STATUS_FILE, status)
    return status


def _verify(run_dir: Path, status: dict) -> None:
    for name, digest in (status.get("checksums") or {}).items():
        p = run_dir / name
        if not p.exists():
            raise CorruptRunError(f"{p} is missing (status.json lists it); delete {run_dir} "
                                  "to recompute the run")
        if io_.sha256_file(p) != digest:
            raise CorruptRunError(f"{p} does not match its checksum in status.json: the file "
                                  f"is damaged; delete {run_dir} to recompute the run")


def load_dir(run_dir: Path, config: RunConfig | None = None) -> RunResult:
    """The finished run stored in ``run_dir`` (checksums verified)."""
    status = read_json(run_dir / STATUS_FILE)
    rec = read_json(run_dir / CONFIG_FILE)
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
    ``hooks`` and ``data`` are passed to :func:`recorder.loop.train` (``data``: a
    preloaded ``Data`` equal to what the config would load). ``device``:
    ``'auto'`` (CUDA when present, else CPU), ``'cpu'``, ``'cuda[:N]'``; a run
    may resume on another device than it started on.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    config = effective(config)  # the preflight's truncated run while $BREAKEVEN_PREFLIGHT_STEPS is set
    config.validate()
    device = resolve_device(device)
    root = store_root(store)
    key = config.key()
    run_dir = root / key
    run_dir.mkdir(parents=True, exist_ok=True)
    with _locked(run_dir):
        _check_config(run_dir, config)
        status = read_json(run_dir / STATUS_FILE) or {}
        if status.get("status") in ("done", "diverged"):
            return load_dir(run_dir, config)
        resume = None
        ckpt = run_dir / CHECKPOINT_FILE
        if ckpt.exists():
            try:
                resume = _rng_states_to_cpu(torch.load(ckpt, map_location=device,
                                                       weights_only=False))
            except Exception as e:
                raise CorruptRunError(f"cannot read {ckpt} ({e}); delete it to restart the "
                                      "run from the beginning") from e
        status = {"key": key, "version": __version__, "code": code_fingerprint(), "status": "running",
                  "n_starts": int(status.get("n_starts", 0)) + 1,
                  "resumed_from": (resume["loop"]["iteration"] if resume else None),
                  "host": socket.gethostname(), "pid": os.getpid(), "device": str(device),
                  "started": time.time(), "checksums": {}}
        io_.atomic_write_json(run_dir / STATUS_FILE, status)

        def save_checkpoint(state: dict) -> None:
            buf = io.BytesIO()
            torch.save(state, buf)
            io_.atomic_write_bytes(ckpt, buf.getvalue())

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
            io_.atomic_write_json(run_dir / STATUS_FILE, status)
            raise
        _write_results(run_dir, out, status)
        if not keep_checkpoint and ckpt.exists():
            ckpt.unlink()
        return load_dir(run_dir, config)


def run_key(config: RunConfig) -> str:
    """The key this store files ``config`` under: ``config.key()``, or its truncated run's while the
    preflight's switch is on (``store.truncation.effective``). Code that matches a sweep's rows
    (their ``key`` column) to configurations uses this, not ``config.key()``."""
    return effective(config).key()


def copy_run(src: RunConfig, dst: RunConfig, store: str | os.PathLike | None = None, *,
             note: str = "") -> None:
    """``src``'s finished results stored under ``dst``'s configuration: its data files copied,
    ``dst``'s config.json, and a status.json that says ``copy_of`` (``src``'s key) and ``note``
    (the preflight's stand-ins for the runs of a signature it executed once). Raises
    :class:`RunNotFinishedError` if ``src`` is not finished."""
    root = store_root(store)
    a, b = root / src.key(), root / dst.key()
    status = read_json(a / STATUS_FILE) or {}
    if status.get("status") not in ("done", "diverged"):
        raise RunNotFinishedError(f"run {src.key()} is not finished in {root}: nothing to copy")
    b.mkdir(parents=True, exist_ok=True)
    with _locked(b):
        for name in status.get("checksums", {}):
            io_.atomic_write_bytes(b / name, (a / name).read_bytes())
        io_.atomic_write_json(b / CONFIG_FILE, _config_record(dst))
        io_.atomic_write_json(b / STATUS_FILE, {**status, "key": dst.key(), "copy_of": src.key(),
                                                "note": note})


def discard(config: RunConfig, store: str | os.PathLike | None = None) -> bool:
    """Delete the stored run of ``config`` (results, checkpoint and saved states) so that the
    next :func:`run` recomputes it, under its lock; True if there was one."""
    run_dir = store_root(store) / config.key()
    if not run_dir.exists():
        return False
    with _locked(run_dir):
        for p in run_dir.iterdir():
            if p.name == LOCK_FILE:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    return True


def _state_path(root: Path, config: RunConfig, iteration: int) -> Path:
    return root / config.key() / STATES_DIR / f"iter_{int(iteration)}.pt"


def _save_state(path: Path, model, iteration: int, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"model": {k: v.detach().clone().cpu() for k, v in model.state_dict().items()},
                "iteration": int(iteration), "key": key}, buf)
    io_.atomic_write_bytes(path, buf.getvalue())


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
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
        raise ValueError(f"iteration must be a positive integer, got {iteration!r}")
    config = effective(config)
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
    parent_state = None
    if config.init_from is not None:  # the replayed run itself starts from another run's state
        parent_state = state_at(RunConfig.from_dict(config.init_from["config"]),
                                config.init_from["iteration"], store, device=device, progress=progress)
    try:
        out = train(config, device=device, hooks=[capture], checkpoint=None, progress=progress,
                    desc=f"replay {config.key()[:8]} to t={iteration}", init_state=parent_state)
    except _Reached:
        return torch.load(path, map_location=device, weights_only=False)
    raise ValueError(f"run {config.key()} ended at iteration {out.iterations} ({out.status}) before "
                     f"iteration {iteration}: no state to start from")


def _rng_states_to_cpu(obj):
    """Random-generator states (uint8 tensors: ``torch.get_rng_state``,
    ``Generator.get_state``) back on the CPU after ``torch.load(map_location=cuda)``:
    ``torch.set_rng_state`` and CPU generators take CPU states only."""
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
        config = effective(config_or_key)
        run_dir = root / config.key()
        if not (run_dir / CONFIG_FILE).exists():
            raise RunNotFinishedError(f"no run for this configuration in {root}")
        _check_config(run_dir, config)
        return load_dir(run_dir, config)
    return load_dir(root / str(config_or_key))


def list_runs(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run directory: key, status, iteration, version and the config fields."""
    root = store_root(store)
    rows = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        if not (d / CONFIG_FILE).exists():
            continue
        try:
            rec = read_json(d / CONFIG_FILE)
            st = read_json(d / STATUS_FILE) or {}
        except CorruptRunError as e:
            rows.append({"key": d.name, "status": "corrupt", "error": str(e)})
            continue
        rows.append({"key": d.name, "status": st.get("status"), "iteration": st.get("iteration"),
                     "diverged_at": st.get("diverged_at"), "version": rec.get("version"),
                     "error": st.get("error"), **flat_config(rec.get("config", {}))})
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
    not finished in the store (failed, missing)], "code" (:func:`code_fingerprint` of this
    code), "runs_by_other_code" (finished runs whose fingerprint differs or is missing), and
    with ``since``: "runs_computed", "computed_seconds"}.
    """
    root = store_root(store)
    total = measure = now_s = 0.0
    now, missing, other_code = 0, [], 0
    keys = _run_keys(runs)
    for k in keys:
        st = read_json(root / k / STATUS_FILE) or {}
        if st.get("status") not in ("done", "diverged") or st.get("seconds") is None:
            missing.append(k)
            continue
        other_code += bool(stale_reason(st))
        total += float(st["seconds"])
        measure += float(st.get("measure_seconds") or 0.0)
        if since is not None and float(st.get("finished") or 0.0) >= since:
            now += 1
            now_s += float(st["seconds"])
    out = {"runs": len(keys), "compute_seconds": round(total, 1), "measure_seconds": round(measure, 1),
           "runs_without_time": missing, "code": code_fingerprint(), "runs_by_other_code": other_code}
    if since is not None:
        out.update(runs_computed=now, computed_seconds=round(now_s, 1))
    return out


def flat_config(d: dict) -> dict:
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


def run_job(config_dict: dict, root: str, device: str = "auto",
             checkpoint_every: int | str | None = "measure", progress: bool = False,
             threads: int | None = None) -> dict:
    """Executor entry point (picklable, importable): run one config, report its status.
    ``device`` is resolved on the worker ('auto': its GPU if it has one); ``threads``
    sets the worker's ``torch.set_num_threads`` first."""
    if threads:
        torch.set_num_threads(threads)
    config = RunConfig.from_dict(config_dict)
    try:
        res = run(config, root, device=device, checkpoint_every=checkpoint_every,
                  progress=progress)
        return {"key": res.key, "status": res.status, "error": None}
    except Exception as e:  # recorded in status.json too; the sweep decides
        return {"key": config.key(), "status": "failed", "error": f"{type(e).__name__}: {e}"}
