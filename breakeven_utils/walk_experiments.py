"""A Walk with SGD: the runs behind notebook 4, their analysis and the claims table.

``settings(profile)`` reads the profile's ``walk`` section; :func:`runs` turns it
into :class:`WalkRun` objects (a RunConfig plus what it is for), validated
before any training (an epoch to interpolate beyond the run's budget, a
negative noise factor, an unknown model family raise ``ValueError``);
:func:`run_configs` lists their configurations (``walk.run_configs``).

Experiments (the paper's figures and tables):

* ``trajectory`` (Fig. 1, 2, 9-21): per model family, GD for ``iterations``
  steps and SGD, every step interpolated over the first ``iterations`` steps of
  each epoch in ``sgd_epochs`` (metrics ``walk_interp``, ``walk_step``,
  ``dist_init``).
* ``tables`` (Table 1, 2, Fig. 8): SGD at each lr of ``lrs``, every step of
  the epochs in ``epochs`` interpolated; the first lr also every step of the
  epochs ``barrier_epochs`` (Fig. 8). A twin run per lr (the same trajectory,
  another measurement schedule) records the training loss on the whole training
  set, validation accuracy and lambda_H^1 every ``curve_every`` epochs (Fig. 3, 7).
* ``cosine`` (Fig. 4, 22-24): cos(g_{t-1}, g_t) at every step, batch sizes at
  a fixed lr and lrs at a fixed batch size.
* ``noise`` (Fig. 5, 25, 26): GD, GD + isotropic noise (``factors`` x the
  largest per-parameter variance of mini-batch gradients at theta_0, rule
  ``gd_noise_minibatch``) and SGD for the same number of updates.
* ``schedules`` (Fig. 6, 27): cyclic (CLR), step and trapezoid schedules over
  equal epoch budgets, each on a grid of peak learning rates, selected on
  validation accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import walk

__all__ = [
    "settings", "WalkRun", "runs", "run_configs", "batches_per_epoch", "interp_iterations",
    "sgd_trajectory_run", "step_table", "epoch_summary", "steps_of", "mean_se",
    "schedule_summary", "run_all", "cosine_summary", "noise_summary",
    "schedule_frame",  "plot_walk", "init_worker",
]

EXPERIMENTS = ("trajectory", "tables", "cosine", "noise", "schedules")

_FAMILY_KEYS = ("dataset", "normalize", "model", "model_kwargs", "n_train", "n_val", "n_test",
                "batch_size", "label")


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``walk`` section and ``overrides``; validated."""
    from .profiles import get_profile

    s = get_profile(profile, section="walk", **overrides)
    validate(s)
    return s


def batches_per_epoch(fam: dict, batch_size: int | None = None) -> int:
    """Mini-batches per epoch (the recorder drops the last incomplete batch)."""
    return int(fam["n_train"]) // int(batch_size or fam["batch_size"])


def interp_iterations(epochs, bpe: int, n_steps: int | None = None) -> list[int]:
    """Measurement iterations that interpolate the first ``n_steps`` steps (None: all) of
    each (1-based) epoch: t0 .. t0 + n, t0 = (epoch - 1) * bpe (the metric interpolates
    between consecutive measured iterates)."""
    its: set[int] = set()
    for e in epochs:
        t0 = (int(e) - 1) * bpe
        n = bpe if n_steps is None else min(int(n_steps), bpe)
        its.update(range(t0, t0 + n + 1))
    return sorted(its)


