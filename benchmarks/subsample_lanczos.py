"""lambda_H^1 along notebook 1's cpu trajectory: what a subsample of the measurement set buys
(issue 23, item 3). Products per point, in HVP-equivalents of the full set, for

  * warm: Lanczos on all ``hessian_n`` examples from the previous point's eigenvector, stopped
    by ARPACK's residual rule at the profile's tolerance (what the recorder does);
  * subsample-then-refine, for each subsample size m and subsample tolerance: Lanczos on the
    first m examples (warm from that size's previous subsample vector), then Lanczos on all of
    them started from its Ritz vector to the same residual rule (exact in the limit: the
    refinement alone decides the accuracy); cost m / n per subsample product plus the full ones;
  * the convergence of the warm solve product by product: the eigenvalue's error against an
    ARPACK tol-1e-6 reference, and the estimate ||r||^2 / ((theta_1 - theta_2) theta_1) a
    value-based stopping rule would use.

    python benchmarks/subsample_lanczos.py            # 8 points 12 steps apart (notebook 1's early schedule)
    python benchmarks/subsample_lanczos.py --quick    # 4 points

Products are counted, not timed: the table does not depend on what else runs on the machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from breakeven_utils.core.data import load_data  # noqa: E402
from breakeven_utils.core.models import build_model  # noqa: E402
from breakeven_utils.core.profiles import get_profile  # noqa: E402
from breakeven_utils.curvature.eigs import start_vector, top_eigenpairs  # noqa: E402
from breakeven_utils.curvature.lanczos import Lanczos  # noqa: E402
from breakeven_utils.curvature.operators import HessianOperator  # noqa: E402

SUBSAMPLES = (32, 64, 125)
SUB_TOLS = (0.01, 0.05)


def value_convergence(op, v0, lam: float, steps: int = 12) -> list[tuple[int, float, float]]:
    """(products, relative error of theta_1, its estimate) of a warm Lanczos run, product by product."""
    lz = Lanczos(op.matvec, start_vector(op, v0, 0), steps + 1)
    out = []
    for m in range(1, steps + 1):
        b = lz.step()
        th, S = torch.linalg.eigh(lz.tridiagonal())
        t1 = float(th[-1])
        r = abs(b * float(S[-1, -1]))
        est = r * r / (t1 - float(th[-2])) / t1 if m > 1 else float("nan")
        out.append((m, (lam - t1) / lam, est))
        if r / abs(t1) < 1e-4:
            break
        lz.extend(b)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="4 points")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.quick:
        args.points = 4
    torch.set_num_threads(args.threads)
    s = get_profile("cpu", section="break_even")
    n, tol, every = int(s["hessian_n"]), float(s["hessian_tol"]), int(s["measure_every"])
    data = load_data("cifar10", n_train=s["n_train"], n_val=100, n_test=100, n_measure=s["n_measure"], seed=0)
    xy = (data.measure.x[:n], data.measure.y[:n])
    model = build_model("simple_cnn", seed=0, init="keras")
    lf = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=float(s["lrs"][0]))
    gen = torch.Generator().manual_seed(0)
    prev: dict = {}
    rows, t0 = [], time.perf_counter()
    for point in range(args.points):
        if point:
            for _ in range(every):
                idx = torch.randint(0, len(data.train), (int(s["batch_size"]),), generator=gen)
                opt.zero_grad()
                lf(model(data.train.x[idx]), data.train.y[idx]).backward()
                opt.step()
            model.zero_grad(set_to_none=True)
        full = HessianOperator(model, lf, xy, batch_size=512)
        ref = top_eigenpairs(full, 2, "LA", tol=1e-6, solver="arpack")
        lam = float(ref.values[0])
        conv = value_convergence(HessianOperator(model, lf, xy, batch_size=512), prev.get("warm"), lam)
        warm = top_eigenpairs(full, 1, "LA", tol=tol, v0=prev.get("warm"))
        prev["warm"] = warm.vectors
        row = {"t": point * every, "lambda": lam, "gap": float(ref.values[1]) / lam, "warm": warm.n_hvp,
               "warm_err": abs(float(warm.values[0]) - lam) / lam,
               "first_1e-3": next((m for m, e, _ in conv if abs(e) <= 1e-3), None),
               "est_1e-3": next((m for m, _, e in conv if e <= 1e-3), None)}
        for m in SUBSAMPLES:
            sub = HessianOperator(model, lf, (xy[0][:m], xy[1][:m]), batch_size=512)
            for stol in SUB_TOLS:
                u = top_eigenpairs(sub, 1, "LA", tol=stol, v0=prev.get((m, stol)))
                prev[(m, stol)] = u.vectors
                fresh = HessianOperator(model, lf, xy, batch_size=512)  # counts its own products
                f = top_eigenpairs(fresh, 1, "LA", tol=tol, v0=u.vectors)
                row[(m, stol)] = u.n_hvp * m / n + f.n_hvp
                row[(m, stol, "cos")] = abs(float(u.vectors[0].double() @ ref.vectors[0].double()))
        rows.append(row)
        print(f"[{time.perf_counter() - t0:4.0f} s] t={row['t']}: lambda_H^1 {lam:.3g}, "
              f"warm {warm.n_hvp} HVPs, "
              + ", ".join(f"m={m}@{st:g}: {row[(m, st)]:.1f}" for m in SUBSAMPLES for st in SUB_TOLS),
              file=sys.stderr, flush=True)

    heads = ["t", "lambda_H^1", "lambda_2/lambda_1", "warm HVPs (err)", "warm: products to err<=1e-3 (est.)"]
    heads += [f"m={m}, tol {st:g}: HVP-eq. (cos)" for m in SUBSAMPLES for st in SUB_TOLS]
    print(f"\nlambda_H^1 along notebook 1's cpu trajectory: SimpleCNN, {len(data.train)} CIFAR-10 images "
          f"({data.label}), SGD lr {s['lrs'][0]:g}, batch {s['batch_size']}, a point every {every} steps; "
          f"H on n = {n} images, residual tolerance {tol:g}; HVP-equivalents = full-set products + "
          f"(m / n) x subsample products; cos = |<subsample vector, reference vector>|")
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        cells = [str(r["t"]), f"{r['lambda']:.4g}", f"{r['gap']:.2f}", f"{r['warm']} ({r['warm_err']:.0e})",
                 f"{r['first_1e-3']} ({r['est_1e-3']})"]
        cells += [f"{r[(m, st)]:.1f} ({r[(m, st, 'cos')]:.3f})" for m in SUBSAMPLES for st in SUB_TOLS]
        print("| " + " | ".join(cells) + " |")
    keys = ["warm"] + [(m, st) for m in SUBSAMPLES for st in SUB_TOLS]
    mean = {k: sum(r[k] for r in rows[1:]) / max(1, len(rows) - 1) for k in keys}
    print(f"\nmean over the warm points (t > 0): warm {mean['warm']:.1f} HVPs; "
          + ", ".join(f"m={m}@{st:g} {mean[(m, st)]:.1f}" for m in SUBSAMPLES for st in SUB_TOLS))
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
