#!/usr/bin/env python
"""Preflight of a profile's runs, first stage (issue 22; ``breakeven_utils.store.preflight``):
every run the notebooks would launch is built, its model constructed for its data and one forward
and backward pass of its first batch taken, on the CPU, before any GPU time is spent.

    python scripts/preflight.py --profile paper [--notebooks 01_break_even ...] [--out FILE]

Prints the report (totals, failures, data stand-ins, one row per signature) and writes it to
``--out`` (default: ``figures/preflight_<profile>.md``); exits 1 if any run failed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from breakeven_utils.core.io import atomic_write_text  # noqa: E402
from breakeven_utils.papers.registry import notebook_runs  # noqa: E402
from breakeven_utils.store.preflight import preflight, report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--notebooks", nargs="+", metavar="NAME")
    ap.add_argument("--out", default=None, help="report file (default: figures/preflight_<profile>.md)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        runs = notebook_runs(args.profile, args.notebooks)
    except ValueError as e:
        raise SystemExit(f"preflight: {e}") from None
    df = preflight(runs)
    text = report(df, args.profile, time.perf_counter() - t0)
    out = Path(args.out) if args.out else ROOT / "figures" / f"preflight_{args.profile}.md"
    atomic_write_text(out, text)
    print(text)
    print(f"preflight report: {out}")
    return 0 if bool(df["ok"].all()) else 1


if __name__ == "__main__":
    sys.exit(main())