def validate(s: dict) -> None:
    """Bad settings raise ValueError before any training."""
    fams = s.get("families") or {}
    for name, fam in fams.items():
        missing = [k for k in ("dataset", "model", "n_train", "batch_size") if k not in fam]
        if missing:
            raise ValueError(f"walk family {name!r} lacks {missing}")
        if batches_per_epoch(fam) < 1:
            raise ValueError(f"walk family {name!r}: batch_size exceeds n_train")

    def fam_of(sec, key="family"):
        f = sec.get(key)
        if f not in fams:
            raise ValueError(f"unknown walk model family {f!r}; defined: {sorted(fams)}")
        return fams[f]

    tr = s.get("trajectory") or {}
    for f in tr.get("families", []):
        if f not in fams:
            raise ValueError(f"unknown walk model family {f!r}; defined: {sorted(fams)}")
        bad = [e for e in tr["sgd_epochs"] if not 1 <= int(e) <= int(tr["max_epochs"])]
        if bad:
            raise ValueError(f"trajectory epochs {bad} to interpolate are beyond the run's budget "
                             f"of {tr['max_epochs']} epochs")
    tb = s.get("tables") or {}
    if tb:
        fam_of(tb)
        for key in ("epochs", "barrier_epochs"):
            bad = [e for e in tb.get(key, []) if not 1 <= int(e) <= int(tb["max_epochs"])]
            if bad:
                raise ValueError(f"tables: {key} {bad} to interpolate are beyond the run's budget "
                                 f"of {tb['max_epochs']} epochs")
    nz = s.get("noise") or {}
    if nz:
        fam_of(nz)
        for f in nz["factors"]:
            if not (isinstance(f, (int, float)) and f > 0 and math.isfinite(f)):
                raise ValueError(f"noise factors must be positive (sigma^2 = factor x max variance "
                                 f">= 0; 0 is plain GD), got {f!r}")
    cs = s.get("cosine") or {}
    if cs:
        fam_of(cs)
    sc = s.get("schedules") or {}
    if sc:
        fam_of(sc)
        if not 0 < sc["warmup_frac"] and sc["warmup_frac"] + sc["flat_frac"] < 1:
            pass
        if not (0 < sc["warmup_frac"] < 1 and 0 <= sc["flat_frac"] < 1
                and sc["warmup_frac"] + sc["flat_frac"] < 1):
            raise ValueError("schedules: need 0 < warmup_frac, 0 <= flat_frac, warmup + flat < 1")


@dataclass(frozen=True)
class WalkRun:
    """One run of notebook 4: its experiment, a readable name, the config, and its role."""

    experiment: str
    name: str
    config: object
    meta: dict = field(default_factory=dict)


def _cfg(s: dict, fam: dict, **kw):
    from .train import RunConfig

    n_measure = min(int(s.get("hessian_n") or fam["n_train"]), int(fam["n_train"]))
    base = dict(dataset=fam["dataset"], n_train=int(fam["n_train"]), n_val=fam.get("n_val"),
                n_test=fam.get("n_test"), n_measure=n_measure, data_seed=0,
                normalize=fam.get("normalize", "standard"), model=fam["model"],
                model_kwargs=dict(fam.get("model_kwargs", {})), optimizer="sgd",
                batch_size=int(fam["batch_size"]), seed=int(s["seeds"][0]),
                hessian_n=n_measure, hessian_tol=float(s.get("hessian_tol", 1e-3)),
                hessian_bn_mode="train", train_eval_on="train", measure_every=0,
                measure_every_epochs=0)
    base.update(kw)
    return RunConfig(**base)


WALK_METRICS = ("walk_interp", "walk_step", "dist_init")


