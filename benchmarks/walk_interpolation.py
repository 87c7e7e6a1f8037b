"""Cost of one step's interpolation (A Walk with SGD, Sec. 3): the training-set loss at the
11 points alpha = 0, 0.1, ..., 1 between two iterates.

Rows: ``walk.interpolation_losses`` with ``method='vmap'`` (all alphas of a chunk in
one batched ``torch.func.functional_call`` over stacked parameters) and
``method='loop'`` (one functional pass per alpha on the same chunk), each with and
without ``share_first`` (the first layer's output is affine in alpha: computed at
the two ends once per chunk and mixed), and the
plain loop (write each interpolated vector into the model with
``vector_to_parameters``, then forward passes over the data). Anchor: the floor
of 10 plain forward passes over the same data at fixed parameters (the paper's
10 points; no interpolation can be cheaper than evaluating them). Ratio < 1
beats the floor, e.g. by sharing work across alphas.

    python benchmarks/walk_interpolation.py [--threads 2] [--repeats 3]
    python benchmarks/walk_interpolation.py --memory

``--memory``: peak resident memory above the process's baseline of one step's interpolation
of the paper profile's VGG-11 on one 1,000-image chunk of CIFAR-10-shaped inputs (the walk's
chunk), with the loop with and without ``share_first``, each in a fresh process
(``ru_maxrss`` only grows). The loop with ``share_first`` mixes one alpha's first-layer
output at a time; it formed all 11 at once until the paper preflight of the VGG-11 walk
measured 13.5 GB of RSS (figures/preflight_paper_04_and_05.md). vmap is left out: it maps
over all 11 by design and ``method='auto'`` does not use it.

Models (the cpu profile's): the MLP 784-300-100-10 on 4,000 Fashion-MNIST-shaped
inputs, and the narrow SimpleCNN with BatchNorm (train-mode batch statistics in
chunks of 1,000) on 2,000 CIFAR-10-shaped inputs; random inputs (the cost does not
depend on the pixel values).
"""
import argparse
import functools
import json
import math
import resource
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from breakeven_utils.core.models import build_model
from breakeven_utils.papers.walk import measures as walk


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def plain_loop(model, loss_fn, x, y, ta, tb, alphas, chunk):
    bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    for m in bn:
        m.train()
    out = []
    with torch.no_grad():
        for a in alphas:
            vector_to_parameters((1 - a) * ta + a * tb, model.parameters())
            out.append(sum(float(loss_fn(model(xs), ys)) * len(ys)
                           for xs, ys in zip(x.split(chunk), y.split(chunk))) / len(y))
    model.load_state_dict(saved)
    return out


def floor(model, loss_fn, x, y, chunk, n=10):
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            for xs, ys in zip(x.split(chunk), y.split(chunk)):
                float(loss_fn(model(xs), ys))


def peak_memory(share: bool, threads: int) -> tuple[float, float, list]:
    """(peak RSS above the baseline in MB, seconds, losses) of one VGG-11 interpolation on a
    1,000-image chunk, in this process (run it in a fresh one)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("vgg11", seed=0)
    x, y = torch.randn(1000, 3, 32, 32), torch.randint(0, 10, (1000,))
    ta = parameters_to_vector(model.parameters()).detach().clone()
    tb = ta + 1e-3 * torch.randn_like(ta)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    out = walk.interpolation_losses(model, nn.CrossEntropyLoss(), (x, y), ta, tb, chunk_size=1000,
                                    method="loop", share_first=share)
    seconds = time.perf_counter() - t
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, seconds, out.tolist()


def memory_table(threads: int):
    print(f"VGG-11, one 1,000 x 3x32x32 chunk, 11 points, {threads} threads; a fresh process per row")
    print(f"{'method':<34}{'peak RSS above baseline, MB':>29}{'seconds':>9}")
    losses = {}
    for share in (True, False):
        out = subprocess.run([sys.executable, __file__, "--memory-row", str(int(share)),
                              "--threads", str(threads)], check=True, capture_output=True, text=True)
        mb, seconds, losses[share] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{'loop' + (' + shared 1st layer' if share else ''):<34}{mb:>29,.0f}{seconds:>9.1f}")
    same = "identical" if losses[True] == losses[False] else (
        f"differ by up to {max(abs(a - b) for a, b in zip(losses[True], losses[False])):.1e}")
    print(f"losses with and without the shared first layer: {same}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="the VGG-11 peak-memory table instead")
    ap.add_argument("--memory-row", choices=("0", "1"), help=argparse.SUPPRESS)  # one row, in its own process
    args = ap.parse_args()
    if args.memory_row is not None:
        print(json.dumps(peak_memory(args.memory_row == "1", args.threads)))
        return
    if args.memory:
        memory_table(args.threads)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = [
        ("MLP 784-300-100-10, 4,000 x 784", build_model("mlp", in_channels=1, image_size=28, seed=0),
         torch.rand(4000, 1, 28, 28), 1000),
        ("SimpleCNN-BN (16,16,32,32), 2,000 x 3x32x32",
         build_model("simple_cnn_bn", width=[16, 16, 32, 32], hidden=64, seed=0),
         torch.randn(2000, 3, 32, 32), 1000),
    ]
    loss_fn = nn.CrossEntropyLoss()
    print(f"{args.threads} threads, best of {args.repeats}; ratio = time / (10 plain forward passes)")
    print(f"{'model':<46}{'method':<40}{'seconds':>9}{'ratio':>8}")
    for name, model, x, chunk in cases:
        y = torch.randint(0, 10, (len(x),))
        ta = parameters_to_vector(model.parameters()).detach().clone()
        tb = ta + 0.01 * torch.randn_like(ta)
        print(f"  {name} ...", file=sys.stderr, flush=True)
        fns = [("floor: 10 forward passes (anchor)", functools.partial(floor, model, loss_fn, x, y, chunk)),
               ("plain loop, 11 points", functools.partial(
                   plain_loop, model, loss_fn, x, y, ta, tb, walk.ALPHAS, chunk))]
        for method in ("loop", "vmap"):
            for share in (False, True):
                fns.append((f"{method}{' + shared 1st layer' if share else ''}, 11 points",
                            functools.partial(walk.interpolation_losses, model, loss_fn, (x, y), ta, tb,
                                              walk.ALPHAS, chunk_size=chunk, method=method,
                                              share_first=share)))
        # round robin: every repeat times each row once, so load drifts on a shared machine hit
        # all rows alike; the best time per row is kept
        best = {label: math.inf for label, _ in fns}
        for _ in range(args.repeats):
            for label, fn in fns:
                best[label] = min(best[label], best_of(fn, 1))
        t_floor = best[fns[0][0]]
        rows = list(best.items())
        for label, t in rows:
            print(f"{name:<46}{label:<40}{t:>9.3f}{t / t_floor:>8.2f}")


if __name__ == "__main__":
    main()
