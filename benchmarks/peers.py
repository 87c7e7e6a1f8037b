"""Every estimator row against every library a user would pick instead (issue 23), on the
same model, data and threads, in one run, at equal accuracy:

- curvlinops-for-pytorch (``HessianLinearOperator``, SciPy ``eigsh``, Hutchinson / Hutch++,
  Papyan's Lanczos spectrum),
- hessian-eigenthings (``HessianOperator``, ``lanczos``, ``hutchinson``, ``spectral_density``),
- BackPACK (``BatchGrad``: per-example gradients in one backward pass),
- pyhessian 0.1 (power iteration, Hutchinson with its stopping rule, SLQ).

    python benchmarks/peers.py            # SimpleCNN, 250 CIFAR-10 images, 2 threads (about 10 min)
    python benchmarks/peers.py --quick    # 64 images, fewer probes (under 5 min)

Install the peers with ``pip install -e '.[bench]'``. Equal accuracy: every eigensolver runs
a ladder of its own accuracy settings (tolerance or Lanczos steps) from cheap to tight and is
timed at the first one whose top-k eigenvalues all lie within ``--target`` (relative) of a
reference (ARPACK at tol 1e-7 on this project's HVPs); "did not reach" otherwise. Stochastic
rows (trace, density) run every library with the same number of products. Rows at a hardware
floor say so: one HVP costs about two gradients; K costs its L backward passes. Ratios are
the best peer's time over ours (above 1: ours is faster). Times are medians of wall-clock
seconds on this machine: run it alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from timing import batched_gradient, per_example_loop, timed  # noqa: E402  (benchmarks/timing.py)

from breakeven_utils import curvature as C  # noqa: E402
from breakeven_utils.core.data import load_data  # noqa: E402
from breakeven_utils.core.models import build_model  # noqa: E402
from breakeven_utils.core.profiles import get_profile  # noqa: E402

PEERS = ("curvlinops", "hessian-eigenthings", "BackPACK", "pyhessian")
ROWS = ("hvp", "top1", "top5", "trajectory", "trace", "density", "per_example", "K")


def rel_err(values, ref, k):
    v = torch.as_tensor(np.asarray(values, dtype=np.float64).ravel()[:k])
    v = v[v.abs().argsort(descending=True)]
    return float(((v - ref[:k]).abs() / ref[:k].abs()).max())


class Table:
    """Rows of (quantity, ours, {peer: cell}, best peer, ratio, note), printed as Markdown."""

    def __init__(self, t0):
        self.rows, self.t0 = [], t0

    def add(self, quantity, ours, peers: dict, t_ours=None, t_peers: dict | None = None, note=""):
        best, ratio = "", ""
        finite = {p: t for p, t in (t_peers or {}).items() if t is not None and np.isfinite(t)}
        if t_ours and finite:
            best = min(finite, key=finite.get)
            ratio = f"{finite[best] / t_ours:.2f}x"
        self.rows.append((quantity, ours, *(peers.get(p, "") for p in PEERS), best, ratio, note))
        print(f"[{time.perf_counter() - self.t0:5.0f} s] {quantity}: ours {ours}; "
              + "; ".join(f"{p} {c}" for p, c in peers.items()) + (f"; best/ours {ratio}" if ratio else ""),
              file=sys.stderr, flush=True)

    def markdown(self) -> str:
        heads = ("quantity", "this project", *PEERS, "best peer", "best peer / ours", "notes")
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in self.rows]
        return "\n".join(lines)


def ladder(run, settings, ref, k, target):
    """Time ``run(setting)`` for each setting in turn until its top-k error is <= target:
    (setting, seconds, error, products) of that call, or of the last one when none reaches it."""
    last = None
    for s in settings:
        (vals, n_mv), t = timed(lambda s=s: run(s))
        err = rel_err(vals, ref, k)
        last = (s, t, err, n_mv, err <= target)
        if err <= target:
            return last
    return last


def cell(res, what="tol"):
    s, t, err, n_mv, ok = res
    head = f"{t:.1f} s, {n_mv} HVPs, err {err:.0e}" if n_mv is not None else f"{t:.1f} s, err {err:.0e}"
    return f"{head} ({what} {s})" + ("" if ok else " — did not reach the target")


def solve_point(model, lf, xy, params, prev: dict, m_he: int, tol0: float, target: float, he, curvlinops):
    """One point of :func:`trajectory_row`: the ladder results (see :func:`ladder`) of ours (warm
    from ``prev['ours']``), hessian-eigenthings (cold, from ``m_he - 4`` Lanczos steps up) and
    curvlinops (ARPACK warm from ``prev['curvlinops']``); updates ``prev`` with the new vectors."""
    D = sum(p.numel() for p in params)
    ref = C.hessian_eigs(model, lf, xy, k=1, which="LA", tol=1e-7, solver="arpack").values.double()
    found = {}

    def ours(tol):
        r = C.hessian_eigs(model, lf, xy, k=1, which="LA", tol=tol, v0=prev["ours"])
        found["ours"] = r.vectors.detach().clone()
        return r.values.numpy(), r.n_hvp
    res = ladder(ours, (tol0, 1e-3, 1e-4), ref, 1, target)
    he_op = he.HessianOperator(model, [xy], he.supervised_loss(lf))

    def eigth(m):
        return he.lanczos(he_op, k=1, max_iter=m, which="LA", seed=0).eigenvalues.numpy(), m
    res_he = ladder(eigth, range(max(2, m_he - 4), 61, 2), ref, 1, target)
    lin = curvlinops.HessianLinearOperator(model, lf, params, [xy], check_deterministic=False)
    lin = lin.to_scipy(dtype=np.float64)
    count = {"n": 0}

    def mv(u):
        count["n"] += 1
        return lin.matvec(u)
    op = LinearOperator(lin.shape, matvec=mv, dtype=np.float64)

    def curv(tol):
        count["n"] = 0
        v0 = prev["curvlinops"]
        if v0 is None:
            v0 = np.random.default_rng(0).standard_normal(D)
        vals, vecs = eigsh(op, k=1, which="LA", tol=tol, v0=v0)
        found["curvlinops"] = vecs[:, 0]
        return vals, count["n"]
    res_cl = ladder(curv, (1e-2, 1e-3, 1e-4), ref, 1, target)
    prev.update(found)
    return res, res_he, res_cl


def trajectory_row(args, lf, he, curvlinops):
    """lambda_H^1 as notebook 1 measures it at ``cpu`` (SimpleCNN, Keras initialisation, SGD at
    the profile's first learning rate, batch 128, the first ``hessian_n`` examples of the
    measurement set, which='LA', a point every ``measure_every`` steps): per point, ours warm
    started from the previous point's eigenvector (as the recorder does) against
    hessian-eigenthings (no start-vector argument: cold, its cheapest Lanczos step count that
    reaches the target) and curvlinops (SciPy ARPACK warm started from the previous vector, its
    cheapest tolerance), each error against ARPACK at tol 1e-7. Returns the Table.add arguments."""
    s = get_profile("cpu", section="break_even")
    points, every = (3, 25) if args.quick else (5, s["measure_every"])
    data = load_data("cifar10", n_train=s["n_train"], n_val=100, n_test=100, n_measure=s["n_measure"],
                     seed=0)
    xy = (data.measure.x[:s["hessian_n"]], data.measure.y[:s["hessian_n"]])
    model = build_model("simple_cnn", seed=0, init="keras")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=s["lrs"][0])
    gen = torch.Generator().manual_seed(0)
    prev = {"ours": None, "curvlinops": None}
    m_he = 2
    names = ("ours", "hessian-eigenthings", "curvlinops")
    acc = {name: {"hvp": [], "t": [], "err": []} for name in names}
    for point in range(points):
        if point:  # every steps of SGD between points
            for _ in range(every):
                idx = torch.randint(0, len(data.train), (s["batch_size"],), generator=gen)
                opt.zero_grad()
                lf(model(data.train.x[idx]), data.train.y[idx]).backward()
                opt.step()
            model.zero_grad(set_to_none=True)
        res, res_he, res_cl = solve_point(model, lf, xy, params, prev, m_he, s["hessian_tol"], args.target,
                                          he, curvlinops)
        m_he = res_he[0]
        for name, r in (("ours", res), ("hessian-eigenthings", res_he), ("curvlinops", res_cl)):
            acc[name]["hvp"].append(r[3])
            acc[name]["t"].append(r[1] if r[4] else float("nan"))
            acc[name]["err"].append(r[2])
        print(f"  point {point} (step {point * every}): HVPs ours {res[3]} (err {res[2]:.0e}), "
              f"hessian-eigenthings {res_he[3]}, curvlinops {res_cl[3]}", file=sys.stderr, flush=True)

    def summary(name):
        a = acc[name]
        return (f"{statistics.fmean(a['hvp']):.1f} HVPs, {statistics.fmean(a['t']):.1f} s per point, "
                f"max err {max(a['err']):.0e}")
    t = {name: statistics.fmean(a["t"]) for name, a in acc.items()}
    quantity = (f"lambda_H^1 along notebook 1's cpu trajectory ({points} points {every} steps apart), "
                f"err <= {args.target:g}")
    peers = {"hessian-eigenthings": summary("hessian-eigenthings") + " (cold)",
             "curvlinops": summary("curvlinops") + " (ARPACK, warm)"}
    note = (f"SimpleCNN, Keras init, SGD lr {s['lrs'][0]:g}, batch {s['batch_size']}, "
            f"{s['n_train']:,} images; "
            f"lambda_H on {s['hessian_n']}; ours warm from the previous point's eigenvector as the recorder "
            f"is, at the cheapest tolerance from the profile's {s['hessian_tol']:g}; hessian-eigenthings' "
            "step count picked knowing the reference (an oracle its user lacks)")
    return (quantity, summary("ours"), peers, t["ours"],
            {"hessian-eigenthings": t["hessian-eigenthings"], "curvlinops": t["curvlinops"]}, note)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=250,
                    help="measurement images (default 250: notebook 1's lambda_H set at cpu)")
    ap.add_argument("--quick", action="store_true", help="64 images, fewer probes and steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--target", type=float, default=1e-3, help="relative error every eigensolver must reach")
    ap.add_argument("--probes", type=int, default=30, help="products per trace estimate")
    ap.add_argument("--steps", type=int, default=80, help="Lanczos steps of the density")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    args = ap.parse_args(argv)
    rows = args.rows.split(",")
    if not set(rows) <= set(ROWS):
        ap.error(f"--rows: unknown {sorted(set(rows) - set(ROWS))}; valid: {ROWS}")
    if args.quick:
        args.n, args.train_steps, args.probes, args.steps = min(args.n, 64), 20, 9, 30
    try:
        import backpack
        import curvlinops
        import hessian_eigenthings as he
        import pyhessian
        from pyhessian.utils import hessian_vector_product as ph_hvp
    except ImportError as e:
        sys.exit(f"benchmarks/peers.py needs the peers: pip install -e '.[bench]' ({e})")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    L, M = 25, 128
    data = load_data("cifar10", n_train=max(L * M + 200, args.n), n_val=100, n_test=100, n_measure=args.n,
                     seed=0)
    model = build_model("simple_cnn", seed=0)
    lf = torch.nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    D = sum(p.numel() for p in params)
    opt = torch.optim.SGD(params, lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.train_steps):  # curvature of a trained net, not of the initialisation
        idx = torch.randint(0, len(data.train), (128,), generator=gen)
        opt.zero_grad()
        lf(model(data.train.x[idx]), data.train.y[idx]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    x, y = data.measure.x, data.measure.y
    table = Table(t0)

    ours_op = C.HessianOperator(model, lf, (x, y))
    cl_op = curvlinops.HessianLinearOperator(model, lf, params, [(x, y)], check_deterministic=False)
    he_op = he.HessianOperator(model, [(x, y)], he.supervised_loss(lf))

    def pyh():
        h = pyhessian.hessian(model, lf, data=(x, y), cuda=False)
        model.zero_grad(set_to_none=True)
        return h

    def grad():
        model.zero_grad(set_to_none=True)
        lf(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    ph_counter = {"n": 0}
    ph_mod = sys.modules["pyhessian.hessian"]
    orig = ph_mod.hessian_vector_product

    def counted(*a, **kw):
        ph_counter["n"] += 1
        return orig(*a, **kw)
    ph_mod.hessian_vector_product = counted

    # -- one Hessian-vector product, in gradient units ----------------------------------------
    if "hvp" in rows:
        v = torch.randn(D)
        h = pyh()
        vl = [torch.randn_like(p) for p in h.params]
        calls = {"gradient": grad, "ours": lambda: ours_op.matvec(v), "curvlinops": lambda: cl_op @ v,
                 "hessian-eigenthings": lambda: he_op.matvec(v),
                 "pyhessian": lambda: ph_hvp(h.gradsH, h.params, vl)}
        for fn in calls.values():
            fn()  # first calls build graphs and caches
        reps = 2 if args.quick else 5
        times = {name: [] for name in calls}
        for _ in range(reps):  # interleaved rounds: a drifting load hits all alike
            for name, fn in calls.items():
                times[name].append(timed(fn)[1])
        t = {name: statistics.median(ts) for name, ts in times.items()}
        g = t["gradient"]
        agree = float((cl_op @ v - ours_op.matvec(v)).norm() / ours_op.matvec(v).norm())
        table.add("one HVP (gradients)", f"{t['ours'] / g:.2f}",
                  {p: f"{t[p] / g:.2f}" for p in ("curvlinops", "hessian-eigenthings", "pyhessian")},
                  t["ours"], {p: t[p] for p in ("curvlinops", "hessian-eigenthings", "pyhessian")},
                  f"floor about 2 gradients (one forward-over-reverse or double backward); one gradient "
                  f"{g:.3f} s on {args.n} images; ours vs curvlinops rel. difference {agree:.0e}")
        h = None

    # -- top-k eigenvalues at equal accuracy ----------------------------------------------------
    ks = [k for k, name in ((1, "top1"), (5, "top5")) if name in rows]
    if ks:
        ref = C.hessian_eigs(model, lf, (x, y), k=max(ks), which="LM", tol=1e-7, solver="arpack")
        refv = ref.values.double()
        table.add(f"reference top-{max(ks)} (ARPACK, tol 1e-7)", " ".join(f"{v:.4g}" for v in refv.tolist()),
                  {}, note=f"{ref.n_hvp} HVPs")
        for k in ks:
            def ours(tol, k=k):
                r = C.hessian_eigs(model, lf, (x, y), k=k, which="LM", tol=tol)
                return r.values.numpy(), r.n_hvp

            def curv(tol, k=k):
                n0 = {"n": 0}
                lin = cl_op.to_scipy(dtype=np.float64)

                def mv(u):
                    n0["n"] += 1
                    return lin.matvec(u)
                vals = eigsh(LinearOperator(lin.shape, matvec=mv, dtype=np.float64), k=k, which="LM", tol=tol,
                             v0=np.random.default_rng(0).standard_normal(D), return_eigenvectors=False)
                return vals, n0["n"]

            def eigth(m, k=k):
                r = he.lanczos(he_op, k=k, max_iter=m, which="LM", seed=0)
                return r.eigenvalues.numpy(), m

            def pyhe(tol, k=k):
                torch.manual_seed(0)
                ph_counter["n"] = 0
                vals, _ = pyh().eigenvalues(top_n=k, tol=tol)
                return vals, ph_counter["n"]

            tols = (1e-2, 1e-3, 1e-4)
            steps = [m for m in range(k + 1, 24 * k + 9, 2 if k == 1 else k)]  # Lanczos steps of its ladder
            res = {"ours": ladder(ours, tols, refv, k, args.target),
                   "curvlinops": ladder(curv, tols, refv, k, args.target),
                   "hessian-eigenthings": ladder(eigth, [m for m in steps if m < D], refv, k, args.target),
                   "pyhessian": ladder(pyhe, tols, refv, k, args.target)}
            what = {"hessian-eigenthings": "Lanczos steps"}
            table.add(f"top-{k} eigenvalue{'s' if k > 1 else ''}, error <= {args.target:g}",
                      cell(res["ours"]),
                      {p: cell(r, what.get(p, "tol")) for p, r in res.items() if p != "ours"},
                      res["ours"][1], {p: r[1] if r[4] else None for p, r in res.items() if p != "ours"},
                      "each at the cheapest setting of its ladder that reaches the error; curvlinops: SciPy "
                      "ARPACK on its operator; hessian-eigenthings runs a fixed step count, here the "
                      "smallest that reaches the error, picked knowing the reference (an oracle its user "
                      "lacks)")

    # -- lambda_H^1 along notebook 1's cpu trajectory, per measurement point --------------------
    if "trajectory" in rows:
        table.add(*trajectory_row(args, lf, he, curvlinops))

    # -- Tr(H) with the same number of products ------------------------------------------------
    if "trace" in rows:
        n = args.probes
        ours_t, t_ours = timed(lambda: C.hutchinson_trace(ours_op, n, seed=0))
        cl_t, t_cl = timed(lambda: float(curvlinops.hutchinson_trace(cl_op, n)))
        clpp, t_clpp = timed(lambda: float(curvlinops.hutchpp_trace(cl_op, 3 * (n // 3))))  # needs 3 | n
        he_t, t_he = timed(lambda: he.hutchinson(he_op, num_samples=n, seed=0))

        def pyh_trace():
            torch.manual_seed(0)
            ph_counter["n"] = 0
            return pyh().trace(maxIter=n, tol=float("-inf"))  # all n probes: its stopping rule is off
        ph_t, t_ph = timed(pyh_trace)
        table.add(f"Tr(H), {n} products", f"{ours_t.mean:.1f} +- {ours_t.stderr:.1f}, {t_ours:.1f} s",
                  {"curvlinops": f"{cl_t:.1f} (Hutchinson), {t_cl:.1f} s; Hutch++ {clpp:.1f}, {t_clpp:.1f} s",
                   "hessian-eigenthings": f"{float(he_t.estimate):.1f}, {t_he:.1f} s",
                   "pyhessian": f"{statistics.fmean(ph_t):.1f} ({len(ph_t)} products), {t_ph:.1f} s"},
                  t_ours / n, {"curvlinops": min(t_cl, t_clpp) / n, "hessian-eigenthings": t_he / n,
                               "pyhessian": t_ph / len(ph_t)},
                  "the same products each (ratio per product); Hutch++ spends a third of them on a "
                  "low-rank part, which lowers the variance where the spectrum decays fast")

    # -- spectral density (SLQ) with the same Lanczos steps -------------------------------------
    if "density" in rows:
        m = args.steps
        ours_d, t_ours = timed(lambda: C.slq_density(ours_op, m, 1, seed=0))
        he_d, t_he = timed(lambda: he.spectral_density(he_op, num_runs=1, lanczos_steps=m, seed=0))
        lo, hi = float(ours_d.grid[0]), float(ours_d.grid[-1])
        cl_d, t_cl = timed(lambda: curvlinops.lanczos_approximate_spectrum(cl_op, ncv=m, boundaries=(lo, hi)))

        def pyh_density():
            return pyh().density(iter=m, n_v=1)
        try:
            _, t_ph = timed(pyh_density)
            ph_cell = f"{t_ph:.1f} s"
        except Exception as e:  # noqa: BLE001 -- pyhessian 0.1 calls torch.eig, gone from torch
            t_ph, ph_cell = None, f"fails: {type(e).__name__}: {str(e).splitlines()[0][:60]}"
        table.add(f"spectral density, SLQ, {m} Lanczos steps", f"{t_ours:.1f} s",
                  {"curvlinops": f"{t_cl:.1f} s (Papyan's LanczosApproxSpec, boundaries given)",
                   "hessian-eigenthings": f"{t_he:.1f} s", "pyhessian": ph_cell},
                  t_ours, {"curvlinops": t_cl, "hessian-eigenthings": t_he, "pyhessian": t_ph},
                  f"{m} HVPs each plus reorthogonalisation")

    ph_mod.hessian_vector_product = orig

    # -- per-example gradients -------------------------------------------------------------------
    if "per_example" in rows:
        n = min(250, len(data.train))
        xp, yp = data.train.x[:n], data.train.y[:n]
        G, t_ours = timed(lambda: C.per_example_gradients(model, lf, xp, yp, chunk_size=128))
        bp_model = backpack.extend(build_model("simple_cnn", seed=0))
        bp_model.load_state_dict(model.state_dict())
        bp_lf = backpack.extend(torch.nn.CrossEntropyLoss())

        def bp():
            bp_model.zero_grad(set_to_none=True)
            with backpack.backpack(backpack.extensions.BatchGrad()):
                bp_lf(bp_model(xp), yp).backward()
            return torch.cat([p.grad_batch.reshape(n, -1) for p in bp_model.parameters()], dim=1) * n
        try:
            Gb, t_bp = timed(bp)
            rel = float(((Gb - G).norm(dim=1) / G.norm(dim=1).clamp_min(1e-30)).max())
            bp_cell = f"{t_bp:.2f} s (max rel. difference {rel:.0e})"
        except Exception as e:  # noqa: BLE001 -- a layer BackPACK does not support
            t_bp, bp_cell = None, f"fails: {type(e).__name__}: {str(e).splitlines()[0][:60]}"

        _, t_batch = timed(lambda: batched_gradient(model, lf, xp, yp), 3)
        Gl, t_loop = timed(lambda: per_example_loop(model, lf, xp, yp))
        rel = ((G - Gl).norm(dim=1) / Gl.norm(dim=1).clamp_min(1e-30))
        table.add(f"per-example gradients, {n} images",
                  f"{t_ours:.2f} s (vs a loop: rel. difference median {float(rel.median()):.0e})",
                  {"BackPACK": bp_cell}, t_ours, {"BackPACK": t_bp},
                  f"floor: one batched gradient {t_batch:.2f} s ({t_ours / t_batch:.1f}x of it); "
                  f"a Python loop {t_loop:.1f} s")

    # -- K's top eigenvalues (L=25, M=128) -------------------------------------------------------
    if "K" in rows:
        train = (data.train.x, data.train.y)
        cov, t_k = timed(lambda: C.gradient_covariance(model, lf, train, L=L, M=M, seed=0))

        def backwards():
            for idx in cov.indices:
                model.zero_grad(set_to_none=True)
                lf(model(data.train.x[idx]), data.train.y[idx]).backward()
            model.zero_grad(set_to_none=True)
        _, t_floor = timed(backwards)
        table.add(f"K (L={L}, M={M}): lambda_K^1, lambda_K^*, Tr(K)", f"{t_k:.1f} s", {},
                  note=f"no peer computes the mini-batch gradient covariance K^M; the floor is its {L} "
                       f"backward passes, {t_floor:.1f} s: ours at {t_k / t_floor:.2f}x of it")

    versions = {"torch": torch.__version__, **{p: version(d) for p, d in (
        ("curvlinops", "curvlinops-for-pytorch"), ("hessian-eigenthings", "hessian-eigenthings"),
        ("BackPACK", "backpack-for-pytorch"), ("pyhessian", "pyhessian"))}}
    print(f"\nSimpleCNN (D={D}), {args.n} CIFAR-10 images ({data.label}) after {args.train_steps} SGD steps; "
          f"{args.threads} threads; {time.strftime('%Y-%m-%d')}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()) + (" [--quick]" if args.quick else ""))
    print()
    print(table.markdown())
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