def runs(s: dict) -> list[WalkRun]:
    """Every run of the notebook at these settings (see the module docstring)."""
    validate(s)
    fams = s["families"]
    out: list[WalkRun] = []
    tr = s.get("trajectory") or {}
    for f in tr.get("families", []):
        fam = fams[f]
        n = int(tr["iterations"])
        out.append(WalkRun("trajectory", f"traj_{f}_gd", _cfg(
            s, fam, optimizer="gd", lr=float(tr["lr"]), max_iters=n,
            measure_at=tuple(range(n + 1)), metrics=WALK_METRICS),
            dict(family=f, optimizer="GD", epochs=[1], lr=float(tr["lr"]))))
        bpe = batches_per_epoch(fam)
        tb = s.get("tables") or {}
        if (tb.get("family") == f and float(tr["lr"]) == float(tb["lrs"][0])
                and set(tr["sgd_epochs"]) <= set(tb["epochs"]) | set(tb.get("extra_epochs", []))):
            continue  # the tables run interpolates these epochs whole: see sgd_trajectory_run
        out.append(WalkRun("trajectory", f"traj_{f}_sgd", _cfg(
            s, fam, lr=float(tr["lr"]), max_epochs=int(max(tr["sgd_epochs"])),
            measure_at=tuple(interp_iterations(tr["sgd_epochs"], bpe, n)), metrics=WALK_METRICS),
            dict(family=f, optimizer="SGD", epochs=list(tr["sgd_epochs"]), lr=float(tr["lr"]))))
    tb = s.get("tables") or {}
    if tb:
        fam = fams[tb["family"]]
        bpe = batches_per_epoch(fam)
        for i, lr in enumerate(tb["lrs"]):
            eps = sorted(set(tb["epochs"]) | (set(tb.get("barrier_epochs", [])) if i == 0 else set())
                         | set(tb.get("extra_epochs", []) if i == 0 else []))
            out.append(WalkRun("tables", f"{tb['family']}_lr{lr:g}", _cfg(
                s, fam, lr=float(lr), max_epochs=int(tb["max_epochs"]),
                measure_at=tuple(interp_iterations(eps, bpe)), metrics=WALK_METRICS),
                dict(family=tb["family"], lr=float(lr), epochs=eps)))
            every = int(tb["curve_every"])
            at = tuple(range(0, int(tb["max_epochs"]) * bpe + 1, every * bpe))
            out.append(WalkRun("curves", f"{tb['family']}_lr{lr:g}_curve", _cfg(
                s, fam, lr=float(lr), max_epochs=int(tb["max_epochs"]), measure_at=at,
                metrics=("train", "val", "lambda_H", "dist_init", "param_norm")),
                dict(family=tb["family"], lr=float(lr))))
    cs = s.get("cosine") or {}
    if cs:
        fam = fams[cs["family"]]
        n = int(cs["iterations"])
        grid = [(cs["lr"], b, "batch_size") for b in cs["batch_sizes"]]
        grid += [(lr, cs["batch_size"], "lr") for lr in cs["lrs"]]
        for lr, b, varied in grid:
            epochs = math.ceil(n / batches_per_epoch(fam, b))
            # the shared setting (lr, S) appears in both grids: one run, two entries
            out.append(WalkRun("cosine", f"cos_{cs['family']}_lr{lr:g}_S{b}_vary_{varied}", _cfg(
                s, fam, lr=float(lr), batch_size=int(b), max_iters=n, max_epochs=epochs,
                measure_at=tuple(range(n + 1)), metrics=("walk_step", "dist_init")),
                dict(family=cs["family"], lr=float(lr), batch_size=int(b), varied=varied)))
    nz = s.get("noise") or {}
    if nz:
        fam = fams[nz["family"]]
        n, every = int(nz["iterations"]), int(nz["measure_every"])
        at = tuple(sorted(set(range(0, n + 1, every)) | set(range(min(n, 60) + 1)) | {n}))
        common = dict(lr=float(nz["lr"]), max_iters=n, measure_at=at,
                      metrics=("train", "val", "walk_step", "dist_init", "param_norm"))
        out.append(WalkRun("noise", f"noise_{nz['family']}_gd", _cfg(s, fam, optimizer="gd", **common),
                           dict(family=nz["family"], method="GD", factor=0.0)))
        for fct in nz["factors"]:
            out.append(WalkRun("noise", f"noise_{nz['family']}_gd_noise{fct:g}", _cfg(
                s, fam, optimizer="gd_noise", noise_factor=float(fct),
                update_rule="gd_noise_minibatch",
                rule_kwargs={"noise_batch_size": int(nz["noise_batch_size"]),
                             "n_batches": int(nz["n_batches"])}, **common),
                dict(family=nz["family"], method=f"GD + noise ({fct:g} x max var)", factor=float(fct))))
        bpe = batches_per_epoch(fam)
        out.append(WalkRun("noise", f"noise_{nz['family']}_sgd", _cfg(
            s, fam, max_epochs=math.ceil(n / bpe), **common),
            dict(family=nz["family"], method=f"SGD (S={fam['batch_size']})", factor=math.nan)))
    sc = s.get("schedules") or {}
    if sc:
        fam = fams[sc["family"]]
        bpe = batches_per_epoch(fam)
        E = int(sc["epochs"])
        total = E * bpe
        for seed in sc["seeds"]:
            for lr in sc["lrs"]:
                for kind in ("clr", "step", "trapezoid"):
                    out.append(WalkRun("schedules", f"sched_{sc['family']}_{kind}_lr{lr:g}_s{seed}",
                                       _schedule_cfg(s, fam, kind, float(lr), E, total, sc, seed),
                                       dict(family=sc["family"], schedule=kind, lr=float(lr),
                                            seed=int(seed))))
    names = [r.name for r in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"walk settings give several runs the same name: {dup} (a grid lists a "
                         "value twice?)")
    return out


