"""Where a sweep's runs execute: this process, a local process pool, SLURM (submitit)
or a Dask cluster, chosen by environment variables so no notebook changes per cluster.

``make reproduce EXECUTOR=...`` (scripts/reproduce.py) sets them for the notebooks,
which pass :func:`executor_from_env` to ``sweeps.sweep``:

``BREAKEVEN_EXECUTOR``
    ``local`` (default: the notebook's ``jobs`` processes on this machine),
    ``slurm`` (submitit's ``AutoExecutor``; one SLURM job per run, submitted as
    one job array) or ``dask`` (a ``distributed.Client``).
``BREAKEVEN_SCHEDULER``
    the Dask scheduler address, ``host:port`` (required for ``dask``).
``BREAKEVEN_SLURM_CONFIG``
    a TOML file of submitit parameters (``slurm_partition = "gpu"``,
    ``gpus_per_node = 1``, ``timeout_min = 240``, ``cpus_per_task = 8``,
    ``slurm_additional_parameters = {...}``, ...), passed to
    ``AutoExecutor.update_parameters``; the variables below override it:
``BREAKEVEN_SLURM_PARTITION``, ``BREAKEVEN_SLURM_GPUS`` (GPUs per job),
``BREAKEVEN_SLURM_TIME`` (minutes), ``BREAKEVEN_SLURM_CPUS`` (CPUs per job, also
the torch thread count of a job), ``BREAKEVEN_SLURM_MEM_GB``,
``BREAKEVEN_SLURM_LOGS`` (log folder, default ``<run store>/_slurm_logs``).
``BREAKEVEN_THREADS``
    torch threads per job (any executor).

The run store must be a path every worker sees: :func:`check_store` rejects a
relative path or one under a temporary directory when the executor is remote
(SLURM, or a Dask scheduler on another host), before anything is submitted.
SLURM jobs are ``submitit.helpers.Checkpointable``: a job pre-empted or timed out
is requeued by submitit and the run resumes from its last checkpoint in the store.
"""

from __future__ import annotations

import os
import tempfile
import time
import tomllib
from concurrent.futures import Future
from concurrent.futures import as_completed as cf_as_completed
from pathlib import Path

from breakeven_utils.store.runs import run_job, store_root

__all__ = ["EXECUTORS", "default_jobs", "sweep_env", "executor_from_env", "slurm_executor", "dask_client",
           "check_store", "is_remote", "threads_from_env", "RunJob", "submit_runs", "as_completed"]

EXECUTORS = ("local", "slurm", "dask")
_SLURM_ENV = {  # env var -> (submitit parameter, type)
    "BREAKEVEN_SLURM_PARTITION": ("slurm_partition", str),
    "BREAKEVEN_SLURM_GPUS": ("gpus_per_node", int),
    "BREAKEVEN_SLURM_TIME": ("timeout_min", int),
    "BREAKEVEN_SLURM_CPUS": ("cpus_per_task", int),
    "BREAKEVEN_SLURM_MEM_GB": ("mem_gb", float),
    "BREAKEVEN_SLURM_ARRAY_PARALLELISM": ("slurm_array_parallelism", int),
}
_CACHE: dict = {}  # one executor per setting and process (a notebook sweeps several times)


def _missing(pkg: str, what: str) -> ImportError:
    return ImportError(f"{what} needs the optional package {pkg!r}: pip install '.[cluster]' "
                       f"(or pip install {pkg})")


def default_jobs(profile: str | None) -> int:
    """Local processes a notebook's sweeps use when ``jobs`` is not given: 1 at the ``smoke``
    profile or without one, else 2 (the plan and the fresh-run notes assume the same)."""
    return 1 if profile in (None, "smoke") else 2


def sweep_env(store=None, environ=None, *, jobs: int | None = None, profile: str | None = None) -> dict:
    """``sweeps.sweep`` keyword arguments, the one call a notebook makes:
    ``sweeps.sweep(configs, store=run_store, **sweeps.sweep_env(run_store, jobs=jobs, profile=profile))``.

    Gives ``executor`` (:func:`executor_from_env`), ``device`` (``$BREAKEVEN_DEVICE``,
    default 'auto'), ``jobs`` (local processes: ``jobs`` if given, else 1 at the
    ``smoke`` profile or without one, else 2) and ``threads_per_job``
    (:func:`threads_from_env`, else one torch thread per process when several run side
    by side: oversubscribed torch is 20-100x slower) and ``recompute`` (``$RECOMPUTE``:
    'stale' recomputes stored runs computed by other code)."""
    env = os.environ if environ is None else environ
    if jobs is None:
        jobs = default_jobs(profile)
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    threads = threads_from_env(env) or (1 if jobs > 1 else None)
    recompute = (env.get("RECOMPUTE") or "").strip().lower() or None
    if recompute not in (None, "stale"):
        raise ValueError(f"RECOMPUTE must be empty or 'stale', got {env.get('RECOMPUTE')!r}")
    return {"executor": executor_from_env(store, env), "device": env.get("BREAKEVEN_DEVICE") or "auto",
            "jobs": int(jobs), "threads_per_job": threads, "recompute": recompute}


