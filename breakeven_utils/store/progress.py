"""Progress of a sweep: "run i of n" and the time left, from the cost plan (Issue 12).

:class:`SweepProgress` is the bar ``store.sweeps.sweep`` shows over its runs. Its time left
comes from the cost model of ``breakeven_utils.store.plan`` rather than from the rate of
completed runs (runs of one sweep differ in cost by orders of magnitude):

* every run to compute gets its estimated seconds from ``plan.run_cost`` with the
  calibration cached in the run store (``make plan`` writes it), else from a quick
  calibration of the sweep's shapes (a few seconds; skipped for sweeps on synthetic
  data, whose runs take seconds, for remote executors and with
  ``BREAKEVEN_SWEEP_ETA=count``), else every run counts as one unit;
* :func:`eta_seconds`: time left = (estimated seconds of the runs left) x (measured /
  estimated seconds of the runs this sweep computed so far) / (parallel jobs), so the
  estimate corrects itself as runs finish (with unit weights: the measured mean per run);
* one line per completed run (run i of n, key, status, measured compute seconds and the
  estimate, time left), written with the bar and, inside a Jupyter kernel, also to the
  kernel's own stderr: ``make reproduce`` (papermill) shows it in its terminal and log.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

from breakeven_utils.core.console import tqdm, write
from breakeven_utils.store import plan
from breakeven_utils.store.plan import format_seconds
from breakeven_utils.store.runs import read_status

__all__ = ["SweepProgress", "eta_seconds", "sweep_estimates", "MIN_MEASURED", "RATIO_CAP"]

#: until this many runs of a sweep are measured, their measured / estimated ratio rescales the
#: time left by at most RATIO_CAP either way (issue 21: a first run 190x its estimate turned a
#: 3-minute sweep into "about 11.2 h")
MIN_MEASURED, RATIO_CAP = 3, 3.0


def eta_seconds(estimates: dict, done: set, measured: dict, jobs: int = 1) -> float:
    """Wall seconds left for the runs of ``estimates`` ({key: estimated seconds}, the runs
    the sweep computes) not in ``done``.

    ``measured``: {key: measured compute seconds} of the done runs that were computed (a
    failed or unmeasured run is left out). Remaining estimate x sum(measured) / sum(their
    estimates) (clipped to [1/RATIO_CAP, RATIO_CAP] until MIN_MEASURED runs are measured), on
    min(jobs, runs left) workers (``plan.makespan``: each run to the first free worker, in
    order). Estimates that are missing or not finite make every run count 1 (the ratio is
    then the measured mean per run). NaN while no run has been measured and no estimate
    exists; 0 when nothing is left."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    left = [k for k in estimates if k not in done]
    if not left:
        return 0.0
    est = dict(estimates)
    known = all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in est.values())
    if not known:
        est = {k: 1.0 for k in est}
    pairs = [(measured[k], est[k]) for k in measured if k in est and math.isfinite(measured[k])]
    if pairs and sum(e for _, e in pairs) > 0:
        ratio = sum(m for m, _ in pairs) / sum(e for _, e in pairs)
    elif known:
        ratio = 1.0
    else:
        return float("nan")
    if known and len(pairs) < MIN_MEASURED:  # one surprising run must not scale the whole sweep by 100x
        ratio = min(max(ratio, 1 / RATIO_CAP), RATIO_CAP)
    return ratio * plan.makespan([est[k] for k in left], min(jobs, len(left)))


def sweep_estimates(configs, device: str, store, *, threads: int | None = None,
                    measure: bool = True) -> tuple[dict, str] | None:
    """({key: estimated seconds}, source) of ``configs`` run with ``threads`` torch threads
    on ``device``: from the calibration cached in the run store when it covers them
    (source 'cached'), else, with ``measure``, from a calibration of their shapes now
    (cached for the next sweep; 'measured now'); None when neither is possible."""
    prev = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # the device key names the thread count
    try:
        cal = plan.calibrate(configs, device, store, progress=False, cached_only=True)
        source = "cached"
        if cal is None and measure:
            cal, source = plan.calibrate(configs, device, store, progress=False), "measured now"
        if cal is None:
            return None
        return {c.key(): plan.run_cost(c, cal)["total"] for c in configs}, source
    finally:
        torch.set_num_threads(prev)


def _status(root: Path, key: str) -> dict:
    return read_status(root, key) or {}


def _fmt(t) -> str:
    """Seconds as plan.format_seconds, with a decimal below 10 s ('?' if unknown)."""
    if t is None or not math.isfinite(t):
        return "?"
    return f"{t:.1f} s" if t < 10 else format_seconds(t)


