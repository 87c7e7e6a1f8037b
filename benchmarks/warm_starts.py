"""Warm starts of lambda_H^1 along a real training trajectory: Hessian-vector
products per measurement point, cold against warm, for this project's solver
and for the one at commit ca77c71 (before warm starts paid), in one run
(issue 12).

    python benchmarks/warm_starts.py            # SimpleCNN, 4,000 CIFAR-10 images, 8 points 50 steps apart
    python benchmarks/warm_starts.py --quick    # 2,000 images, 5 points 25 steps apart
    python benchmarks/warm_starts.py --k 5 --tols 1e-3   # the paper profile's top-5

The trajectory is notebook 1's at the ``cpu`` profile (``profiles.py``,
section ``break_even``): SimpleCNN, plain SGD at its first learning rate,
batch 128, lambda_H on the first ``hessian_n`` examples of the measurement set
at ``hessian_tol`` (and at every tolerance in ``--tols``). At every point the
eigenvalues are solved
  * cold: from a seeded random vector, as a first measurement does;
  * warm: from the previous point's warm eigenvectors, as the recorder does
    (``train._hessian`` keeps them in the run state);
each with the current solver and the one of ca77c71 (read with ``git show``),
and once at a tight tolerance (1e-4; eigenvalues then ~1e-8 accurate) as the
reference for the errors. Times are wall-clock seconds including the graph
build of the cached HVP; they are noisy when other processes share the cores.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from breakeven_utils import curvature as C
from breakeven_utils.core.data import load_data
from breakeven_utils.core.models import build_model
from breakeven_utils.core.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "ca77c71"


def old_curvature(commit: str = BEFORE):
    """breakeven_utils/curvature.py as of ``commit``, imported as a module of the current
    ``core`` package (its one relative import, ``.params``, resolves to today's
    ``core/params.py``, unchanged since)."""
    src = subprocess.run(["git", "show", f"{commit}:breakeven_utils/curvature.py"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"curvature_{commit}.py"
    path.write_text(src)
    name = f"breakeven_utils.core._curvature_{commit}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def solve(mod, model, lf, xy, k, tol, v0=None):
    t0 = time.perf_counter()
    # batch_size=512 as the recorder passes (train._hessian): one batch, the cached HVP
    h = mod.hessian_eigs(model, lf, xy, k=k, tol=tol, v0=v0, seed=0, batch_size=512)
    return h, time.perf_counter() - t0


def rel_err(h, ref, k):
    return float(((h.values[:k] - ref.values[:k]).abs() / ref.values[:k].abs()).max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--points", type=int, default=8, help="measurement points")
    ap.add_argument("--every", type=int, default=50, help="SGD steps between points (notebook 1: 50)")
    ap.add_argument("--k", type=int, default=1, help="eigenpairs (notebook 1: 1)")
    ap.add_argument("--tols", default="", help="extra tolerances, comma-separated (the profile's always)")
    ap.add_argument("--ref-tol", type=float, default=1e-4)
    ap.add_argument("--hessian-n", type=int, default=None, help="default: the profile's hessian_n")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-before", action="store_true", help=f"skip the solver of {BEFORE}")
    ap.add_argument("--quick", action="store_true", help="2,000 images, 5 points 25 steps apart")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.points, args.every = 2000, 5, 25
    torch.set_num_threads(args.threads)
    s = get_profile("cpu", section="break_even")
    tols = [float(s["hessian_tol"])] + [float(t) for t in args.tols.split(",") if t]
    lr, batch = float(s["lrs"][0]), int(s["batch_size"])
    n_h = int(s["hessian_n"] if args.hessian_n is None else args.hessian_n)
    wall0 = time.perf_counter()

    data = load_data(s["dataset"], n_train=args.n_train, n_val=500, n_test=500,
                     n_measure=max(n_h, 1), seed=0, normalize=s["normalize"])
    xy = (data.measure.x[:n_h], data.measure.y[:n_h])
    model = build_model(s["model"], seed=0, **s["model_kwargs"])
    lf = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    solvers = {"now": C} if args.no_before else {"now": C, BEFORE: old_curvature()}
    warm = {(name, tol): None for name in solvers for tol in tols}
    rows = []   # (t, lambda_ref, {(solver, tol): (cold h, t cold, warm h, t warm)})
    for i in range(args.points):
        if i:
            for _ in range(args.every):
                idx = torch.randint(0, len(data.train), (batch,), generator=gen)
                opt.zero_grad()
                lf(model(data.train.x[idx]), data.train.y[idx]).backward()
                opt.step()
            model.zero_grad(set_to_none=True)
        # the reference also gives lambda_{k+1} (the gap) and the top vectors' turn
        ref, _ = solve(C, model, lf, xy, args.k + 1, args.ref_tol)
        out = {}
        for name, mod in solvers.items():
            for tol in tols:
                cold, t_cold = solve(mod, model, lf, xy, args.k, tol)
                prev = warm[name, tol]
                if prev is None:      # the first point of a trajectory is always cold
                    w, t_w = cold, t_cold
                else:
                    w, t_w = solve(mod, model, lf, xy, args.k, tol, v0=prev)
                warm[name, tol] = w
                out[name, tol] = (cold, t_cold, w, t_w)
        t = i * args.every
        rows.append((t, ref, out))
        # progress with every number of the point (a partial run still reports)
        prev_top = rows[-2][1].vectors[:args.k] if i else None
        turn = f"{float(torch.linalg.svdvals(prev_top @ ref.vectors[:args.k].T).min()):.3f}" if i else "-"
        print(f"[{time.perf_counter() - wall0:5.0f} s] t={t}: lambda_ref={ref.lambda_1:.4g} "
              f"({ref.n_hvp} HVPs), lambda_{args.k + 1}/lambda_{args.k} "
              f"{float(ref.values[args.k] / ref.values[args.k - 1]):.2f}, cos(prev, now) {turn}; "
              + "; ".join(f"{n}@{tol:g} HVPs cold {o[0].n_hvp} warm {o[2].n_hvp}, s {o[1]:.1f}/{o[3]:.1f}, "
                          f"err {rel_err(o[0], ref, args.k):.0e}/{rel_err(o[2], ref, args.k):.0e}"
                          for (n, tol), o in out.items()),
              file=sys.stderr, flush=True)

    names = list(solvers)
    heads = ["t", "tol", "lambda_ref", f"lambda_{args.k + 1}/lambda_{args.k}", "cos(prev, now)"]
    for name in names:
        heads += [f"{name}: HVPs cold / warm", "ratio", "s cold / warm", "rel.err cold / warm"]
    table = []

    def cells(c, tc, w, tw, err_c, err_w, warm_here=True):
        if not warm_here:
            return [f"{c} / -", "", f"{tc:.1f} / -", f"{err_c:.0e} / -"]
        return [f"{c:.3g} / {w:.3g}", f"{c / w:.2f}x", f"{tc:.1f} / {tw:.1f}", f"{err_c:.0e} / {err_w:.0e}"]

    def turn(t):
        """|cos| of the angle between the top reference vectors of consecutive
        points (the smallest principal cosine between the top-k spaces)."""
        i = t // args.every
        if i == 0:
            return ""
        a, b = rows[i - 1][1].vectors[:args.k], rows[i][1].vectors[:args.k]
        return f"{float(torch.linalg.svdvals(a @ b.T).min()):.2f}"

    for tol in tols:
        for t, ref, out in rows:
            r = [str(t), f"{tol:g}", " ".join(f"{v:.4g}" for v in ref.values[:args.k].tolist()),
                 f"{float(ref.values[args.k] / ref.values[args.k - 1]):.2f}", turn(t)]
            for name in names:
                c, tc, w, tw = out[name, tol]
                r += cells(c.n_hvp, tc, w.n_hvp, tw, rel_err(c, ref, args.k), rel_err(w, ref, args.k), t > 0)
            table.append(r)
        # summary over the points where a warm start exists (all but the first)
        r = ["mean t>0", f"{tol:g}", "", "", ""]
        for name in names:
            cs = [(o[name, tol], ref) for _, ref, o in rows[1:]]

            def mean(f, cs=cs):
                return sum(f(o, ref) for o, ref in cs) / len(cs)
            r += cells(mean(lambda o, ref: o[0].n_hvp), mean(lambda o, ref: o[1]),
                       mean(lambda o, ref: o[2].n_hvp), mean(lambda o, ref: o[3]),
                       max(rel_err(o[0], ref, args.k) for o, ref in cs),
                       max(rel_err(o[2], ref, args.k) for o, ref in cs))
            r[-1] = "max " + r[-1]
        table.append(r)

    widths = [max(len(x[j]) for x in table + [heads]) for j in range(len(heads))]
    print(f"\nlambda_H^{'1' if args.k == 1 else f'1..{args.k}'} along a SimpleCNN trajectory: "
          f"{len(data.train)} CIFAR-10 training images ({data.label}), SGD lr {lr:g}, batch {batch}, "
          f"a point every {args.every} steps; Hessian on {n_h} images, k={args.k}; {args.threads} threads, "
          f"torch {torch.__version__}{' [--quick]' if args.quick else ''}")
    print(f"cold: from a random vector; warm: from the previous point's warm eigenvectors; "
          f"ratio = cold/warm HVPs; rel.err = max |lambda_i - ref_i| / |ref_i| against a cold solve "
          f"at tol {args.ref_tol:g}; '{BEFORE}' = the solver before this change")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for x in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(x, widths)) + " |")
    print(f"\ntotal wall time {time.perf_counter() - wall0:.0f} s")


if __name__ == "__main__":
    main()
