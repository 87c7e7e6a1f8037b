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

Models (the cpu profile's): the MLP 784-300-100-10 on 4,000 Fashion-MNIST-shaped
inputs, and the narrow SimpleCNN with BatchNorm (train-mode batch statistics in
chunks of 1,000) on 2,000 CIFAR-10-shaped inputs; random inputs (the cost does not
depend on the pixel values).
"""
import argparse
import functools
import math
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
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