def sgd_trajectory_run(rs: list, family: str) -> WalkRun | None:
    """The run whose epochs feed the SGD trajectory figures of ``family``: its own
    trajectory run, else the tables run at the first lr (which interpolates them whole)."""
    for r in rs:
        if r.experiment == "trajectory" and r.meta.get("family") == family and r.meta["optimizer"] == "SGD":
            return r
    for r in rs:
        if r.experiment == "tables" and r.meta.get("family") == family:
            return r
    return None


def _schedule_cfg(s, fam, kind, lr, E, total, sc, seed):
    """Equal budgets of E epochs. CLR (triangular, Smith 2017): base lr/10 <-> lr, half
    cycle ``clr_half`` of the budget; trapezoid: the first half cycle of CLR (lr/10 -> lr
    over warmup_frac of the budget), flat, then linear annealing to lr/10 over the rest;
    step: lr, divided by 10 at each of ``step_at`` (fractions of the budget)."""
    bpe = total // E
    at = tuple(range(0, total + 1, bpe))
    common = dict(lr=lr, max_epochs=E, measure_at=at, metrics=("train", "val", "test"),
                  seed=int(seed))
    if kind == "clr":
        return _cfg(s, fam, schedule="cyclic", clr_base_lr=lr / 10,
                    clr_step_size=max(1, int(round(sc["warmup_frac"] * total))), **common)
    if kind == "trapezoid":
        w = max(1, int(round(sc["warmup_frac"] * total)))
        f = int(round(sc["flat_frac"] * total))
        return _cfg(s, fam, schedule="trapezoid", min_lr=lr / 10, warmup_iters=w, flat_iters=f,
                    anneal_iters=max(1, total - w - f), **common)
    ms = tuple(sorted({max(1, int(round(q * E))) for q in sc["step_at"]}))
    return _cfg(s, fam, schedule="step", milestones=ms, gamma=0.1, **common)


def run_configs(profile: str, **overrides) -> list:
    """Every RunConfig the notebook launches at ``profile`` (deduplicated), built and validated
    without training."""
    seen, out = set(), []
    for r in runs(settings(profile, **overrides)):
        k = r.config.key()
        if k not in seen:
            seen.add(k)
            out.append(r.config)
    return out


def init_worker(threads: int = 1) -> None:
    """Process-pool initializer: one torch thread and the walk metrics/rule registered
    (a spawned worker rebuilding a RunConfig must know ``walk_interp``)."""
    import torch

    from . import walk as _  # noqa: F401  (registers metrics and the rule)
    torch.set_num_threads(threads)


def run_all(rs: list, store=None, jobs: int | None = None, checkpoint_every: int = 200,
            profile: str | None = None) -> tuple[dict, list]:
    """Run (or load) every WalkRun through the run store; ``({name: RunResult}, failed)``.
    ``jobs`` (None: records.sweep_env's default for ``profile``) > 1: a spawn process pool
    whose workers import the walk metrics first. A
    failed run is reported in ``failed`` (name, error) and left out; a diverged run is
    returned with status 'diverged'."""
    from . import records

    configs = [r.config for r in rs]
    # EXECUTOR=/DEVICE=/THREADS= (environment variables, records.sweep_env): a SLURM or
    # Dask executor takes the runs; else a local spawn pool of ``jobs`` processes
    kw = records.sweep_env(store, jobs=jobs, profile=profile)
    jobs = kw.pop("jobs")
    own = kw["executor"] is None and jobs > 1
    if own:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        kw["executor"] = ProcessPoolExecutor(max_workers=jobs,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=init_worker,
                                             initargs=(kw["threads_per_job"] or 1,))
    try:
        df = records.sweep(configs, store=store, checkpoint_every=checkpoint_every,
                           errors="record", progress=True, **kw)
    finally:
        if own:
            kw["executor"].shutdown()
    bad = {f["key"]: f["error"] for f in df.attrs.get("failed", [])}
    out, failed = {}, []
    for r in rs:
        k = r.config.key()
        if k in bad:
            failed.append((r.name, bad[k]))
        else:
            out[r.name] = records.load(r.config, store)
    return out, failed


