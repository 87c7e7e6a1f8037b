"""Benchmark the curvature and gradient-noise estimators against pyhessian and
plain loops, on one model and data set, in one run (issue 3).

    python benchmarks/estimators.py            # SimpleCNN, 500 CIFAR-10 images, 2 threads
    python benchmarks/estimators.py --n 2500   # the papers' 5% (meant for a GPU)
    python benchmarks/estimators.py --quick    # a fast smoke run (small n, few probes)

Prints one table. Times are wall-clock seconds on this machine; they are noisy
when other processes share the cores. The model is first trained briefly
(SGD) so the curvature is non-trivial. Accuracy of the top eigenvalues is
the largest relative error against a tight-tolerance reference computed with
a different solver (SciPy ARPACK, tol 1e-7).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from timing import batched_gradient, per_example_loop, timed  # benchmarks/timing.py

from breakeven_utils import curvature as C
from breakeven_utils.core.data import load_data
from breakeven_utils.core.models import build_model

SECTIONS = ("hvp", "eigs", "warm", "trace", "K", "per_example")




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="measurement images (default 500)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--probes", type=int, default=30, help="Hutchinson probes for this project")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eig-ks", default="1,5", help="top-k sizes of the eigs section (default 1,5)")
    ap.add_argument("--no-arpack", action="store_true", help="eigs: skip the ARPACK solver's rows")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    args = ap.parse_args(argv)
    sections = args.sections.split(",")
    if not set(sections) <= set(SECTIONS):
        ap.error(f"--sections: unknown {sorted(set(sections) - set(SECTIONS))}; valid: {SECTIONS}")
    if args.quick:
        args.n, args.train_steps, args.probes = min(args.n, 100), 20, 5
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    L, M = 25, 128
    wall0 = time.perf_counter()

    data = load_data("cifar10", n_train=max(L * M + 200, args.n), n_val=100, n_test=100,
                     n_measure=args.n, seed=0, device=dev)
    model = build_model("simple_cnn", seed=0).to(dev)
    lf = torch.nn.CrossEntropyLoss()
    D = sum(p.numel() for p in model.parameters())

    # brief training so that curvature is non-trivial
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.train_steps):
        idx = torch.randint(0, len(data.train), (128,), generator=gen)
        opt.zero_grad()
        loss = lf(model(data.train.x[idx]), data.train.y[idx])
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    x, y = data.measure.x, data.measure.y
    rows = []

    def row(what, ours, other, ratio="", note=""):
        rows.append((what, ours, other, ratio, note))
        print(f"[{time.perf_counter() - wall0:5.0f} s] {what}: {ours} | {other} | {ratio} | {note}",
              file=sys.stderr, flush=True)

    import pyhessian
    import pyhessian.hessian  # noqa: F401  (the module, for counting its HVPs)
    ph_mod = sys.modules["pyhessian.hessian"]
    counter = {"n": 0}
    orig_hvp = ph_mod.hessian_vector_product

    def counted(*a, **kw):
        counter["n"] += 1
        return orig_hvp(*a, **kw)

    # -- HVP cost in gradient units ----------------------------------------
    if "hvp" in sections:
        # every path side by side on the same in-memory batch, timed interleaved
        # (one call of each per round) so that drifting load hits all alike
        reps = 2 if args.quick else 5
        from pyhessian.utils import hessian_vector_product

        def plain_grad():
            model.zero_grad(set_to_none=True)
            lf(model(x), y).backward()
        v = torch.randn(D, device=dev)
        first, calls = {}, {"gradient": plain_grad}
        for method in C.HVP_METHODS:
            obj = C.HessianOperator(model, lf, (x, y), method=method)
            _, first[method] = timed(lambda obj=obj: obj.hvp(v))
            calls[method] = lambda obj=obj: obj.hvp(v)
        resolved = {m: C.HessianOperator(model, lf, (x, y), method=m).method for m in C.HVP_METHODS}
        t0 = time.perf_counter()
        ph = pyhessian.hessian(model, lf, data=(x, y), cuda=False)
        vl = [torch.randn_like(p) for p in ph.params]
        hessian_vector_product(ph.gradsH, ph.params, vl)
        first["pyhessian"] = time.perf_counter() - t0
        calls["pyhessian"] = lambda: hessian_vector_product(ph.gradsH, ph.params, vl)
        plain_grad()
        times = {name: [] for name in calls}
        for _ in range(reps):
            for name, fn in calls.items():
                times[name].append(timed(fn)[1])
        t = {name: statistics.median(ts) for name, ts in times.items()}
        ph = calls = None
        model.zero_grad(set_to_none=True)
        t_grad = t["gradient"]
        row("one gradient (fwd+bwd) on the measurement set", f"{t_grad:.3f} s", "", "1.00",
            f"N={args.n} in one batch, D={D}; median of {reps} interleaved rounds")
        labels = {"auto": f"HVP 'auto', the default (picks '{resolved['auto']}' for one batch)",
                  "cached": "HVP 'cached' (graph of the gradient built once)",
                  "fwdrev": "HVP 'fwdrev' (forward-over-reverse; 'auto' over several batches)",
                  "double_backward": "HVP 'double_backward' (graph rebuilt per product)"}
        for method in C.HVP_METHODS:
            row(labels[method], f"{t[method] / t_grad:.2f} gradients",
                f"{t['pyhessian'] / t_grad:.2f} gradients",
                f"{t['pyhessian'] / t[method]:.2f}x",
                f"{t[method]:.3f} s vs pyhessian {t['pyhessian']:.3f} s per product; first call "
                f"{first[method]:.2f} s vs {first['pyhessian']:.2f} s (graph build)")

    # -- top eigenvalues ------------------------------------------------------
    if "eigs" in sections:
        ref, t_ref = timed(lambda: C.hessian_eigs(model, lf, (x, y), k=5, which="LM", tol=1e-7,
                                                  solver="arpack"))
        refv = ref.values

        def rel_err(vals, k):
            vals = torch.as_tensor(vals, dtype=torch.float64)[:k]
            return float(((vals - refv[:k]).abs() / refv[:k].abs()).max())

        ph_mod.hessian_vector_product = counted

        def ph_eigs(k):
            torch.manual_seed(0)
            h = pyhessian.hessian(model, lf, data=(x, y), cuda=False)
            vals, _ = h.eigenvalues(top_n=k, tol=1e-3)
            model.zero_grad(set_to_none=True)
            return vals

        for k in (int(v) for v in args.eig_ks.split(",")):
            ours, t_ours = timed(lambda k=k: C.hessian_eigs(model, lf, (x, y), k=k, which="LM", tol=1e-3))
            if args.no_arpack:
                arp, t_arp = C.HessianEigs(torch.full((k,), float("nan")), None, 0, "LM"), float("nan")
            else:
                arp, t_arp = timed(lambda k=k: C.hessian_eigs(model, lf, (x, y), k=k, which="LM", tol=1e-3,
                                                          solver="arpack"))
            counter["n"] = 0
            phv, t_ph = timed(lambda k=k: ph_eigs(k))
            n_ph = counter["n"]
            row(f"top-{k} eigenvalues, tol 1e-3: time", f"{t_ours:.1f} s", f"{t_ph:.1f} s",
                f"{t_ph / t_ours:.1f}x", f"ARPACK solver: {t_arp:.1f} s")
            row(f"top-{k} eigenvalues: HVPs", f"{ours.n_hvp}", f"{n_ph}", f"{n_ph / ours.n_hvp:.1f}x",
                f"ARPACK solver: {arp.n_hvp}")
            row(f"top-{k} eigenvalues: max rel. error", f"{rel_err(ours.values, k):.1e}",
                f"{rel_err(phv, k):.1e}", "", f"ARPACK solver: {rel_err(arp.values, k):.1e}")
        ph_mod.hessian_vector_product = orig_hvp
        row("reference lambda_1..5 (ARPACK, tol 1e-7)", " ".join(f"{v:.3f}" for v in refv.tolist()), "", "",
            f"{ref.n_hvp} HVPs, {t_ref:.1f} s")

    # -- warm start along a trajectory -----------------------------------------
    if "warm" in sections:
        # top-5 as in the eigs section (tol 1e-3), 10 SGD steps, then cold and
        # warm, with this solver and with the one before warm starts paid
        from warm_starts import BEFORE, old_curvature
        solvers = {"now": C, BEFORE: old_curvature()}
        first = {name: mod.hessian_eigs(model, lf, (x, y), k=5, which="LM", tol=1e-3)
                 for name, mod in solvers.items()}
        gen = torch.Generator().manual_seed(1)
        for _ in range(10):
            idx = torch.randint(0, len(data.train), (128,), generator=gen)
            opt.zero_grad()
            lf(model(data.train.x[idx]), data.train.y[idx]).backward()
            opt.step()
        model.zero_grad(set_to_none=True)
        for name, mod in solvers.items():
            cold, t_cold = timed(lambda mod=mod: mod.hessian_eigs(model, lf, (x, y), k=5, which="LM",
                                                                  tol=1e-3))
            warm, t_warm = timed(lambda mod=mod, name=name: mod.hessian_eigs(
                model, lf, (x, y), k=5, which="LM", tol=1e-3, v0=first[name]))
            who = "this solver" if name == "now" else name
            row(f"top-5 after 10 more SGD steps, HVPs cold / warm ({who})",
                f"{cold.n_hvp} / {warm.n_hvp}", "", f"{cold.n_hvp / warm.n_hvp:.2f}x",
                f"{t_cold:.1f} s / {t_warm:.1f} s; max |dlambda|/lambda cold vs warm "
                f"{float(((cold.values - warm.values).abs() / cold.values.abs()).max()):.0e}")

    # -- trace -----------------------------------------------------------------
    if "trace" in sections:
        tr, t_tr = timed(lambda: C.hessian_trace(model, lf, (x, y), n_probes=args.probes, seed=0))
        torch.manual_seed(0)
        counter["n"] = 0

        def ph_trace():
            h = pyhessian.hessian(model, lf, data=(x, y), cuda=False)
            out = h.trace(maxIter=100, tol=1e-3)
            model.zero_grad(set_to_none=True)
            return out
        ph_mod.hessian_vector_product = counted
        ph_tr, t_ph_tr = timed(ph_trace)
        ph_mod.hessian_vector_product = orig_hvp
        ph_mean = statistics.fmean(ph_tr)
        ph_se = statistics.stdev(ph_tr) / len(ph_tr) ** 0.5 if len(ph_tr) > 1 else float("nan")
        row("Tr(H), Hutchinson: mean +- SE", f"{tr.mean:.1f} +- {tr.stderr:.1f}",
            f"{ph_mean:.1f} +- {ph_se:.1f}", "", "pyhessian stops on a relative-change rule (biased)")
        row("Tr(H): probes / time", f"{args.probes} / {t_tr:.1f} s", f"{len(ph_tr)} / {t_ph_tr:.1f} s",
            f"{(t_ph_tr / len(ph_tr)) / (t_tr / args.probes):.2f}x per probe", "")

    # -- gradient covariance K (L=25, M=128) vs 25 plain backward passes -----------
    if "K" in sections:
        ktrain = (data.train.x, data.train.y)
        cov, t_k = timed(lambda: C.gradient_covariance(model, lf, ktrain, L=L, M=M, seed=0))

        def plain_backwards():
            for idx in cov.indices:
                model.zero_grad(set_to_none=True)
                lf(model(data.train.x[idx]), data.train.y[idx]).backward()
            model.zero_grad(set_to_none=True)
        _, t_plain = timed(plain_backwards)
        row(f"K (L={L}, M={M}): time", f"{t_k:.1f} s", f"{t_plain:.1f} s (25 backward passes)",
            f"{t_k / t_plain:.2f}x", f"lambda_1={cov.lambda_1:.3g}, lambda*={cov.lambda_star:.3g}, "
                                     f"Tr={cov.trace:.3g}")

    # -- per-example gradients vs a plain loop ------------------------------------
    if "per_example" in sections:
        n_pe = min(500, len(data.train))
        xp, yp = data.train.x[:n_pe], data.train.y[:n_pe]
        G, t_pe = timed(lambda: C.per_example_gradients(model, lf, xp, yp, chunk_size=128))

        _, t_batch = timed(lambda: batched_gradient(model, lf, xp, yp), 2)
        Gl, t_loop = timed(lambda: per_example_loop(model, lf, xp, yp))
        rel = (G - Gl).norm(dim=1) / Gl.norm(dim=1).clamp_min(1e-30)
        row(f"per-example gradients, {n_pe} images", f"{t_pe:.1f} s", f"{t_loop:.1f} s (loop)",
            f"{t_loop / t_pe:.1f}x",
            f"rel. difference median {float(rel.median()):.0e}, max {float(rel.max()):.0e}")
        row(f"one batched gradient on the same {n_pe} images", "", f"{t_batch:.1f} s",
            f"{t_loop / t_batch:.1f}x",
            "the floor: loop / batched gradient bounds any per-example speed-up")
        G = Gl = None

    # -- the table ---------------------------------------------------------------
    heads = ("quantity", "this project", "pyhessian / baseline", "speed-up", "notes")
    widths = [max(len(str(r[i])) for r in rows + [heads]) for i in range(5)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |"
    print(f"\nSimpleCNN (D={D}), {args.n} CIFAR-10 training images ({data.label}), after "
          f"{args.train_steps} SGD steps at lr {args.lr}; {args.threads} threads, torch {torch.__version__}"
          f", pyhessian {getattr(pyhessian, '__version__', '0.1')}{' [--quick]' if args.quick else ''}")
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    print(f"\ntotal wall time {time.perf_counter() - wall0:.0f} s")


if __name__ == "__main__":
    main()
