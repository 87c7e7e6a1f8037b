"""Measurement overhead of the trajectory recorder: time of a tracked run over
an untracked one (same loop, same measurement schedule, no metrics) for
SimpleCNN on a CIFAR-10 subset at the ``cpu`` profile's measurement settings
(``profiles.get_profile('cpu')``: K from L=25 mini-batches of M=128,
lambda_H^1 by Lanczos on 500 examples warm-started from the previous vectors,
every 25 iterations for the first 200, then every epoch).

    python benchmarks/recorder_overhead.py [--n-train 10000] [--max-iters 300]
        [--lr 0.01] [--batch 128] [--threads 2] [--metrics train,val,...]

Prints one table: wall time of the untracked run (before and after the
tracked one: the load of a shared machine drifts), the tracked run, their
ratio, seconds per measurement, and the time spent in every metric group.
"""
import argparse
import time

import torch

from breakeven_utils.profiles import get_profile
from breakeven_utils.train import DEFAULT_METRICS, config_from_profile, load_run_data, train


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--model", default="simple_cnn")
    ap.add_argument("--n-train", type=int, default=None, help="default: the profile's")
    ap.add_argument("--max-iters", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    prof = get_profile(args.profile)
    kw = dict(model=args.model, lr=args.lr, batch_size=args.batch, max_iters=args.max_iters,
              max_epochs=None)
    if args.n_train is not None:
        kw["n_train"] = args.n_train
    tracked = config_from_profile(prof, metrics=tuple(args.metrics.split(",")), **kw)
    untracked = tracked.replace(metrics=())
    data = load_run_data(tracked)

    def timed(config):
        t = time.perf_counter()
        out = train(config, data=data, progress=False)
        return out, time.perf_counter() - t

    # untracked before and after the tracked run: on a shared machine the load drifts
    plain, t_plain_1 = timed(untracked)
    full, t_full = timed(tracked)
    _, t_plain_2 = timed(untracked)
    t_plain = min(t_plain_1, t_plain_2)
    n_meas = full.info["n_measurements"]
    assert plain.iterations == full.iterations, "both runs must take the same steps"

    print(f"{data.label}: {args.model}, n_train={len(data.train)}, n_measure={len(data.measure)}, "
          f"batch {args.batch}, lr {args.lr}, {full.iterations} iterations, "
          f"{args.threads} threads, profile '{args.profile}'")
    print(f"measurements: {n_meas} (every {tracked.measure_every} it. until "
          f"{tracked.measure_dense_until}, then every epoch of {full.info['batches_per_epoch']} it.); "
          f"K: L={tracked.K_L}, M={tracked.K_M}; lambda_H: k={tracked.hessian_k}, "
          f"n={tracked.hessian_n}, tol={tracked.hessian_tol}")
    print(f"{'':<34}{'seconds':>10}")
    print(f"{'untracked run, before / after':<34}{t_plain_1:>10.1f}{t_plain_2:>10.1f}")
    print(f"{'tracked run':<34}{t_full:>10.1f}")
    print(f"{'overhead (tracked / min untracked)':<34}{t_full / t_plain:>10.1f}x")
    print(f"{'per measurement':<34}{full.measure_seconds / max(n_meas, 1):>10.2f}")
    for name, sec in sorted(full.info["metric_seconds"].items(), key=lambda kv: -kv[1]):
        print(f"{'  ' + name + ' (total)':<34}{sec:>10.1f}")
    step_only = t_full - full.measure_seconds
    print(f"{'  training steps + step metrics':<34}{step_only:>10.1f}")


if __name__ == "__main__":
    main()
