#!/usr/bin/env python
"""Regenerate every figure and table: run each notebooks/NN_*.ipynb through papermill.

    python scripts/reproduce.py --profile cpu [--notebooks 01_break_even ...] [--out DIR]
    python scripts/reproduce.py --profile paper --plan     # the runs and their cost; trains nothing
    python scripts/reproduce.py --profile paper --executor slurm   # or dask --scheduler host:port

Where the runs execute: ``--executor local`` (default; ``--jobs`` processes here),
``slurm`` (submitit; partition/GPUs/time from ``--slurm-config`` (TOML) and the
``BREAKEVEN_SLURM_*`` variables) or ``dask`` (``--scheduler host:port``), on
``--device auto|cpu|cuda``. They reach the notebooks as environment variables
(``BREAKEVEN_EXECUTOR``, ``BREAKEVEN_SCHEDULER``, ``BREAKEVEN_DEVICE``,
``BREAKEVEN_THREADS``, ``BREAKEVEN_RUNS``), read by ``records.sweep_env``, and are
checked (executor reachable, run store visible to the workers) before any notebook
starts.

Each notebook runs with ``-p profile <profile> -p output_root <abs out dir>``
(its ``parameters``-tagged cell holds the defaults), in the notebook's own
directory, on the ``python3`` kernel of the interpreter running this script.
``<out>`` defaults to ``figures/``, and for ``--profile smoke`` to
``runs/smoke_figures/`` (the notebooks' own rule, ``reporting.notebook_paths``), so a
smoke run never overwrites the committed figures and ``CLAIMS.md``.
The executed copy goes to ``<out>/<section>/<name>.executed.ipynb``
(01_break_even -> break_even); when ``<out>`` is the committed ``figures/`` it replaces
``notebooks/<name>.ipynb`` instead (``reporting.published``: the notebooks a reader opens
show the results the committed figures come from; a failed notebook stays in
``<out>/<section>/`` and the committed one is left alone). The wall time, status and profile of each
notebook are merged into ``<out>/manifest.json``. A failing notebook does not
stop the others; the exit status is 1 if any failed. Afterwards the claims
ledger ``<out>/CLAIMS.md`` (+ ``claims_ledger.png``) is written from every
``<out>/<section>/claims.csv`` present (breakeven_utils.reporting.ledger).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from breakeven_utils.core.tables import to_markdown  # noqa: E402
from breakeven_utils.papers.registry import absences, folder_of, notebook_order  # noqa: E402
from breakeven_utils.reporting.manifest import default_output_root, write_manifest  # noqa: E402
from breakeven_utils.reporting.published import publish  # noqa: E402
from breakeven_utils.store.executors import default_jobs  # noqa: E402
from breakeven_utils.store.preflight import auto_jobs, load_results, memory_plan, memory_tables  # noqa: E402

NOTEBOOK_RE = re.compile(r"^\d+_[A-Za-z0-9_\-]+\.ipynb$")


def find_notebooks(notebook_dir: Path, names: list[str] | None) -> list[Path]:
    """notebooks/NN_*.ipynb in order, or the requested ones (by name, name.ipynb or path)."""
    available = sorted(p for p in notebook_dir.glob("*.ipynb") if NOTEBOOK_RE.match(p.name))
    if not names:
        return available
    by_stem = {p.stem: p for p in available}
    chosen, unknown = [], []
    for n in names:
        stem = Path(n).name.removesuffix(".ipynb")
        if stem in by_stem:
            chosen.append(by_stem[stem])
        else:
            unknown.append(n)
    if unknown:
        raise SystemExit(f"reproduce: no notebook {unknown} in {notebook_dir} "
                         f"(available: {[p.stem for p in available]})")
    return chosen


def check_kernel(kernel_name: str) -> None:
    """Make sure `kernel_name` starts this interpreter (a user-level kernelspec could shadow it)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise SystemExit(f"reproduce: no Jupyter kernel named {kernel_name!r}; install ipykernel "
                         f"in {sys.prefix}") from None
    exe = spec.argv[0] if spec.argv else ""
    # jupyter_client replaces a bare 'python'/'python3'/'python3.X' by sys.executable
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if exe not in bare and os.path.abspath(exe) != os.path.abspath(sys.executable):
        raise SystemExit(f"reproduce: kernel {kernel_name!r} ({spec.resource_dir}) starts {exe}, "
                         f"not this interpreter {sys.executable}; pass --kernel <name> of a kernel "
                         f"for this environment")