class SweepProgress:
    """The progress of ``store.sweeps.sweep`` over ``configs`` ({key: RunConfig}) in store
    ``root``: a tqdm bar "run i of n" whose postfix is the time left, and one printed
    line per completed run (:meth:`done`). ``estimates``: {key: seconds} to use instead
    of the cost plan (tests); ``progress=False``: silent."""

    def __init__(self, configs: dict, root, *, jobs: int | None = None, progress: bool = True,
                 device: str = "cpu", threads: int | None = None, remote: bool = False,
                 estimates: dict | None = None):

        self.root, self.n, self.i = Path(root), len(configs), 0
        self.progress, self.jobs = progress, max(1, int(jobs or 1))
        stored = {k for k in configs if _status(self.root, k).get("status") in ("done", "diverged")}
        todo = {k: c for k, c in configs.items() if k not in stored}
        self.source = "given"
        if estimates is None:
            estimates, self.source = self._estimates(todo, device, threads, remote)
        self.estimates = {k: float(estimates.get(k, math.nan)) if estimates else math.nan for k in todo}
        self.done_keys: set = set()
        self.measured: dict = {}
        self.bar = tqdm(total=self.n, disable=not progress, desc="sweep", dynamic_ncols=True,
                        bar_format="{desc}: run {n_fmt} of {total_fmt} |{bar}| {elapsed}{postfix}")
        if progress and todo:
            eta = eta_seconds(self.estimates, set(), {}, self.jobs)
            self._emit(f"sweep: {self.n} runs ({len(stored)} in the store), {len(todo)} to compute"
                       + (f", about {_fmt(eta)} with {self.jobs} job(s) (cost plan, calibration "
                          f"{self.source})" if math.isfinite(eta) else f" (no cost estimate: {self.source})"))
            self._postfix(eta)

    def _estimates(self, todo: dict, device: str, threads, remote: bool):
        if not todo or not self.progress:
            return None, "not needed"
        measure = not remote and os.environ.get("BREAKEVEN_SWEEP_ETA", "plan") != "count" and not all(
            c.dataset == "synthetic" for c in todo.values())
        try:
            got = sweep_estimates(list(todo.values()), "cpu" if remote else device, self.root,
                                  threads=threads, measure=measure)
        except Exception as e:  # noqa: BLE001 -- an estimate must never stop a sweep
            return None, f"calibration failed ({type(e).__name__}: {e}); time left from the runs' mean"
        if got is None:
            return None, "none cached; time left from the runs' mean"
        return got

    def _postfix(self, eta: float) -> None:
        self.bar.set_postfix_str(f"about {_fmt(eta)} left" if math.isfinite(eta) else "time left: ?",
                                 refresh=True)

    def _emit(self, line: str) -> None:

        write(line)
        # inside a Jupyter kernel sys.stderr is the cell's stream; the kernel process's own
        # stderr is papermill's (make reproduce's) terminal and log
        if "ipykernel" in sys.modules and sys.__stderr__ is not None and sys.stderr is not sys.__stderr__:
            print(line, file=sys.__stderr__, flush=True)

    def done(self, key: str, report: dict) -> None:
        """Run ``key`` completed with ``report`` ({'status', 'error'} of ``runs.run_job``)."""
        self.i += 1
        self.done_keys.add(key)
        status = report.get("status")
        st = _status(self.root, key) if key in self.estimates and status != "failed" else {}
        if st.get("seconds") is not None:
            self.measured[key] = float(st["seconds"])
        eta = eta_seconds(self.estimates, self.done_keys, self.measured, self.jobs) if self.estimates else 0.0
        self.bar.update(1)
        self._postfix(eta)
        if not self.progress:
            return
        head = f"sweep: run {self.i} of {self.n} ({key[:10]})"
        if key not in self.estimates:
            what = "loaded from the store"
        elif status == "failed":
            what = f"failed: {str(report.get('error'))[:200]}"
        else:
            est = self.estimates[key]
            what = (f"{status} in {_fmt(self.measured.get(key))} compute (estimated "
                    f"{_fmt(est) if math.isfinite(est) else '?'})")
        left, to_compute = self.n - self.i, len(set(self.estimates) - self.done_keys)
        self._emit(f"{head} {what}" + ("; sweep done" if not left else f"; {left} left, about {_fmt(eta)}"
                                       if to_compute else f"; {left} left, in the store"))

    def close(self) -> None:
        self.bar.close()
