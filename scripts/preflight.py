#!/usr/bin/env python
"""Preflight of a profile's runs (issue 22; ``breakeven_utils.store.preflight``), on the CPU, before
any GPU time is spent:

1. every run the notebooks would launch is built, its model constructed for its data and one
   forward and backward pass of its first batch taken;
2. every signature (model | data | update rule | schedule | metrics; runs that start from another
   run's state apart) is executed at full size for its first few steps (``--steps``, the one
   truncation rule) with every metric measured, in a fresh process each: seconds per step and per
   measurement, peak memory.

    python scripts/preflight.py --profile paper [--notebooks 01_break_even ...] [--stage 1|2|3|all]
        [--store DIR [--resume]] [--budget MINUTES]

At full size on a few CPU cores the second stage of a large profile takes hours (``paper``:
notebook 1's main signature alone 17 minutes on 2 cores). Signatures run cheapest first by the plan's
estimate of each truncated run; ``--budget`` starts none whose estimate (scaled by the median
measured/estimated ratio of the signatures executed so far, ``store.preflight.estimate_scale``)
runs past that many minutes of the whole preflight and reports the rest as not run yet, with their estimates;
``--store DIR --resume`` then goes on where it stopped (a signature already executed into DIR
without error is not run again: its row comes from ``--json``), so the stage can be spread
over several sittings. The third stage executes only the notebooks whose signatures have all
been executed; a data set of theirs not on disk reaches them as random files in torchvision's idx
layout in a temporary data root (``store.preflight.stand_in_root``; MNIST and Fashion-MNIST only).

Prints the report and writes it to ``--out`` (default: ``figures/preflight_<profile>.md``); exits 1
if any run or signature failed. The second stage's truncated runs go to a temporary store (or
``--store DIR``, kept).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from breakeven_utils.core.io import atomic_write_text  # noqa: E402
from breakeven_utils.papers.registry import notebook_runs  # noqa: E402
from breakeven_utils.store.plan import on_disk  # noqa: E402
from breakeven_utils.store.preflight import (  # noqa: E402
    IDX_FOLDERS,
    execute,
    execution_report,
    load_results,
    materialise,
    notebooks_report,
    preflight,
    report,
    save_results,
    stand_in_root,
)
from breakeven_utils.store.truncation import ENV, PREFLIGHT_STEPS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--notebooks", nargs="+", metavar="NAME")
    ap.add_argument("--stage", choices=("1", "2", "3", "all"), default="all",
                    help="1: build every run; 2: execute every signature; 3: the notebooks on the "
                         "truncated runs (needs stage 2's store: --store, or all stages at once)")
    ap.add_argument("--steps", type=int, default=PREFLIGHT_STEPS,
                    help=f"steps of each signature's run in the second stage (default {PREFLIGHT_STEPS})")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the second stage's runs")
    ap.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                    help="start no second-stage signature whose estimate (scaled by the ratio measured "
                         "so far) runs past this many minutes of the preflight")
    ap.add_argument("--resume", action="store_true",
                    help="skip the signatures already executed without error into --store (their rows "
                         "from --json)")
    ap.add_argument("--store", default=None, help="keep the second stage's runs here (default: a temporary "
                                                  "store, removed at the end)")
    ap.add_argument("--out", default=None, help="report file (default: figures/preflight_<profile>.md)")
    ap.add_argument("--json", default=None, help="the second stage's measurements, merged across runs of "
                                                 "this script (default: figures/preflight_<profile>.json, "
                                                 "what make plan reads)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        raise SystemExit("preflight: --steps and --threads must be positive")
    if args.budget is not None and args.budget <= 0:
        raise SystemExit("preflight: --budget must be a positive number of minutes")
    if args.resume and not args.store:
        raise SystemExit("preflight: --resume needs the run store of the earlier invocation (--store DIR)")
    t0 = time.perf_counter()
    args.deadline = None if args.budget is None else t0 + 60 * args.budget
    try:
        runs = notebook_runs(args.profile, args.notebooks)
    except ValueError as e:
        raise SystemExit(f"preflight: {e}") from None
    parts, ok = [], True
    if args.stage in ("1", "all"):
        df = preflight(runs)
        parts.append(report(df, args.profile, time.perf_counter() - t0))
        ok &= bool(df["ok"].all())
        print(parts[-1], flush=True)
    if args.stage == "3" and not args.store:
        raise SystemExit("preflight: --stage 3 needs the second stage's run store (--store DIR)")
    store = Path(args.store).absolute() if args.store else Path(tempfile.mkdtemp(prefix="preflight_"))
    try:
        ok &= stages_2_and_3(args, runs, store, parts)
    finally:
        if not args.store:
            shutil.rmtree(store, ignore_errors=True)
    parts.append(f"Whole preflight: {time.perf_counter() - t0:.0f} s"
                 + (f" (notebooks: {', '.join(args.notebooks)})" if args.notebooks else "") + ".\n")
    out = Path(args.out) if args.out else ROOT / "figures" / f"preflight_{args.profile}.md"
    atomic_write_text(out, "\n".join(parts))
    print(f"preflight report: {out}")
    return 0 if ok else 1


def stages_2_and_3(args, runs: dict, store: Path, parts: list) -> bool:
    """The second stage into ``store`` and the third on it, as ``--stage`` asks; their reports
    appended to ``parts``; whether all went well."""
    ok = True
    if args.stage in ("2", "all"):
        t1 = time.perf_counter()
        # the measured memory and timings per signature, for the plan (store.preflight.memory_plan),
        # saved as each is done and merged with earlier preflights of other notebooks; the report
        # is of all of them
        path = Path(args.json) if args.json else ROOT / "figures" / f"preflight_{args.profile}.json"
        saved = load_results(path) or {}
        earlier = ({g["group"]: g for g in saved.get("groups", [])}
                   if args.resume and saved.get("profile") == args.profile else None)
        df2 = execute(runs, store, steps=args.steps, threads=args.threads, earlier=earlier,
                      deadline=args.deadline,
                      on_row=lambda row: save_results(row, path, args.profile, args.steps))
        ok &= bool(df2["ok"].all())
        print(f"second stage: {len(df2)} signatures in {time.perf_counter() - t1:.0f} s"
              + (f", {int(df2['skipped'].sum())} not run (the budget ran out: --resume goes on)"
                 if df2["skipped"].any() else ""), flush=True)
        merged = pd.DataFrame((load_results(path) or {}).get("groups", []))
        merged["resumed"] = merged["group"].isin(df2.loc[df2["resumed"], "group"]) if len(merged) else []
        merged = pd.concat([merged, df2[df2["skipped"]]], ignore_index=True)
        parts.append(execution_report(merged, args.profile, float(merged["wall_s"].sum()), args.steps))
        print(parts[-1], flush=True)
    if args.stage in ("3", "all"):
        mat = materialise(runs, store, args.steps)
        rows = []
        for nb in runs:
            if isinstance(runs[nb], str):
                continue
            missing = int((mat[mat["notebook"] == nb]["source"] == "missing").sum())
            absent = sorted({c.dataset for c in runs[nb] if not on_disk(c.dataset)})
            # a notebook loads its data sets itself: one not on disk reaches it as random files in
            # torchvision's layout (idx sets only: CIFAR's pickles are checked by md5)
            unfit = [d for d in absent if d not in IDX_FOLDERS]
            if missing or unfit:
                why = (f"{missing} runs of signatures the second stage has not executed" if missing else
                       f"data not on disk: {', '.join(unfit)} (README, Data; BREAKEVEN_DATA)")
                rows.append({"notebook": nb, "status": "skipped", "seconds": 0.0, "error": why,
                             "data": ""})
            elif absent:
                with stand_in_root(absent) as data:
                    rows.append({**run_notebook_truncated(nb, args, store, data),
                                 "data": f"random stand-in (not on disk): {', '.join(absent)}"})
            else:
                rows.append({**run_notebook_truncated(nb, args, store), "data": "on disk"})
        nbs = pd.DataFrame(rows)
        ok &= bool((nbs["status"] == "ok").all()) and not bool((mat["source"] == "missing").any())
        parts.append(notebooks_report(mat, nbs, args.profile, args.steps))
        print(parts[-1], flush=True)
    return ok


def run_notebook_truncated(name: str, args, store: Path, data: Path | None = None) -> dict:
    """Execute notebook ``name`` at ``args.profile`` through papermill on the truncated runs in
    ``store`` (``$BREAKEVEN_PREFLIGHT_STEPS`` on, the CPU), into a temporary folder; ``data``: the
    data root it reads (a stand-in root), else the usual one."""
    import papermill as pm

    env = {ENV: str(args.steps), "BREAKEVEN_DEVICE": "cpu", "BREAKEVEN_PROGRESS": "text"}
    if data is not None:
        env["BREAKEVEN_DATA"] = str(data)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="preflight_nb_") as out:
        try:
            pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(Path(out) / f"{name}.ipynb"),
                                parameters={"profile": args.profile, "output_root": out,
                                            "run_store": str(store), "jobs": 1},
                                kernel_name="python3", cwd=str(ROOT / "notebooks"), progress_bar=False)
            status, error = "ok", ""
        except Exception as e:  # noqa: BLE001 -- reported; the next notebook goes on
            status = "failed"
            error = (f"{e.ename}: {e.evalue} (cell {e.exec_count})" if hasattr(e, "ename")
                     else f"{type(e).__name__}: {e}")[:300]
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    print(f"preflight: notebook {name} at {args.profile} on truncated runs: {status} "
          f"in {time.perf_counter() - t0:.0f} s {error}", flush=True)
    return {"notebook": name, "status": status, "error": error, "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    sys.exit(main())
