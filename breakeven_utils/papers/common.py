"""Helpers shared by the paper sections (a section imports this module, never another section).

For the break-even paper (Jastrzebski et al., ICLR 2020), shared by its sections
``break_even`` (Sec. 4.1), ``conjectures`` (Sec. 4.2) and ``batchnorm`` (Sec. 4.3):

- :data:`BREAK_EVEN_PAPER_VALUES`: the numbers and statements of Secs. 3, 4.1, 4.2 and
  App. C that notebooks 1 and 2 compare with, each with its sentence (both notebooks list
  the whole table), read with :func:`paper_value` and :func:`paper_values_table`;
- :class:`Sweep` and :func:`tidy`: a sweep of RunConfigs over one varied parameter and its
  rows of a ``store.sweeps.sweep`` table (notebooks 2 and 3);
- :func:`max_with_se` and :func:`solver_bound`: seed-mean smoothed maxima with their
  standard error, the Lanczos stopping bound standing in for it for lambda_H^1 of one run
  (notebooks 1-3), over the moving-average window :data:`WINDOW`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from breakeven_utils.reporting.claims import (
    Ordering,
    Z,
    compare_peaks,
    mean_se,
    scatter_se,
    smooth,
    smoothed_max,
    transient_end,
)
from breakeven_utils.store.runs import run_key

__all__ = [
    "BREAK_EVEN_PAPER_VALUES", "paper_value", "paper_values_table",
    "VARIED", "Sweep", "tidy", "iteration_schedule",
    "WINDOW", "solver_bound", "max_with_se", "curves_of", "compare_peaks_of", "compare_runs_peaks",
    "break_even_reached",
]

# ----------------------------------------------------------------------------- the paper's numbers

_S41 = "Sec. 4.1"
_S42 = "Sec. 4.2"
#: Every number and statement of the break-even paper that a claims table compares with, with the
#: sentence it comes from (notebook 1: string keys; notebook 2: (sweep, setting, quantity) keys).
BREAK_EVEN_PAPER_VALUES = {
    "corr_K_H": ("correlated before the break-even point",
                 f"{_S41}: 'The key assumption behind our theoretical model is that lambda_K^1 and "
                 "lambda_H^1 are correlated, at least prior to reaching the break-even point. We confirm "
                 "this in Fig. 2.'"),
    "max_smaller_eta": ("larger for the smaller eta",
                        f"{_S41}: 'The highest achieved lambda_K^1 and lambda_H^1 are larger for the smaller "
                        "eta.'"),
    "delta_loss": ("Delta L starts to take negative values as lambda_K^1 reaches its maximum",
                   f"{_S41}: 'In Fig. 2 we observe that training becomes increasingly unstable (Delta L "
                   "starts to take negative values) as lambda_K^1 reaches the maximum value.'"),
    "outliers": ("more outliers for the lower eta",
                 f"{_S41}: 'We observe more outliers for the lower learning rate in the distributions of "
                 "both lambda_K and lambda_H.' (Fig. 3)"),
    "break_even": ("reached earlier and at a smaller lambda_H^1 for the larger eta",
                   "Sec. 3, Theorem 1 (the break-even point: the first LHS of Eq. (1) >= 1)"),
    "fig9": ("strong correlation",
             "App. C: 'Fig. 9 shows a strong correlation between lambda_K^1 computed with M = 1 and with "
             "M = 128, for three different learning rates.'"),
    ("simplecnn_eta", 0.1, "max_lambda_K_1"): (
        0.68, f"{_S42}: 'for SimpleCNN (top row of Fig. 4) we observe max(lambda_K^1) = 0.68 and "
              "max(lambda_K^1) = 3.30 for eta = 0.1 and eta = 0.01, respectively.'"),
    ("simplecnn_eta", 0.01, "max_lambda_K_1"): (
        3.30, f"{_S42}: 'max(lambda_K^1) = 0.68 and max(lambda_K^1) = 3.30 for eta = 0.1 and eta = 0.01'"),
    ("simplecnn_eta", 0.1, "max_lambda_K_ratio"): (
        0.37, f"{_S42}: 'in the case of SimpleCNN max(lambda_K^*/lambda_K^1) = 0.37 and "
              "max(lambda_K^*/lambda_K^1) = 0.24 for eta = 0.1 and eta = 0.01, respectively.'"),
    ("simplecnn_eta", 0.01, "max_lambda_K_ratio"): (
        0.24, f"{_S42}: 'max(lambda_K^*/lambda_K^1) = 0.37 and ... = 0.24 for eta = 0.1 and eta = 0.01'"),
    ("simplecnn_eta", 0.1, "max_lambda_H_1"): (
        26.27, f"{_S42}: 'for SimpleCNN we observe max(lambda_H^1) = 26.27 and max(lambda_H^1) = 211.17 "
               "for eta = 0.1 and eta = 0.01, respectively.'"),
    ("simplecnn_eta", 0.01, "max_lambda_H_1"): (
        211.17, f"{_S42}: 'max(lambda_H^1) = 26.27 and max(lambda_H^1) = 211.17 for eta = 0.1 and 0.01'"),
    ("simplecnn_S", 10, "max_trace_K"): (
        5.56, f"{_S42}: 'In the case of SimpleCNN max(Tr(K)) = 5.56 and max(Tr(K)) = 10.86 for S = 10 and "
              "S = 100, respectively.'"),
    ("simplecnn_S", 100, "max_trace_K"): (
        10.86, f"{_S42}: 'max(Tr(K)) = 5.56 and max(Tr(K)) = 10.86 for S = 10 and S = 100'"),
}


def paper_value(key, default=None, values=BREAK_EVEN_PAPER_VALUES):
    """The paper's value for ``key`` in ``values`` ({key: (value, sentence)}, default
    :data:`BREAK_EVEN_PAPER_VALUES`) without its sentence, else ``default``."""
    return values[key][0] if key in values else default


def paper_values_table(values=BREAK_EVEN_PAPER_VALUES) -> pd.DataFrame:
    """``values`` ({key: (value, sentence)}, default :data:`BREAK_EVEN_PAPER_VALUES`) as a table
    (key, value, source) for the notebooks; a tuple key is joined with ' / '."""
    return pd.DataFrame([{"key": " / ".join(map(str, k)) if isinstance(k, tuple) else k, "value": v,
                          "source": src} for k, (v, src) in values.items()])


# ----------------------------------------------------------------------------- sweeps

#: the parameters a :class:`Sweep` may vary (learning rate eta, batch size S, momentum beta)
VARIED = ("lr", "batch_size", "momentum")


@dataclass
class Sweep:
    """One sweep: ``configs[i]`` trains with ``param`` = ``values[i]`` (per seed)
    (break-even paper Sec. 4.2-4.3: eta, S or beta varied, the rest fixed)."""

    name: str
    label: str
    param: str
    figures: str
    configs: list = field(default_factory=list)
    values: list = field(default_factory=list)
    lambda_H: bool = False
    dataset: str = ""

    def __post_init__(self):
        if self.param not in VARIED:
            raise ValueError(f"param must be one of {VARIED}, got {self.param!r}")
        if len(self.configs) != len(self.values):
            raise ValueError("configs and values differ in length")


def iteration_schedule(total: int, every: int, dense_until: int, late_every: int) -> tuple[int, ...]:
    """Measurement iterations of a run of ``total`` steps, dense where the break-even point
    comes (break-even Sec. 4.1: early, sooner at a large eta): 0 and every ``every`` steps up
    to ``dense_until``, then every ``late_every`` steps, and the last step. In iterations, not
    epochs, so runs compared at equal steps (S varied) are measured at the same iterations."""
    if min(int(total), int(every), int(late_every)) < 1 or int(dense_until) < 0:
        raise ValueError(f"iteration_schedule needs total, every, late_every >= 1 and dense_until >= 0, "
                         f"got {total}, {every}, {dense_until}, {late_every}")
    total, dense_until = int(total), min(int(dense_until), int(total))
    ts = set(range(0, dense_until + 1, int(every))) | set(range(dense_until, total + 1, int(late_every)))
    return tuple(sorted(ts | {total}))


def tidy(df: pd.DataFrame, sw: Sweep) -> pd.DataFrame:
    """Rows of a ``store.sweeps.sweep`` table that belong to ``sw``, with ``sweep`` and ``value`` columns."""
    keys = {run_key(c): v for c, v in zip(sw.configs, sw.values)}
    sub = df[df["key"].isin(keys)].copy()
    sub["value"] = sub["key"].map(keys)
    sub["sweep"] = sw.name
    return sub


# ----------------------------------------------------------------------------- maxima with their SE

#: moving-average window (measurements) of the maxima compared in the claims of notebooks 1 and 2
#: (their curves are drawn with the same window); cpu trajectories hold 10-20 measurements
WINDOW = 3


def solver_bound(runs: pd.DataFrame, col: str, value: float) -> tuple[float, str]:
    """(margin, its kind) standing in for the SE of one run's Hessian eigenvalue ``col``
    (``lambda_H_*``): the Lanczos stopping bound. Every solve stopped at residual
    ||H y - theta y|| <= tol |theta|, so the eigenvalue lies within ``hessian_tol`` x |value|
    (the solver's error only, not averaged down over a smoothing window; the spread of the
    trajectory needs seeds). (NaN, '') for other columns or without ``hessian_tol``."""
    if col.startswith("lambda_H_") and "hessian_tol" in runs and runs["hessian_tol"].notna().all() \
            and len(runs) and np.isfinite(value):
        tol = float(runs["hessian_tol"].max())
        return tol * abs(value), f"Lanczos residual bound (tol {tol:g} x lambda_H^1)"
    return np.nan, ""


def max_with_se(df: pd.DataFrame, col: str, by="lr", window: int = WINDOW, after_transient: bool = False):
    """Per value of ``by``: the seed mean of the smoothed maxima of ``col`` (claims.smoothed_max), its
    standard error and where it comes from, and the seed mean of the raw maxima.

    SE: with several seeds their spread (claims.mean_se); with one seed the SE propagated from the
    per-measurement bootstrap SEs in ``<col>_se`` when the runs recorded them; for a Hessian
    eigenvalue (``lambda_H_*``) without them, the Lanczos stopping bound (:func:`solver_bound`);
    else NaN (the ordering then falls back to a relative margin and says so). Returns a DataFrame
    indexed by ``by`` with max, se, se_kind, raw_max, n_seeds, at_start.
    """
    rows = {}
    for v, g in df.groupby(by, sort=True):
        per_seed = []
        for _, r in g.sort_values("iteration").groupby("seed"):
            x = (pd.to_numeric(r[col], errors="coerce").to_numpy(float) if col in r
                 else np.full(len(r), np.nan))
            se = (pd.to_numeric(r[f"{col}_se"], errors="coerce").to_numpy(float) if f"{col}_se" in r
                  else None)
            per_seed.append(smoothed_max(x, window, after_transient=after_transient, ses=se))
        vals = [m.value for m in per_seed]
        mean, seed_se, n = mean_se(vals)
        if n > 1:
            se, kind = seed_se, f"spread of {n} seeds"
        elif n == 1 and np.isfinite(per_seed[0].se):
            se, kind = per_seed[0].se, "bootstrap over the L gradients"
        elif n == 1:
            se, kind = solver_bound(g, col, mean)
        else:
            se, kind = np.nan, ""
        raw = [m.raw_value for m in per_seed if np.isfinite(m.raw_value)]
        rows[v] = dict(max=mean, se=se, se_kind=kind, raw_max=float(np.mean(raw)) if raw else np.nan,
                       n_seeds=n,
                       at_start=bool(n) and all(m.at_start for m in per_seed if np.isfinite(m.value)))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = by
    return out


def _stack(rows):
    n = max(len(x) for x in rows)
    return np.vstack([np.pad(x, (0, n - len(x)), constant_values=np.nan) for x in rows])


def curves_of(df: pd.DataFrame, col: str, by="lr", order: str = "iteration"):
    """{value of ``by``: ``col`` at each run's measurements in ``order``} from a tidy frame:
    1-D for one seed, seeds x measurements (NaN-padded) for several; and the same mapping
    of ``<col>_se`` when every run recorded per-point standard errors (else None)."""
    curves, ses = {}, {}
    has_se = f"{col}_se" in df
    for v, g in df.groupby(by, sort=True):
        rows, se_rows = [], []
        for _, r in g.sort_values(order).groupby("seed"):
            rows.append(pd.to_numeric(r[col], errors="coerce").to_numpy(float) if col in r
                        else np.full(len(r), np.nan))
            if has_se:
                se_rows.append(pd.to_numeric(r[f"{col}_se"], errors="coerce").to_numpy(float))
        curves[float(v)] = rows[0] if len(rows) == 1 else _stack(rows)
        if has_se:
            ses[float(v)] = se_rows[0] if len(se_rows) == 1 else _stack(se_rows)
    usable = has_se and all(np.isfinite(np.asarray(x)).any() for x in ses.values())
    return curves, (ses if usable else None)


def compare_peaks_of(df: pd.DataFrame, col: str, sign: int, by="lr", *, symbol: str = "",
                     window: int = WINDOW, after_transient: bool = False,
                     labels: dict | None = None) -> Ordering:
    """:func:`reporting.claims.compare_peaks` on ``col`` of a tidy frame of runs varying ``by``.
    Noise (issue 20, item 2): the seed spread with several seeds; else the per-point bootstrap
    SEs ``<col>_se`` (K: over its L gradients); else the scatter of the raw curve about its
    smoothed curve (``ses="scatter"``), for a Hessian eigenvalue at least the Lanczos
    tolerance (neighbouring Lanczos values scatter far more than the solver's tolerance,
    which is only a floor, :func:`solver_bound`)."""
    curves, ses = curves_of(df, col, by)
    if any(np.ndim(c) == 2 for c in curves.values()):
        kw = {}  # several seeds: their spread
    elif ses is not None:
        kw = dict(ses=ses, noise="se: bootstrap over the L gradients")
    else:
        kw = dict(ses="scatter",
                  noise=f"se: scatter of the raw curve about its {window}-point moving average")
        if col.startswith("lambda_H") and "hessian_tol" in df and df["hessian_tol"].notna().all() and len(df):
            tol = float(df["hessian_tol"].max())
            kw.update(floor={v: tol * np.abs(c) for v, c in curves.items()},
                      noise=f"se: scatter of the raw curve about its {window}-point moving average, at "
                            f"least the Lanczos residual bound (tol {tol:g} x lambda_H^1)")
    return compare_peaks(curves, sign, symbol=symbol, window=window, after_transient=after_transient,
                         labels=labels, **kw)


def compare_runs_peaks(runs: dict, col: str, sign: int = +1, *, window: int = WINDOW,
                       after_transient: bool = False) -> Ordering:
    """The peak rule between named runs rather than along a swept value: ``runs`` {label: tidy
    frame of one setting (its seeds)} in the order the claim predicts, ``sign`` +1 for "the
    maximum grows along that order" (e.g. {"SimpleCNN eta=0.01": a, "SimpleCNN-BN eta=1": b}
    for "b's max is larger than a's"). Same noise models as :func:`compare_peaks_of`."""
    if len(runs) < 2:
        raise ValueError(f"compare_runs_peaks needs at least two runs, got {list(runs)}")
    frames = [g.assign(_run=float(i)) for i, g in enumerate(runs.values())]
    labels = {float(i): str(k) for i, k in enumerate(runs)}
    return compare_peaks_of(pd.concat(frames, ignore_index=True), col, sign, "_run", window=window,
                            after_transient=after_transient, labels=labels)


def break_even_reached(run: pd.DataFrame, col: str = "lambda_K_1", *, window: int = WINDOW,
                       order: str = "iteration", after_transient: bool = False) -> tuple[bool, str]:
    """Whether a run went past its break-even point (break-even paper Sec. 3, Fig. 1): its
    smoothed ``col`` (lambda_K^1) falls after its maximum (the first, shared measurement left
    out) by more than claims.Z combined standard errors (the ``<col>_se`` bootstrap, else
    the curve's scatter) by the last measurement, in every seed. A claim about a trajectory
    up to and past that point is not testable on a run that stops before it.
    ``after_transient``: the maximum is sought after the initial transient
    (``reporting.claims.transient_end``): with BatchNorm lambda_K^1 starts high and decays
    first (Sec. 4.3), a fall that is not the break-even point. Returns (reached, what was
    measured)."""
    if not len(run) or col not in run:
        return False, "not measured"
    if "status" in run and (run["status"] == "diverged").any():
        return False, "diverged"
    whys, ok = [], True
    for _, r in run.sort_values(order).groupby("seed"):
        x = pd.to_numeric(r[col], errors="coerce").to_numpy(float)
        e = (pd.to_numeric(r[f"{col}_se"], errors="coerce").to_numpy(float) if f"{col}_se" in r
             else np.full(x.shape, np.nan))
        it = r[order].to_numpy(float)
        fin = np.isfinite(x)
        x, e, it = x[fin], e[fin], it[fin]
        if x.size < 3:
            return False, f"{x.size} measurements"
        if not np.isfinite(e).any():
            e = scatter_se(x, window)
        sm = smooth(x, window)
        start = max(1, transient_end(x, window)) if after_transient else 1
        last = int(np.flatnonzero(np.isfinite(sm))[-1])
        start = min(start, last)
        k = start + int(np.nanargmax(sm[start:]))
        margin = Z * float(np.sqrt(np.nansum([e[k] ** 2, e[last] ** 2]) / window))
        fell = k < last and sm[k] - sm[last] > margin
        ok &= fell
        whys.append(f"smoothed max {sm[k]:.3g} at iteration {it[k]:g}"
                    + (f" (after the initial transient, which ends at iteration {it[start]:g})"
                       if after_transient and start > 1 else "")
                    + f", {sm[last]:.3g} at the last "
                    f"measurement (iteration {it[last]:g}): "
                    + ("falls beyond the noise" if fell
                       else f"no fall beyond the noise ({Z:g} se = {margin:.3g})"))
    return ok, "; ".join(whys)