def cosine_summary(results: dict, rs: list, transient: int, block: int = 20) -> pd.DataFrame:
    """Fig. 4: per cosine run, the mean cos(g_{t-1}, g_t) after ``transient`` steps and its
    standard error from means of blocks of ``block`` consecutive steps (the cosines of
    neighbouring steps are correlated)."""
    rows = []
    for r in rs:
        if r.experiment != "cosine" or r.name not in results:
            continue
        m = results[r.name].metrics
        c = m.loc[m["walk_step"] >= transient, "step_cos"].dropna().to_numpy(float) \
            if "step_cos" in m else np.array([])
        nb = len(c) // block
        blocks = c[:nb * block].reshape(nb, block).mean(1) if nb else np.array([])
        mean, se, n = mean_se(blocks)
        rows.append(dict(name=r.name, varied=r.meta["varied"], lr=r.meta["lr"],
                         batch_size=r.meta["batch_size"], cos=float(np.mean(c)) if len(c) else math.nan,
                         cos_se=se, n_steps=len(c), status=results[r.name].status))
    return pd.DataFrame(rows)


def noise_summary(results: dict, rs: list) -> pd.DataFrame:
    """Fig. 5: per noise-experiment run, the final training loss (whole training set),
    validation accuracy, parameter norm and distance from theta_0, sigma^2 and v_max, and
    the relative fall of the training loss over the last fifth of the steps (saturation)."""
    rows = []
    for r in rs:
        if r.experiment != "noise" or r.name not in results:
            continue
        res = results[r.name]
        m = res.metrics.dropna(subset=["train_loss"])
        last = m.iloc[-1]
        at80 = m[m["iteration"] <= 0.8 * last["iteration"]].iloc[-1]
        info = (res.info.get("info") or {})
        rows.append(dict(name=r.name, method=r.meta["method"], factor=r.meta["factor"],
                         status=res.status, iteration=int(last["iteration"]),
                         train_loss=float(last["train_loss"]), val_acc=float(last["val_acc"]),
                         param_norm=float(last["param_norm"]), dist_init=float(last["dist_init"]),
                         loss_drop_last_fifth=float(1 - last["train_loss"] / at80["train_loss"]),
                         sigma2=info.get("sigma2", math.nan), v_max=info.get("v_max", math.nan)))
    return pd.DataFrame(rows)


def schedule_frame(results: dict, rs: list) -> pd.DataFrame:
    """Per-epoch rows of the schedule runs with ``schedule``, ``lr``, ``seed``, ``key``."""
    frames = []
    for r in rs:
        if r.experiment == "schedules" and r.name in results:
            m = results[r.name].metrics.copy()
            m["schedule"], m["lr"], m["seed"], m["key"] = (r.meta["schedule"], r.meta["lr"],
                                                          r.meta["seed"], r.config.key())
            frames.append(m)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ----------------------------------------------------------------------------- analysis


def steps_of(res) -> pd.DataFrame:
    """Per interpolated step of a stored run: ``step`` t (theta_t -> theta_{t+1}), its
    1-based ``epoch``, the 11 losses, barrier, height, floor, cos(g_{t-1}, g_t) and
    ||theta_{t+1} - theta_0||."""
    m = res.metrics
    bpe = _bpe(res)
    arr = res.arrays
    L = np.asarray(arr.get("walk_losses", np.zeros((0, len(walk.ALPHAS)))), dtype=float)
    it = np.asarray(arr.get("walk_losses_iteration", []), dtype=int)
    by_it = m.set_index("iteration")
    rows = []
    for i, t1 in enumerate(it):
        r = by_it.loc[t1]
        rows.append(dict(step=int(t1) - 1, epoch=(int(t1) - 1) // bpe + 1, losses=L[i],
                         barrier=r.get("barrier", np.nan), height=r.get("height", np.nan),
                         floor_alpha=r.get("floor_alpha", np.nan),
                         floor_loss=r.get("floor_loss", np.nan), dist=r.get("dist_init", np.nan)))
    df = pd.DataFrame(rows)
    cos = m.dropna(subset=["step_cos"]) if "step_cos" in m else m.iloc[:0]
    cmap = dict(zip(cos["walk_step"].astype(int), cos["step_cos"])) if len(cos) else {}
    if len(df):
        df["cos"] = df["step"].map(cmap)
    return df


