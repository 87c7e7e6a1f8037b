"""How well ``make plan`` predicts: the cost model's estimate against the measured time of
short real runs (the first iterations of the cpu profile's runs, one per model family).

    python benchmarks/plan_accuracy.py [--iters 200] [--threads 2] [--device auto]

For each chosen run, the run is truncated to ``--iters`` iterations (same data, model,
batch size, measurement schedule and metrics), its cost estimated by
``plan.run_cost`` from this device's calibration, then trained (not stored) and timed.
Prints one table: estimated and measured seconds for training steps and measurements,
and their ratios (estimate / measured). Run under the CPU lock on a shared machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=200, help="iterations per run (default 200)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    from breakeven_utils.core.device import resolve_device
    from breakeven_utils.core.tables import to_markdown
    from breakeven_utils.papers.registry import notebook_runs
    from breakeven_utils.recorder import load_run_data, train
    from breakeven_utils.store import plan

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    runs = notebook_runs(args.profile)
    chosen, seen = [], set()
    for nb, cfgs in runs.items():  # one run per (notebook, model)
        if isinstance(cfgs, str):  # registry.NotBuilt
            continue
        for c in cfgs:
            k = (nb, c.model)
            if k not in seen:
                seen.add(k)
                chosen.append((nb, c.replace(max_iters=args.iters, target_train_acc=None,
                                             acc_thresholds=())))
    with tempfile.TemporaryDirectory() as tmp:
        cal = plan.calibrate([c for _, c in chosen], device, tmp, progress=False)
    rows = []
    for nb, c in chosen:
        est = plan.run_cost(c, cal)
        data = load_run_data(c, device)
        t0 = time.perf_counter()
        out = train(c, data=data, device=device, progress=False)
        wall = time.perf_counter() - t0
        meas = out.measure_seconds
        rows.append({"notebook": nb, "model": c.model, "data": c.dataset, "S": c.batch_size,
                     "metrics": ",".join(c.metrics), "iterations": out.iterations,
                     "measurements": len(out.rows),
                     "est. steps (s)": est["train"], "measured steps (s)": wall - meas,
                     "est. measurements (s)": est["measure"] + est["once"], "measured measurements (s)": meas,
                     "est. total (s)": est["total"], "measured total (s)": wall,
                     "ratio": est["total"] / wall})
        print(f"{nb} {c.model} S={c.batch_size}: estimated {est['total']:.1f} s, measured {wall:.1f} s",
              file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    print(f"plan accuracy on {cal['key']} ({args.iters} iterations per run)\n")
    print(to_markdown(df, float_format="{:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