def executor_from_env(store=None, environ=None):
    """The executor named by ``$BREAKEVEN_EXECUTOR`` for ``sweeps.sweep(executor=...)``:
    None for ``local`` (the sweep's own ``jobs`` process pool), a submitit executor for
    ``slurm``, a ``distributed.Client`` for ``dask``. Errors (unknown name, no scheduler
    address, missing package, bad SLURM setting) are raised here, before any submission.
    ``store``: the run store (default log folder of SLURM jobs)."""
    env = os.environ if environ is None else environ
    name = (env.get("BREAKEVEN_EXECUTOR") or "local").strip().lower()
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r} (BREAKEVEN_EXECUTOR / make EXECUTOR=); "
                         f"valid: {', '.join(EXECUTORS)}")
    if name == "local":
        return None
    if name == "dask":
        return dask_client(env.get("BREAKEVEN_SCHEDULER"))
    params = slurm_params_from_env(env)
    logs = env.get("BREAKEVEN_SLURM_LOGS") or str(store_root(store).expanduser().absolute() / "_slurm_logs")
    return slurm_executor(logs, **params)


def slurm_params_from_env(environ=None) -> dict:
    """submitit parameters from ``$BREAKEVEN_SLURM_CONFIG`` (TOML) and the
    ``BREAKEVEN_SLURM_*`` variables (which win)."""
    env = os.environ if environ is None else environ
    params: dict = {}
    cfg = env.get("BREAKEVEN_SLURM_CONFIG")
    if cfg:
        path = Path(cfg).expanduser()
        if not path.is_file():
            raise ValueError(f"BREAKEVEN_SLURM_CONFIG={cfg!r}: no such file")
        try:
            params.update(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None
    for var, (key, typ) in _SLURM_ENV.items():
        v = env.get(var)
        if v not in (None, ""):
            try:
                params[key] = typ(v)
            except ValueError:
                raise ValueError(f"{var}={v!r} must be a {typ.__name__}") from None
    return params


def slurm_executor(folder, cluster: str | None = None, **params):
    """``submitit.AutoExecutor(folder, cluster=cluster)`` with ``params`` (submitit
    checks their names). ``cluster='local'`` runs the jobs as local processes (tests)."""
    try:
        import submitit  # noqa: PLC0415 -- optional extra ([cluster]): imported only for EXECUTOR=slurm
    except ImportError:
        raise _missing("submitit", "EXECUTOR=slurm") from None
    key = ("slurm", str(folder), cluster, repr(sorted(params.items())))
    if key not in _CACHE:
        ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        if cluster is None and ex.cluster != "slurm":
            raise RuntimeError(f"EXECUTOR=slurm, but no SLURM cluster is reachable from this host "
                               f"(submitit found {ex.cluster!r}: no sbatch?); submit from a login node")
        if params:
            ex.update_parameters(**params)
        _CACHE[key] = ex
    return _CACHE[key]


def dask_client(address):
    """A ``distributed.Client`` connected to ``address`` (``host:port`` or
    ``tcp://host:port``), or ``address`` itself when it is already a Client."""
    if address is not None and hasattr(address, "submit") and hasattr(address, "scheduler_info"):
        return address
    if not address or not str(address).strip():
        raise ValueError("EXECUTOR=dask needs the scheduler address: SCHEDULER=host:port "
                         "(BREAKEVEN_SCHEDULER)")
    try:
        from distributed import Client  # noqa: PLC0415 -- optional extra ([cluster]): only for EXECUTOR=dask
    except ImportError:
        raise _missing("distributed", "EXECUTOR=dask") from None
    address = str(address).strip()
    if "://" not in address:
        address = "tcp://" + address
    if ("dask", address) not in _CACHE:
        try:
            _CACHE[("dask", address)] = Client(address, timeout="20s")
        except OSError as e:
            raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    return _CACHE[("dask", address)]


def threads_from_env(environ=None) -> int | None:
    """Torch threads per job: ``$BREAKEVEN_THREADS``, else ``$BREAKEVEN_SLURM_CPUS``, else None."""
    env = os.environ if environ is None else environ
    for var in ("BREAKEVEN_THREADS", "BREAKEVEN_SLURM_CPUS"):
        v = env.get(var)
        if v:
            try:
                n = int(v)
            except ValueError:
                raise ValueError(f"{var}={v!r} must be a positive integer") from None
            if n < 1:
                raise ValueError(f"{var}={v!r} must be a positive integer")
            return n
    return None


# ----------------------------------------------------------------------------- remote or not


def _is_submitit(executor) -> bool:
    return type(executor).__module__.startswith("submitit")


def _is_dask(executor) -> bool:
    return type(executor).__module__.startswith("distributed")


_LOCAL_HOSTS = ("127.", "localhost", "inproc", "[::1]", "::1")


def is_remote(executor) -> bool:
    """True when the executor's workers may run on another machine: a submitit
    executor that is not the local one, or a Dask client whose scheduler is not on
    this host. Process and thread pools (and unknown executors) count as local."""
    if executor is None:
        return False
    if _is_submitit(executor):
        cluster = getattr(executor, "cluster", None) or type(executor).__name__.lower()
        return not any(s in str(cluster).lower() for s in ("local", "debug"))
    if _is_dask(executor):
        addr = getattr(getattr(executor, "scheduler", None), "address", "") or ""
        host = addr.split("://", 1)[-1]
        return not host.startswith(_LOCAL_HOSTS)
    return False


def check_store(store, executor) -> Path:
    """The absolute run-store path; with a remote executor, a relative path or one
    in a temporary directory (which other machines cannot see) is an error."""
    path = Path(store).expanduser()
    if not is_remote(executor):
        return path.absolute()
    if not path.is_absolute():
        raise ValueError(f"the run store {str(store)!r} is a relative path, but the runs execute "
                         "on other machines: give an absolute path on a file system every worker "
                         "mounts (BREAKEVEN_RUNS=/shared/.../runs)")
    real = os.path.realpath(path)
    for tmp in {tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}:
        t = os.path.realpath(tmp)
        if real == t or real.startswith(t.rstrip("/") + "/"):
            raise ValueError(f"the run store {str(store)!r} is in the temporary directory {tmp}, "
                             "which is local to each machine: the workers could not write to it "
                             "nor this process read their results; use a shared file system")
    return path


# ----------------------------------------------------------------------------- submission

try:  # a pre-empted / timed-out SLURM job is requeued by submitit and resumes its run
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - submitit is an optional extra
    Checkpointable = object


class RunJob(Checkpointable):
    """``runs.run_job`` as a submitit-checkpointable callable: on pre-emption or
    time-out submitit resubmits the same call, and ``runs.run`` resumes the run
    from the checkpoint in the store."""

    def __call__(self, *args, **kwargs):
        return run_job(*args, **kwargs)


def submit_runs(executor, calls: list[tuple]) -> list:
    """Submit ``runs.run_job(*args)`` for every ``args`` in ``calls``; returns the
    futures (submitit jobs, Dask or concurrent futures). submitit: one job array."""
    if _is_submitit(executor):
        job = RunJob()
        with executor.batch():
            futures = [executor.submit(job, *args) for args in calls]
        return futures
    if _is_dask(executor):
        # pure=False: a rerun of the sweep resubmits (the store decides what is cached); a
        # task whose worker died is rerun by the scheduler and resumes from its checkpoint
        return [executor.submit(run_job, *args, pure=False) for args in calls]
    return [executor.submit(run_job, *args) for args in calls]


def as_completed(futures, poll: float = 1.0):
    """Yield ``(index, future)`` as the futures finish (any completion order)."""

    index = {id(f): i for i, f in enumerate(futures)}
    if futures and all(isinstance(f, Future) for f in futures):
        for f in cf_as_completed(futures):
            yield index[id(f)], f
        return
    if futures and _is_dask(futures[0]):
        from distributed import as_completed as dask_as_completed  # noqa: PLC0415 -- optional extra: Dask futures
        by_key = {f.key: i for i, f in enumerate(futures)}
        for f in dask_as_completed(futures):
            yield by_key[f.key], f
        return
    pending = list(futures)
    if not all(hasattr(f, "done") for f in pending):  # the smallest executors: in order
        for i, f in enumerate(futures):
            yield i, f
        return
    while pending:
        done = [f for f in pending if f.done()]
        for f in done:
            pending.remove(f)
            yield index[id(f)], f
        if pending and not done:
            time.sleep(poll)