def default_out(profile: str) -> Path:
    """The output root a notebook picks for ``profile`` when given none, resolved against the
    repository: figures/, or runs/smoke_figures/ for smoke (reporting.default_output_root)."""
    return (ROOT / "notebooks" / default_output_root(profile)).resolve()


#: the committed output root: a notebook executed into it is published to notebooks/
COMMITTED_FIGURES = (ROOT / "figures").resolve()


#: the GPU the plan's memory table assumes when there is none here and GPU_MEM is not given
DEFAULT_GPU_MEM_GB = 80.0


def jobs_arg(text: str):
    """``--jobs``: a positive integer or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return n


def publish_target(nb: Path, out: Path) -> Path | None:
    """Where the executed ``nb`` is published: the notebook itself when it is one of the
    repository's notebooks/ and ``out`` is the committed figures/ (the notebooks show the
    results the committed figures come from), else None (it stays in ``out``)."""
    if out.resolve() == COMMITTED_FIGURES and nb.parent.resolve() == (ROOT / "notebooks").resolve():
        return nb
    return None


def run_notebook(nb: Path, out: Path, profile: str, kernel: str, timeout: float | None,
                 log_output: bool, jobs: int | None = None, publish_to: Path | None = None) -> dict:
    """Execute one notebook with papermill; returns its manifest entry. With ``publish_to``
    the executed copy replaces that file (``reporting.published.publish``) once it ran
    through; a failed one stays in ``<out>/<section>/``."""
    import papermill as pm

    outdir = out / folder_of(nb.stem)
    outdir.mkdir(parents=True, exist_ok=True)
    executed = outdir / f"{nb.stem}.executed.ipynb"
    entry = {"profile": profile, "executed_notebook": os.path.relpath(executed, out),
             "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb), str(executed),
            parameters={"profile": profile,
                        # the notebook's own default resolves to the same folder: no machine path
                        # in the executed notebook's injected cell
                        **({} if out == default_out(profile) else {"output_root": str(out)}),
                        **({"jobs": jobs} if jobs else {})},
            kernel_name=kernel, language="python", cwd=str(nb.parent), progress_bar=False,
            log_output=log_output, execution_timeout=timeout,
        )
        entry.update(status="ok", error=None)
        if publish_to is not None:  # the published copy drops papermill's metadata altogether
            target = publish(executed, publish_to)
            executed.unlink()
            entry["executed_notebook"] = os.path.relpath(target, out)
        else:
            relative_paths(executed)
    except Exception as e:  # noqa: BLE001 -- report and continue with the next notebook
        if hasattr(e, "ename"):  # papermill.PapermillExecutionError: a cell raised
            err = f"{e.ename}: {e.evalue} (cell {e.exec_count})"
        else:
            lines = str(e).strip().splitlines()
            err = f"{type(e).__name__}: {lines[-1] if lines else ''}"
        entry.update(status="failed", error=err[:500])
    entry["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return entry


def fresh_run_entry(entry: dict, jobs: int | None = None) -> dict:
    """The manifest's fresh-run fields when this execution computed every run of the notebook
    (an empty run store): its wall time is the notebook's cost from scratch, which the cpu
    budget (#21) and ``benchmarks/plan_accuracy.py`` read; {} otherwise (a redraw from stored
    runs keeps the last fresh measurement)."""
    runs, computed = entry.get("runs"), entry.get("runs_computed")
    if entry.get("status") != "ok" or not runs or computed != runs:
        return {}
    # the layout store.executors.sweep_env gives the notebook's sweeps
    jobs = jobs or default_jobs(entry.get("profile"))
    threads = os.environ.get("BREAKEVEN_THREADS") or ("1" if jobs > 1 else "all")
    git = str(entry.get("git_commit", "?"))[:7]
    return {"fresh_run_wall_time_s": entry["wall_time_s"],
            "fresh_run_note": (f"empty run store, {runs} runs computed by this execution "
                               f"(code {entry.get('code', '?')}, git {git}), "
                               f"{jobs} job(s) x {threads} thread(s), "
                               f"{entry.get('cpu_count')} cores; wall_time_s is the last execution")}


def relative_paths(executed: Path) -> None:
    """papermill's metadata (input_path, output_path) as paths relative to the repository,
    so a committed executed notebook names no machine's folders."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        p = Path(str(meta.get(key, "")))
        if p.is_absolute() and p.resolve().is_relative_to(ROOT):
            meta[key] = p.resolve().relative_to(ROOT).as_posix()
    nbformat.write(nb, executed)


