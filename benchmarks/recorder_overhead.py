"""Measurement overhead of the trajectory recorder: time of a tracked run over
an untracked one (same loop, same measurement schedule, no metrics) for
SimpleCNN on a CIFAR-10 subset.

    python benchmarks/recorder_overhead.py [--n-train 10000] [--max-iters 300]
        [--lr 0.01] [--batch 128] [--threads 2] [--metrics train,val,...]
    python benchmarks/recorder_overhead.py --notebook break_even [--max-iters 300] [--before]

Default: the ``cpu`` profile's shared measurement settings
(``profiles.get_profile('cpu')``: K from L=25 mini-batches of M=128,
lambda_H^1 by Lanczos on 500 examples warm-started from the previous vectors,
every 25 iterations for the first 200, then every epoch). ``--notebook
break_even``: notebook 1's trajectory run at the profile (its first learning
rate and seed, its metrics and schedule: every 50 iterations until 300, K, K
with M=1, lambda_H^1 on 250 examples at tol 1e-2, Eq. (1), the H spectrum).
``--before``: the tracked run once more with the Hessian eigen-solver of
commit ca77c71 (before warm starts paid), for a before/after row.

Prints one table: wall time of the untracked run (before and after the
tracked one: the load of a shared machine drifts), the tracked run(s), their
ratio, seconds per measurement, and the time spent in every metric group.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from breakeven_utils.core.profiles import get_profile
from breakeven_utils.recorder import DEFAULT_METRICS, config_from_profile, load_run_data, train


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--notebook", choices=["break_even"], default=None,
                    help="a notebook's own run configuration instead of the shared settings")
    ap.add_argument("--model", default="simple_cnn")
    ap.add_argument("--n-train", type=int, default=None, help="default: the profile's")
    ap.add_argument("--max-iters", type=int, default=300)
    ap.add_argument("--lr", type=float, default=None, help="default 0.01 (notebook: its first)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    ap.add_argument("--before", action="store_true",
                    help="also time the tracked run with the eigen-solver of ca77c71")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.notebook == "break_even":
        from breakeven_utils.papers.break_even import runs as be_runs
        from breakeven_utils.papers.break_even import settings as be_settings
        s = be_settings.settings(args.profile)
        tracked = be_runs.trajectory_configs(s)[0].replace(max_iters=args.max_iters, max_epochs=None)
        if args.n_train is not None:
            tracked = tracked.replace(n_train=args.n_train)
        if args.lr is not None:
            tracked = tracked.replace(lr=args.lr)
    else:
        prof = get_profile(args.profile)
        kw = dict(model=args.model, lr=0.01 if args.lr is None else args.lr, batch_size=args.batch,
                  max_iters=args.max_iters, max_epochs=None)
        if args.n_train is not None:
            kw["n_train"] = args.n_train
        tracked = config_from_profile(prof, metrics=tuple(args.metrics.split(",")), **kw)
    untracked = tracked.replace(metrics=())
    data = load_run_data(tracked)

    def timed(config):
        t = time.perf_counter()
        out = train(config, data=data, progress=False)
        return out, time.perf_counter() - t

    # one-time costs (first calls of torch.func transforms, allocator warm-up)
    # are paid by a short tracked run outside the timings, so that the order of
    # the timed runs does not favour the later ones
    timed(tracked.replace(max_iters=1))
    # untracked before and after the tracked run: on a shared machine the load drifts
    plain, t_plain_1 = timed(untracked)
    full, t_full = timed(tracked)
    runs = [("tracked run", full, t_full)]
    if args.before:
        from breakeven_utils.recorder import metrics
        sys.path.insert(0, str(Path(__file__).parent))
        from warm_starts import BEFORE, old_curvature
        now = metrics.hessian_eigs
        metrics.hessian_eigs = old_curvature().hessian_eigs   # the name the lambda_H metric calls
        try:
            runs.append((f"tracked run, solver of {BEFORE}", *timed(tracked)))
        finally:
            metrics.hessian_eigs = now
    _, t_plain_2 = timed(untracked)
    t_plain = min(t_plain_1, t_plain_2)
    n_meas = full.info["n_measurements"]
    assert plain.iterations == full.iterations, "both runs must take the same steps"

    print(f"{data.label}: {tracked.model}, n_train={len(data.train)}, n_measure={len(data.measure)}, "
          f"batch {tracked.batch_size}, lr {tracked.lr}, {full.iterations} iterations, "
          f"{args.threads} threads, profile '{args.profile}'"
          + (f", notebook {args.notebook}" if args.notebook else ""))
    print(f"metrics: {', '.join(tracked.metrics)}")
    print(f"measurements: {n_meas} (every {tracked.measure_every} it. until "
          f"{tracked.measure_dense_until}, then every epoch of {full.info['batches_per_epoch']} it.); "
          f"K: L={tracked.K_L}, M={tracked.K_M}; lambda_H: k={tracked.hessian_k}, "
          f"n={tracked.hessian_n}, tol={tracked.hessian_tol}")
    names = sorted({n for _, out, _ in runs for n in out.info["metric_seconds"]},
                   key=lambda n: -full.info["metric_seconds"].get(n, 0.0))
    w = 34
    print(f"| {'seconds':<{w}} | " + " | ".join(f"{lab:>{len(lab)}}" for lab, _, _ in runs) + " |")
    print("|" + "-" * (w + 2) + "|" + "|".join("-" * (len(lab) + 2) for lab, _, _ in runs) + "|")

    def line(what, values):
        print(f"| {what:<{w}} | " + " | ".join(f"{v:>{len(lab)}}" for v, (lab, _, _) in zip(values, runs))
              + " |")
    line("untracked run, before / after", [f"{t_plain_1:.1f} / {t_plain_2:.1f}"] * len(runs))
    line("tracked run", [f"{t:.1f}" for _, _, t in runs])
    line("overhead (tracked / min untracked)", [f"{t / t_plain:.2f}x" for _, _, t in runs])
    line("per measurement", [f"{out.measure_seconds / max(n_meas, 1):.2f}" for _, out, _ in runs])
    for name in names:
        line(f"  {name} (total)", [f"{out.info['metric_seconds'].get(name, 0.0):.1f}" for _, out, _ in runs])
    line("  training steps + step metrics", [f"{t - out.measure_seconds:.1f}" for _, out, t in runs])


if __name__ == "__main__":
    main()
