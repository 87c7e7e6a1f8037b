#!/usr/bin/env python
"""Preflight of a profile's runs (issue 22; ``breakeven_utils.store.preflight``), on the CPU, before
any GPU time is spent:

1. every run the notebooks would launch is built, its model constructed for its data and one
   forward and backward pass of its first batch taken;
2. every signature (model | data | update rule | schedule | metrics; runs that start from another
   run's state apart) is executed at full size for its first few steps (``--steps``, the one
   truncation rule) with every metric measured, in a fresh process each: seconds per step and per
   measurement, peak memory.

    python scripts/preflight.py --profile paper [--notebooks 01_break_even ...] [--stage 1|2|all]

Prints the report and writes it to ``--out`` (default: ``figures/preflight_<profile>.md``); exits 1
if any run or signature failed. The second stage's truncated runs go to a temporary store (or
``--store DIR``, kept).
"""
from __future__ import annotations

import argparse
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
from breakeven_utils.store.preflight import (  # noqa: E402
    PREFLIGHT_STEPS,
    execute,
    execution_report,
    load_results,
    preflight,
    report,
    save_results,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--notebooks", nargs="+", metavar="NAME")
    ap.add_argument("--stage", choices=("1", "2", "all"), default="all")
    ap.add_argument("--steps", type=int, default=PREFLIGHT_STEPS,
                    help=f"steps of each signature's run in the second stage (default {PREFLIGHT_STEPS})")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the second stage's runs")
    ap.add_argument("--store", default=None, help="keep the second stage's runs here (default: a temporary "
                                                  "store, removed at the end)")
    ap.add_argument("--out", default=None, help="report file (default: figures/preflight_<profile>.md)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        raise SystemExit("preflight: --steps and --threads must be positive")
    t0 = time.perf_counter()
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
    if args.stage in ("2", "all"):
        t1 = time.perf_counter()
        store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="preflight_"))
        # the measured memory and timings per signature, for the plan (store.preflight.memory_plan),
        # saved as each is done and merged with earlier preflights of other notebooks; the report
        # is of all of them
        path = Path(args.out).with_suffix(".json") if args.out else \
            ROOT / "figures" / f"preflight_{args.profile}.json"
        try:
            df2 = execute(runs, store, steps=args.steps, threads=args.threads,
                          on_row=lambda row: save_results(row, path, args.profile, args.steps))
        finally:
            if not args.store:
                shutil.rmtree(store, ignore_errors=True)
        ok &= bool(df2["ok"].all())
        print(f"second stage: {len(df2)} signatures in {time.perf_counter() - t1:.0f} s", flush=True)
        merged = pd.DataFrame(load_results(path)["groups"])
        parts.append(execution_report(merged, args.profile, float(merged["wall_s"].sum()), args.steps))
        print(parts[-1], flush=True)
    parts.append(f"Whole preflight: {time.perf_counter() - t0:.0f} s"
                 + (f" (notebooks: {', '.join(args.notebooks)})" if args.notebooks else "") + ".\n")
    out = Path(args.out) if args.out else ROOT / "figures" / f"preflight_{args.profile}.md"
    atomic_write_text(out, "\n".join(parts))
    print(f"preflight report: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