def _bpe(res) -> int:
    c = res.config
    if c.full_batch:
        return 1
    return int(c.n_train) // int(c.batch_size)


def step_table(res) -> pd.DataFrame:
    """Interpolated steps of a run without the loss arrays (for tables)."""
    df = steps_of(res)
    return df.drop(columns=["losses"]) if len(df) else df


def mean_se(x) -> tuple[float, float, int]:
    """Mean, standard error (sample std / sqrt(n)) and n of the finite values."""
    v = np.asarray(x, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), se, int(v.size)


def epoch_summary(res) -> pd.DataFrame:
    """Table 1 and 2 per interpolated epoch: steps, barriers crossed, mean height (+ SE),
    fraction of steps whose valley floor lies strictly inside (0 < alpha_min < 1), the mean
    training loss at the steps' start; complete epochs only."""
    df = step_table(res)
    bpe = _bpe(res)
    rows = []
    for e, g in (df.groupby("epoch") if len(df) else []):
        if len(g) < bpe:
            continue
        h, se, n = mean_se(g["height"])
        fin = g["barrier"].dropna()
        inside = g["floor_alpha"].dropna()
        rows.append(dict(epoch=int(e), steps=len(g), barriers=int(fin.sum()),
                         height=h, height_se=se, interior_floor=float(((inside > 0) & (inside < 1)).mean())
                         if len(inside) else math.nan, n_diverged=int(g["barrier"].isna().sum())))
    return pd.DataFrame(rows)


def schedule_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (schedule, lr): final validation/test accuracy mean and SE over seeds; the
    selected lr per schedule is the one of best mean final validation accuracy."""
    last = df.sort_values("iteration").groupby("key").tail(1)
    rows = []
    for (kind, lr), g in last.groupby(["schedule", "lr"]):
        va, va_se, n = mean_se(g["val_acc"])
        te, te_se, _ = mean_se(g["test_acc"])
        rows.append(dict(schedule=kind, lr=lr, n_seeds=n, val_acc=va, val_se=va_se, test_acc=te,
                         test_se=te_se))
    t = pd.DataFrame(rows)
    if len(t):
        best = t.loc[t.groupby("schedule")["val_acc"].idxmax()]
        t["selected"] = t.index.isin(best.index)
    return t


# ----------------------------------------------------------------------------- figures


def plot_walk(axes, steps: pd.DataFrame, title: str = ""):
    """The paper's 3-panel plot (Fig. 1): top, the loss at the 11 interpolation points of
    each step placed at t + alpha, grey lines at the iterations, the valley floor (each
    step's minimum) as a dashed orange line; middle, cos(g_{t-1}, g_t); bottom,
    ||theta_t - theta_0||."""
    ax0, ax1, ax2 = axes
    a = np.asarray(walk.ALPHAS)
    for _, r in steps.iterrows():
        t = r["step"]
        ax0.plot(t + a, r["losses"], "-", color="C0", lw=1.0, marker=".", ms=2.5)
        ax0.axvline(t, color="0.85", lw=0.5, zorder=0)
    fx = steps["step"] + steps["floor_alpha"]
    ax0.plot(fx, steps["floor_loss"], "--", color="C1", lw=1.2, label="valley floor")
    nb = int(np.nansum(steps["barrier"]))
    ax0.set(ylabel=r"training loss $\mathcal{L}(\theta_t^\alpha)$", title=title)
    ax0.legend(fontsize=7, title=f"{nb} barrier(s) crossed", title_fontsize=7)
    ax1.plot(steps["step"], steps["cos"], "-o", ms=2.5, color="C2")
    ax1.axhline(0, color="0.7", lw=0.5)
    ax1.set(ylabel=r"$\cos(g_{t-1}, g_t)$", ylim=(-1.05, 1.05))
    ax2.plot(steps["step"] + 1, steps["dist"], "-o", ms=2.5, color="C3")
    ax2.set(ylabel=r"$\|\theta_t - \theta_0\|_2$", xlabel="iteration $t$")
    return axes
