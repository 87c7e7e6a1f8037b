"""A Walk with SGD: the runs behind notebook 4.

:func:`runs` turns the settings into :class:`WalkRun` objects (a RunConfig plus what it
is for); :func:`run_configs` lists their configurations; :func:`run_all` computes or
loads them through the run store.

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
  ``gd_noise_minibatch``) and SGD for the same number of updates, per seed of the
  block's ``seeds`` (default: the profile's first).
* ``schedules`` (Fig. 6, 27): cyclic (CLR), step and trapezoid schedules over
  equal epoch budgets, each on a grid of peak learning rates, selected on
  validation accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from breakeven_utils.papers.walk.settings import batches_per_epoch, settings, validate
from breakeven_utils.recorder.config import RunConfig
from breakeven_utils.store.runs import load, run_key
from breakeven_utils.store.sweeps import sweep, sweep_env

__all__ = ["WALK_METRICS", "WalkRun", "clr_step_size", "interp_iterations", "runs", "sgd_trajectory_run",
           "run_configs", "run_all"]


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


@dataclass(frozen=True)
class WalkRun:
    """One run of notebook 4: its experiment, a readable name, the config, and its role."""

    experiment: str
    name: str
    config: object
    meta: dict = field(default_factory=dict)


def _cfg(s: dict, fam: dict, **kw):
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
    if base["optimizer"] in ("gd", "gd_noise") and s.get("gd_chunk"):  # full batch, in chunks (paper)
        base["gd_chunk"] = int(s["gd_chunk"])
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
        seeds = [int(x) for x in nz.get("seeds", s["seeds"][:1])]
        bpe = batches_per_epoch(fam)
        for seed in seeds:
            # one seed keeps the names of one run per method; several add the seed
            tag, kw = (f"_s{seed}" if len(seeds) > 1 else ""), dict(common, seed=seed)
            out.append(WalkRun("noise", f"noise_{nz['family']}_gd{tag}", _cfg(s, fam, optimizer="gd", **kw),
                               dict(family=nz["family"], method="GD", factor=0.0, seed=seed)))
            for fct in nz["factors"]:
                out.append(WalkRun("noise", f"noise_{nz['family']}_gd_noise{fct:g}{tag}", _cfg(
                    s, fam, optimizer="gd_noise", noise_factor=float(fct),
                    update_rule="gd_noise_minibatch",
                    rule_kwargs={"noise_batch_size": int(nz["noise_batch_size"]),
                                 "n_batches": int(nz["n_batches"])}, **kw),
                    dict(family=nz["family"], method=f"GD + noise ({fct:g} x max var)", factor=float(fct),
                         seed=seed)))
            out.append(WalkRun("noise", f"noise_{nz['family']}_sgd{tag}", _cfg(
                s, fam, max_epochs=math.ceil(n / bpe), **kw),
                dict(family=nz["family"], method=f"SGD (S={fam['batch_size']})", factor=math.nan, seed=seed)))
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


def clr_step_size(total: int, half_frac: float) -> int:
    """CLR's half cycle (iterations) for a budget of ``total`` iterations: the whole number of
    cycles nearest to a half cycle of ``half_frac`` x the budget, so that the run ends at
    the base learning rate, where the paper reads a cyclic schedule's result (Sec. 5; a
    half cycle of 0.2 x the budget ended every run at the peak learning rate)."""
    cycles = max(1, round(1 / (2 * half_frac)))
    return max(1, total // (2 * cycles))


def _schedule_cfg(s, fam, kind, lr, E, total, sc, seed):
    """Equal budgets of E epochs. CLR (triangular, Smith 2017): base lr/10 <-> lr, whole
    cycles, a half cycle near ``warmup_frac`` of the budget (:func:`clr_step_size`);
    trapezoid: lr/10 -> lr over warmup_frac of the budget, flat, then linear annealing to lr/10 over the rest;
    step: lr, divided by 10 at each of ``step_at`` (fractions of the budget)."""
    bpe = total // E
    at = tuple(range(0, total + 1, bpe))
    common = dict(lr=lr, max_epochs=E, measure_at=at, metrics=("train", "val", "test"),
                  seed=int(seed))
    if kind == "clr":
        return _cfg(s, fam, schedule="cyclic", clr_base_lr=lr / 10,
                    clr_step_size=clr_step_size(total, sc["warmup_frac"]), **common)
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


def run_all(rs: list, store=None, jobs: int | None = None, checkpoint_every: int = 200,
            profile: str | None = None) -> tuple[dict, list]:
    """Run (or load) every WalkRun through the run store; ``({name: RunResult}, failed)``.
    ``jobs`` (None: sweep_env's default for ``profile``) > 1: the sweep's spawn process
    pool (its workers find the walk metrics and rule through the plugin entry points). A
    failed run is reported in ``failed`` (name, error) and left out; a diverged run is
    returned with status 'diverged'."""
    # EXECUTOR=/DEVICE=/JOBS=/THREADS= (environment variables, store.sweeps.sweep_env): a
    # SLURM or Dask executor takes the runs; else a local pool of ``jobs`` processes
    df = sweep([r.config for r in rs], store=store, checkpoint_every=checkpoint_every,
               errors="record", progress=True, **sweep_env(store, jobs=jobs, profile=profile))
    bad = {f["key"]: f["error"] for f in df.attrs.get("failed", [])}
    out, failed = {}, []
    for r in rs:
        k = run_key(r.config)
        if k in bad:
            failed.append((r.name, bad[k]))
        else:
            out[r.name] = load(r.config, store)
    return out, failed