def configure_environment(args) -> Path:
    """Put device, executor and run store into the environment the notebooks inherit,
    and check them now: a wrong name, an unreachable scheduler or a run store the
    workers cannot see stops here, before any notebook (or submission) starts."""
    from breakeven_utils.core.device import resolve_device
    from breakeven_utils.store import executors

    env = os.environ
    env.setdefault("BREAKEVEN_PROGRESS", "text")  # text bars in the executed notebooks (core.console)
    for var, val in (("BREAKEVEN_DEVICE", args.device), ("BREAKEVEN_EXECUTOR", args.executor),
                     ("BREAKEVEN_SCHEDULER", args.scheduler), ("BREAKEVEN_SLURM_CONFIG", args.slurm_config),
                     ("BREAKEVEN_THREADS", str(args.threads) if args.threads else None)):
        if val not in (None, ""):
            env[var] = val
    if args.jobs is not None and args.jobs != "auto" and args.jobs < 1:
        raise ValueError(f"--jobs must be a positive integer or 'auto', got {args.jobs}")
    name = (env.get("BREAKEVEN_EXECUTOR") or "local").lower()
    if name not in executors.EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(executors.EXECUTORS)}")
    if name != "local" and not (args.run_store or env.get("BREAKEVEN_RUNS")):
        raise ValueError(f"--executor {name}: set the run store to a path on a file system every "
                         "worker mounts (RUNS=/shared/.../runs, or BREAKEVEN_RUNS)")
    if name == "local" and args.jobs != "auto" and (args.jobs or 1) > 1 and not env.get("BREAKEVEN_THREADS"):
        # N local processes share the cores: without this each would use all of them
        env["BREAKEVEN_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    store = Path(args.run_store or env.get("BREAKEVEN_RUNS") or ROOT / "runs").expanduser()
    if name == "local":
        store = store.absolute()
    device = env.get("BREAKEVEN_DEVICE") or "auto"
    if name == "local" or args.plan:
        resolve_device(device)  # remote workers resolve 'auto' on their own hardware
    if not args.plan:  # connects to the scheduler / checks sbatch; the plan submits nothing
        ex = executors.executor_from_env(store)
        executors.check_store(store, ex)
    env["BREAKEVEN_RUNS"] = str(store)
    return store


def print_plan(args, store: Path) -> int:
    """``--plan``: the runs of every notebook, their estimated cost on this device and totals."""
    import torch

    from breakeven_utils.papers.registry import notebook_runs
    from breakeven_utils.store import plan

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [Path(n).name.removesuffix(".ipynb") for n in args.notebooks] if args.notebooks else None
    try:
        runs = notebook_runs(args.profile, names)
        p = plan.plan(runs, args.profile, device=os.environ.get("BREAKEVEN_DEVICE") or "auto",
                      store=store, recalibrate=args.recalibrate)
    except ValueError as e:
        raise SystemExit(f"reproduce --plan: {e}") from None
    jobs = args.jobs if isinstance(args.jobs, int) else default_jobs(args.profile)  # the notebooks' layout
    print(plan.plan_tables(p, jobs=jobs, rows=args.rows,
                           overhead=plan.notebook_overheads(default_out(args.profile) / "manifest.json",
                                                            args.profile, list(runs))))
    mem, gpu_gb, where = run_memory(args, runs)
    print(memory_tables(mem, gpu_gb, rows=args.rows) + f"({where})")
    return 0


def preflight_results(profile: str) -> Path:
    """Where ``make preflight`` keeps its second stage's measurements of ``profile``."""
    return ROOT / "figures" / f"preflight_{profile}.json"


def run_memory(args, runs: dict):
    """(``store.preflight.memory_plan`` of ``runs`` from the preflight's measurements, the GPU's GB,
    where that size comes from): what the plan prints and ``--jobs auto`` packs by."""
    gpu_gb, where = gpu_memory(args)
    return memory_plan(runs, load_results(preflight_results(args.profile)), gpu_gb), gpu_gb, where


def gpu_memory(args) -> tuple[float, str]:
    """(GB, where it comes from): ``--gpu-mem`` (GPU_MEM), else the first CUDA device's memory,
    else :data:`DEFAULT_GPU_MEM_GB`."""
    import torch

    if args.gpu_mem:
        return float(args.gpu_mem), "GPU_MEM"
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2 ** 30, torch.cuda.get_device_name(0)
    return DEFAULT_GPU_MEM_GB, f"no GPU here: a {DEFAULT_GPU_MEM_GB:g} GB GPU assumed; GPU_MEM=... sets it"


def resolve_jobs(args, notebooks: list[Path]) -> dict:
    """{notebook: jobs}: ``--jobs N`` (or None: the notebook's default) for every notebook, or with
    ``--jobs auto`` on CUDA the runs that fit on the GPUs at once by the preflight's measured
    memory (``store.preflight.auto_jobs``), each process with its share of the cores; an error
    before any notebook runs when a notebook's runs were not preflighted or do not fit."""
    if args.jobs != "auto":
        return {nb.stem: args.jobs for nb in notebooks}
    import torch

    from breakeven_utils.core.device import resolve_device
    from breakeven_utils.papers.registry import notebook_runs

    if resolve_device(os.environ.get("BREAKEVEN_DEVICE") or "auto") == "cpu":
        print("reproduce: --jobs auto on the CPU: each notebook's default number of jobs")
        return {nb.stem: None for nb in notebooks}
    n_gpus = torch.cuda.device_count()
    mem, gpu_gb, where = run_memory(args, notebook_runs(args.profile, [nb.stem for nb in notebooks]))
    out, bad = {}, []
    for nb in notebooks:
        out[nb.stem] = auto_jobs(mem, nb.stem, n_gpus)
        if out[nb.stem] is None:
            bad.append(nb.stem)
    if bad:
        raise SystemExit(f"reproduce: --jobs auto: {', '.join(bad)} has runs without a preflight memory "
                         f"measurement, or runs that do not fit on a {gpu_gb:.0f} GB GPU: run make preflight "
                         f"PROFILE={args.profile} NOTEBOOKS=\"{' '.join(bad)}\" first, or give JOBS=N")
    most = max(out.values())
    os.environ.setdefault("BREAKEVEN_THREADS", str(max(1, (os.cpu_count() or 1) // most)))
    print("reproduce: --jobs auto on " + f"{n_gpus} GPU(s) of {gpu_gb:.0f} GB ({where}): "
          + ", ".join(f"{k}: {v}" for k, v in out.items()))
    return out


def write_ledger(out: Path) -> bool:
    """figures/CLAIMS.md + claims_ledger.png/.pdf from every <out>/<section>/claims.csv present
    (breakeven_utils.reporting.ledger.overview); False (reported) if it could not be written."""
    from breakeven_utils.reporting.ledger import overview

    try:
        res = overview(out, order=notebook_order(), absences=absences())
    except Exception as e:  # noqa: BLE001 -- the notebooks' outputs stand; report and fail the exit status
        print(f"reproduce: could not write the claims ledger: {type(e).__name__}: {e}", file=sys.stderr)
        return False
    counts = ", ".join(f"{n} {v}" for v, n in res["counts"].items())
    print(f"claims ledger: {res['path']} ({res['n_claims']} claims: {counts}; "
          f"{res['n_absent']} claims of the papers not tested, with why)"
          + (f"; old-rule sections: {', '.join(res['legacy'])}" if res["legacy"] else ""))
    for f, err in res["errors"].items():
        print(f"reproduce: unreadable claims file {f}: {err}", file=sys.stderr)
    return not res["errors"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", help="scale profile passed to every notebook (default: cpu)")
    ap.add_argument("--notebooks", nargs="+", metavar="NAME",
                    help="notebooks to run, e.g. 01_break_even (default: every notebooks/NN_*.ipynb)")
    ap.add_argument("--out", default=None,
                    help="output root (default: <repo>/figures; runs/smoke_figures for --profile smoke)")
    ap.add_argument("--notebook-dir", default=str(ROOT / "notebooks"), help=argparse.SUPPRESS)
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    ap.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    ap.add_argument("--log-output", action="store_true", help="stream the notebooks' cell outputs")
    ap.add_argument("--plan", action="store_true",
                    help="print every run the notebooks would launch and its estimated cost; train nothing")
    ap.add_argument("--recalibrate", action="store_true", help="--plan: time this device again")
    ap.add_argument("--rows", action="store_true", help="--plan: one row per run, not only the totals")
    ap.add_argument("--device", default=None, help="auto (default) | cpu | cuda | cuda:N")
    ap.add_argument("--executor", default=None, help="local (default) | slurm | dask")
    ap.add_argument("--scheduler", default=None, help="Dask scheduler host:port (--executor dask)")
    ap.add_argument("--slurm-config", default=None, help="TOML of submitit parameters (--executor slurm)")
    ap.add_argument("--jobs", type=jobs_arg, default=None,
                    help="runs in parallel (local executor); 'auto' on GPUs: as many as fit by the "
                         "preflight's measured memory")
    ap.add_argument("--gpu-mem", type=float, default=None,
                    help=f"GB of one GPU for the plan's memory table and --jobs auto (default: the "
                         f"device's, else {DEFAULT_GPU_MEM_GB:g})")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run")
    ap.add_argument("--run-store", default=None, help="run store (default $BREAKEVEN_RUNS, else <repo>/runs)")
    args = ap.parse_args(argv)

    from breakeven_utils.core.profiles import PROFILES

    if args.profile not in PROFILES:
        raise SystemExit(f"reproduce: unknown profile {args.profile!r} (known: {sorted(PROFILES)})")
    try:
        store = configure_environment(args)
    except (ValueError, ImportError, ConnectionError, RuntimeError) as e:
        raise SystemExit(f"reproduce: {e}") from None
    if args.plan:
        return print_plan(args, store)
    notebooks = find_notebooks(Path(args.notebook_dir).resolve(), args.notebooks)
    if not notebooks:
        print(f"reproduce: no notebooks/NN_*.ipynb in {args.notebook_dir}; nothing to do")
        return 0
    check_kernel(args.kernel)
    out = Path(args.out).resolve() if args.out else default_out(args.profile)
    out.mkdir(parents=True, exist_ok=True)

    jobs = resolve_jobs(args, notebooks)
    rows = []
    for nb in notebooks:
        print(f"reproduce: running {nb.name} (profile {args.profile}) ...", flush=True)
        entry = run_notebook(nb, out, args.profile, args.kernel, args.timeout, args.log_output,
                             jobs[nb.stem], publish_to=publish_target(nb, out))
        manifest = write_manifest(out / "manifest.json", {nb.stem: entry})
        fresh = fresh_run_entry(manifest["notebooks"].get(nb.stem, {}), jobs[nb.stem])
        if fresh:
            manifest = write_manifest(out / "manifest.json", {nb.stem: fresh})
        other = manifest["notebooks"].get(nb.stem, {}).get("runs_by_other_code")
        print(f"reproduce: {nb.name} {entry['status']} in {entry['wall_time_s']:.1f} s"
              + (f" -- {entry['error']}" if entry["error"] else ""), flush=True)
        rows.append({"notebook": nb.stem, "status": entry["status"], "wall time (s)": entry["wall_time_s"],
                     "runs by other code": "n/a" if other is None else other,
                     "executed notebook": entry["executed_notebook"]})

    import pandas as pd

    print()
    print(to_markdown(pd.DataFrame(rows), float_format="{:.1f}"))
    print(f"manifest: {out / 'manifest.json'}")
    if any(isinstance(r["runs by other code"], int) and r["runs by other code"] for r in rows):
        print("reproduce: some figures come from runs computed by other code (the run store's code "
              "fingerprints differ from this code's); make reproduce RECOMPUTE=stale computes them again")
    ledger_ok = write_ledger(out)
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"reproduce: {len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0 if ledger_ok else 1


if __name__ == "__main__":
    sys.exit(main())
