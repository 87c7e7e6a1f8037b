"""Run first on any new machine with an accelerator (issue 22, item 4): is the GPU usable,
do the estimators give the dense answers on it, what does a `paper` run cost there, and a
plan recalibrated on it.

    make device-check                 # DEVICE=auto: cuda when visible, else the CPU half only
    python scripts/device_check.py --device cuda:1 --iters 200

1. The accelerator: torch's build, CUDA visible, device names and memory.
2. The device-sensitive tests (tests/curvature/test_on_device.py: HVP, top eigenpairs of H,
   K, per-example curvature on the device against dense float64 oracles on the CPU, every
   estimator under ``core.device.device_discipline``; tests/core/test_device.py: every smoke
   run of the five notebooks and a CIFAR-10 run under it) with ``BREAKEVEN_TEST_DEVICE`` set
   to the device: a tensor made without a device or a call mixing devices fails them.
3. Notebook 1's `paper` SimpleCNN run (45,000 CIFAR-10 images, every metric of its
   trajectory: lambda_H^1 on 2,250 examples, K with L = 25, K1 with L = 4,500, ...) for
   ``--iters`` steps on the device, measured at the paper's schedule (every 10 steps), and
   for ``--cpu-iters`` steps with one measurement on the CPU: seconds per step and per
   measurement of each metric on both, and the ratio (what `make plan`'s assumed speed-up
   should be replaced by).
4. The plan's calibration measured again on the device (cached in the run store), so that
   ``make plan PROFILE=paper DEVICE=cuda`` gives GPU hours from these timings.

Without a GPU it says so, runs the CPU half (1-3 on the CPU, a few minutes) and exits 0.
Nothing is written to the run store but the calibration; the runs are not stored.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from breakeven_utils.core.device import device_label, resolve_device  # noqa: E402

TESTS = ("tests/curvature/test_on_device.py", "tests/core/test_device.py")


def accelerator() -> list[str]:
    lines = [f"torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}), "
             f"CUDA visible: {torch.cuda.is_available()}"]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"  cuda:{i}: {p.name}, {p.total_memory / 2**30:.1f} GiB")
    return lines


def run_tests(device: str) -> int:
    env = dict(os.environ, BREAKEVEN_TEST_DEVICE=device)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
    print(f"$ BREAKEVEN_TEST_DEVICE={device} {' '.join(cmd[1:])}", flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def timed_run(device: str, iters: int, every: int | None) -> dict:
    """Notebook 1's first `paper` trajectory for ``iters`` steps on ``device``, measured every
    ``every`` steps (None: once, at the last step); seconds per step and per metric."""
    from breakeven_utils.papers.break_even.runs import run_configs
    from breakeven_utils.recorder import load_run_data, train

    c = run_configs("paper")[0]
    at = tuple(range(0, iters + 1, every)) if every else (iters,)
    c = c.replace(max_iters=iters, target_train_acc=None, acc_thresholds=(), measure_at=at)
    data = load_run_data(c, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = train(c, data=data, device=device, progress=False)
    wall = time.perf_counter() - t0
    n = max(1, len(out.rows))
    per_metric = {k: v / n for k, v in (out.info.get("metric_seconds") or {}).items()}
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.startswith("cuda") else float("nan")
    return {"device": device_label(device), "steps": out.iterations, "measurements": len(out.rows),
            "s/step": (wall - out.measure_seconds) / max(1, out.iterations),
            "s/measurement": out.measure_seconds / n, "per_metric": per_metric, "peak_GiB": peak,
            "model": c.model, "n_train": c.n_train, "hessian_n": c.hessian_n, "K1_L": c.K1_L}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=os.environ.get("BREAKEVEN_DEVICE") or "auto")
    ap.add_argument("--iters", type=int, default=200, help="steps of the paper run on the device")
    ap.add_argument("--cpu-iters", type=int, default=20, help="steps of the same run on the CPU")
    ap.add_argument("--skip-run", action="store_true", help="only the accelerator and the tests")
    args = ap.parse_args(argv)
    print("\n".join(accelerator()))
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    if not gpu:
        print(f"no GPU here (device {args.device!r} -> {device}): the CPU half only")
    status = run_tests(device)
    if status:
        print(f"device-check: the device-sensitive tests FAILED on {device}")
        return status
    if args.skip_run:
        return 0
    rows = [timed_run("cpu", args.cpu_iters, None)]
    if gpu:
        rows.append(timed_run(device, args.iters, 10))
    metrics = sorted({m for r in rows for m in r["per_metric"]})
    head = f"| | {' | '.join(r['device'] for r in rows)}" + (" | CPU / device |" if gpu else " |")
    print(f"\nNotebook 1's paper run ({rows[0]['model']}, {rows[0]['n_train']:,} images, lambda_H on "
          f"{rows[0]['hessian_n']:,}, K1 with L = {rows[0]['K1_L']:,}):\n")
    print(head)
    print("|---" * (len(rows) + 1 + gpu) + "|")
    for name, key in (("steps", "steps"), ("measurements", "measurements"), ("s per step", "s/step"),
                      ("s per measurement", "s/measurement")):
        vals = [r[key] for r in rows]
        ratio = (f" | {vals[0] / vals[1]:.1f}x" if gpu and key.startswith("s/") and vals[1]
                 else (" | " if gpu else ""))
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in vals) + ratio + " |")
    for m in metrics:
        vals = [r["per_metric"].get(m, float("nan")) for r in rows]
        ratio = f" | {vals[0] / vals[1]:.1f}x" if gpu and vals[1] else (" | " if gpu else "")
        print(f"| {m} (s) | " + " | ".join(f"{v:.3g}" for v in vals) + ratio + " |")
    if gpu:
        print(f"\npeak GPU memory of the run: {rows[1]['peak_GiB']:.1f} GiB")
        from breakeven_utils.papers.registry import notebook_runs
        from breakeven_utils.store import plan

        cfgs = list({c.key(): c for v in notebook_runs("paper").values() if not isinstance(v, str)
                     for c in v}.values())
        store = os.environ.get("BREAKEVEN_RUNS") or ROOT / "runs"
        cal = plan.calibrate(cfgs, device, store, recalibrate=True)
        print(f"plan calibrated on {cal['key']} ({cal['path']}): `make plan PROFILE=paper DEVICE={device}` "
              "now prices the paper profile from these timings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
