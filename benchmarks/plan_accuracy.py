"""How well ``make plan`` predicts (issue 21, item 5: within 1.5x of the measured time).

    python benchmarks/plan_accuracy.py [--profile cpu]          # per notebook (seconds)
    python benchmarks/plan_accuracy.py --runs [--iters 200]      # also short real runs (minutes)

Per notebook: the plan's wall time from an empty run store (``make plan``: the runs on the
notebook's parallel jobs plus its own time beside them) against the notebook's measured
fresh wall time (``fresh_run_wall_time_s`` in ``figures/manifest.json``, written by
``make reproduce`` when an execution computed every run), and their ratio.

``--runs``: for one run per notebook and model, truncated to ``--iters`` iterations (same
data, model, batch size, measurement schedule and metrics), the cost estimated by
``plan.run_cost`` from this device's calibration against the run trained (not stored) and
timed: estimated and measured seconds for training steps and measurements, and their ratios
(estimate / measured). Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def notebook_table(profile: str, manifest=None) -> str:
    """Markdown: per notebook, the plan's wall time from an empty store against the measured
    fresh wall time of the manifest, and plan / measured."""
    import json
    import math
    import os

    import pandas as pd

    from breakeven_utils.core.tables import to_markdown
    from breakeven_utils.papers.registry import notebook_runs
    from breakeven_utils.reporting.manifest import default_output_root, project_root
    from breakeven_utils.store import plan
    from breakeven_utils.store.executors import default_jobs

    root = project_root() or Path.cwd()
    path = Path(manifest) if manifest else root / default_output_root(profile) / "manifest.json"
    entries = json.loads(path.read_text())["notebooks"] if path.exists() else {}
    runs = notebook_runs(profile)
    jobs = default_jobs(profile)
    # every run costed as if none were stored; the calibration is the one make plan caches
    p = plan.plan(runs, profile, device=os.environ.get("BREAKEVEN_DEVICE") or "auto",
                  store=os.environ.get("BREAKEVEN_RUNS") or root / "runs", progress=False)
    over = plan.notebook_overheads(path, profile, list(runs))
    rows = []
    for nb, g in p["runs"].groupby("notebook", sort=False):
        est = plan.makespan(g["cost_s"], jobs) + over.get(nb, 0.0)
        e = entries.get(nb) or {}
        fresh = e.get("fresh_run_wall_time_s") if e.get("profile") == profile else None
        rows.append({"notebook": nb, "runs": len(g), "plan (s)": est,
                     "measured fresh (s)": fresh if fresh is not None else math.nan,
                     "plan / measured": est / fresh if fresh else math.nan,
                     "measured": (e.get("fresh_run_note") or "")[:90]})
    df = pd.DataFrame(rows)
    return (f"plan against measured fresh wall time, profile {profile!r}, {jobs} job(s); "
            f"calibration {p['calibration']['key']}; manifest {path}\n\n"
            + to_markdown(df, float_format="{:.3g}") + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=200, help="iterations per run (default 200)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--runs", action="store_true", help="also time short real runs (minutes)")
    ap.add_argument("--manifest", default=None, help="manifest with the fresh wall times "
                    "(default: the profile's output root, figures/manifest.json at cpu)")
    args = ap.parse_args(argv)
    print(notebook_table(args.profile, args.manifest))
    if not args.runs:
        return 0

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
