"""Preflight of a profile (issue 22): every run the notebooks would launch is built and checked,
and every code path its training and measuring take is executed, before any GPU time is spent.

First stage (:func:`preflight`, :func:`report`).
Per run: its configuration validated (``RunConfig.validate``; the registry has already checked
it against its data set's sizes, ``store.plan.check_config``), its model built for its data's
input shape (``recorder.loop.build_run_model``), and one forward and backward pass of its first
training batch (the first ``gd_chunk`` of a full-batch run, at most :data:`MAX_PASS` examples: a
larger pass is flagged), which must give a finite loss and a
finite gradient for every trainable parameter. A data set not on disk (``store.plan.on_disk``)
is stood in for by random data of the same shape and number of classes, and the report says so.
Runs are grouped by signature (model, data set, update rule, schedule, metrics): the distinct
code paths their training and measuring take. Nothing is shrunk here: the data, models and
batches are the profile's own.

Second stage (:func:`execute`, :func:`execution_report`): one run per signature (the largest of
its runs; runs that start from another run's state form their own group) is executed at full
size, cut to its first ``store.truncation.PREFLIGHT_STEPS`` steps and measured at 0 and after them by the one
rule of :func:`truncate` (nothing but steps changes: data sets, models, measurement sets, metrics,
rules, schedules and seeds are the profile's), each in a fresh process on the CPU, every one of
its metrics measured twice. A run that starts from another run's state (``init_from``) starts from its parent
cut by the same rule. Recorded per signature: ok or the error, seconds per step and per
measurement (and the slowest metric's), and the process's peak resident memory (``VmHWM``)
against its memory before the run: the run's own memory, the GPU memory it needs, is the
difference (data, model, activations, Krylov bases; the CPU-only libraries stay behind).

Third stage (:func:`materialise`, :func:`notebooks_report`; executed by scripts/preflight.py):
every run of a notebook present in the store, truncated, so the notebook executes at the profile
on them; a data set of its that is not on disk reaches it as random files of the set's shape in a
temporary data root (:func:`stand_in_root`).
"""
from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import resource
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from breakeven_utils.core.console import tqdm
from breakeven_utils.core.data import DATASETS, BatchIterator, Data, Split, data_root
from breakeven_utils.core.io import atomic_write_text
from breakeven_utils.core.tables import to_markdown
from breakeven_utils.recorder import RunConfig
from breakeven_utils.recorder.loop import build_run_model, load_run_data
from breakeven_utils.store.plan import calibrate, format_seconds, on_disk, run_cost
from breakeven_utils.store.runs import copy_run, discard, read_status, run
from breakeven_utils.store.truncation import PREFLIGHT_STEPS, truncate

__all__ = ["MAX_PASS", "INPUT_SHAPES", "RunCheck", "signature", "first_batch",
           "check_run", "preflight", "report", "groups", "stand_in_data", "execute_one",
           "estimates", "measured", "execute", "resumable", "per_notebook", "execution_report",
           "save_results", "load_results", "CUDA_CONTEXT_GB",
           "group_of", "IDX_FOLDERS", "stand_in_root", "SCALE_MIN_ESTIMATE_S", "estimate_scale",
           "memory_plan", "memory_tables", "auto_jobs", "materialise", "notebooks_report"]

#: the largest full-batch pass checked (the first this many examples of a chunk); a run whose
#: full-batch gradient goes over more of its training set in one pass (``gd_chunk`` unset) is flagged
MAX_PASS = 1024

#: the input shape of one example of each data set (what a stand-in for a missing one draws)
INPUT_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "fashion_mnist": (1, 28, 28),
                "mnist": (1, 28, 28), "synthetic": (3, 8, 8)}


#: the data sets torchvision reads from idx files (``<root>/<folder>/raw/*-ubyte``), by folder:
#: random files of the right shape load as they are, so a notebook can be executed on a stand-in
#: (CIFAR's pickles cannot be stood in for: torchvision checks their md5)
IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


@dataclass(frozen=True)
class RunCheck:
    """The preflight of one run: ``ok`` or the ``error`` that stopped it, and what it used."""

    notebook: str
    key: str
    signature: str
    model: str
    data: str
    data_source: str  # "on disk" | "stand-in (not on disk)"
    batch: int
    parameters: int
    ok: bool
    error: str
    seconds: float
    note: str = ""


def signature(c: RunConfig) -> str:
    """The code path of a run: model, data set, update rule, schedule and metrics."""
    return f"{c.model} | {c.dataset} | {c.rule_name} | {c.schedule} | {','.join(c.metrics)}"


def first_batch(c: RunConfig, cache: dict) -> tuple[torch.Tensor, torch.Tensor, int, str]:
    """``(x, y, num_classes, source)``: the first training batch of ``c`` (the first ``gd_chunk``
    examples of a full-batch run) from its data set, or a random stand-in of the same shape when
    the data set is not on disk. ``cache`` holds loaded data sets between calls."""
    n = min((c.gd_chunk or c.n_train) if c.full_batch else c.batch_size, MAX_PASS)
    if not on_disk(c.dataset):
        g = torch.Generator().manual_seed(c.seed)
        k = DATASETS[c.dataset].num_classes
        x = torch.randn((min(n, c.n_train), *INPUT_SHAPES[c.dataset]), generator=g, device="cpu")
        return x, torch.randint(0, k, (len(x),), generator=g, device="cpu"), k, "stand-in (not on disk)"
    key = (c.dataset, c.n_train, c.n_val, c.n_test, c.n_measure, c.data_seed, c.normalize)
    if key not in cache:
        cache.clear()  # one data set in memory at a time
        cache[key] = load_run_data(c)
    data = cache[key]
    batches = BatchIterator(data.train, min(n, len(data.train)), seed=c.seed, augment=c.augment,
                            shuffle=not c.full_batch, drop_last=True)
    x, y = next(iter(batches.epoch(0)))
    return x, y, data.num_classes, "on disk"


def check_run(notebook: str, c: RunConfig, cache: dict) -> RunCheck:
    """The preflight of one run (see the module's docstring); an exception is recorded, not raised."""
    t0 = time.perf_counter()
    source, n_params, batch, note = "", 0, 0, ""
    try:
        c.validate()
        x, y, k, source = first_batch(c, cache)
        batch = len(x)
        if c.full_batch and c.gd_chunk is None and c.n_train > MAX_PASS:
            note = (f"full-batch gradient over {c.n_train:,} examples in one pass (gd_chunk unset): checked "
                    f"on the first {batch}; the pass keeps the activations of all of them (about "
                    f"{c.n_train / batch:.0f}x this batch's memory)")
        # build_run_model reads the training inputs' shape and the number of classes of its data
        model = build_run_model(c, SimpleNamespace(train=SimpleNamespace(x=x), num_classes=k), "cpu")
        params = [p for p in model.parameters() if p.requires_grad]
        n_params = sum(p.numel() for p in params)
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the first batch's loss is {float(loss)}")
        loss.backward()
        missing = [i for i, p in enumerate(params) if p.grad is None or not torch.isfinite(p.grad).all()]
        if missing:
            raise FloatingPointError(f"{len(missing)} of {len(params)} parameters got no finite gradient")
        ok, error = True, ""
    except Exception as e:  # noqa: BLE001 -- recorded in the report; the preflight goes on
        ok, error = False, f"{type(e).__name__}: {e}".splitlines()[0][:300] + \
            f" ({traceback.extract_tb(e.__traceback__)[-1].name})"
    return RunCheck(notebook, c.key()[:10], signature(c), c.model, c.dataset, source, batch, n_params, ok,
                    error, round(time.perf_counter() - t0, 2), note)


def preflight(runs: dict, progress: bool = True) -> pd.DataFrame:
    """One :class:`RunCheck` row per run of ``runs`` ({notebook: [RunConfig, ...] or a reason it
    has none}: ``papers.registry.notebook_runs``), in order; a run shared by two notebooks is
    checked once and listed under the first."""
    todo, seen = [], set()
    for nb, cfgs in runs.items():
        if isinstance(cfgs, str):
            continue
        for c in cfgs:
            if c.key() not in seen:
                seen.add(c.key())
                todo.append((nb, c))
    todo.sort(key=lambda t: (t[1].dataset, t[1].n_train, t[1].n_measure))  # load each data set once
    cache: dict = {}
    rows = [asdict(check_run(nb, c, cache))
            for nb, c in tqdm(todo, desc="preflight: runs", disable=not progress, leave=False)]
    return pd.DataFrame(rows, columns=[f for f in RunCheck.__dataclass_fields__])


def report(df: pd.DataFrame, profile: str, seconds: float) -> str:
    """The preflight as Markdown: totals, failures with their errors, data stand-ins, and one row
    per signature."""
    bad = df[~df["ok"]]
    lines = [f"# Preflight, first stage: profile {profile!r}", "",
             f"{len(df)} runs built and checked in {seconds:.0f} s: {int(df['ok'].sum())} ok, "
             f"{len(bad)} failed; "
             f"{df['signature'].nunique()} signatures (model | data | update rule | schedule | metrics).", ""]
    stand = df[df["data_source"].str.startswith("stand-in")]
    if len(stand):
        lines += ["Data sets not on disk, checked on random stand-ins of the same shape: "
                  + ", ".join(f"{d} ({n} runs)" for d, n in stand["data"].value_counts().items()), ""]
    if len(bad):
        lines += ["## Failures", "", to_markdown(bad[["notebook", "key", "signature", "error"]]), ""]
    warn = df[df["note"] != ""]
    if len(warn):
        lines += ["## Warnings", "", to_markdown(warn[["notebook", "key", "signature", "note"]]), ""]
    sig = df.groupby("signature", sort=False).agg(
        runs=("key", "size"), ok=("ok", "sum"), notebooks=("notebook", lambda s: ", ".join(dict.fromkeys(s))),
        batch=("batch", "max"), parameters=("parameters", "max"), seconds=("seconds", "max")).reset_index()
    lines += ["## Signatures", "", to_markdown(sig), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- second stage

def _size(c: RunConfig) -> tuple:
    """What makes a run of a signature the largest: its measurement sets, then its batches."""
    return (c.hessian_n or c.n_measure or 0, c.n_measure or 0, c.K_L if "K" in c.metrics else 0,
            c.batch_size, c.n_train or 0, c.hessian_k, c.max_iters or 0)


def group_of(c: RunConfig) -> str:
    """The second stage's group of a run: its signature, apart for runs from a parent's state."""
    return signature(c) + (" | from a parent run" if c.init_from is not None else "")


def groups(runs: dict) -> list[dict]:
    """The second stage's groups of ``runs`` ({notebook: [RunConfig, ...] or a reason}): one per
    signature, and one per signature of the runs that start from another run's state; each
    ``{"group", "notebooks", "runs", "config"}`` with the group's largest run (:func:`_size`)."""
    out: dict[str, dict] = {}
    seen = set()
    for nb, cfgs in runs.items():
        if isinstance(cfgs, str):
            continue
        for c in cfgs:
            if c.key() in seen:
                continue
            seen.add(c.key())
            g = group_of(c)
            e = out.setdefault(g, {"group": g, "notebooks": [], "runs": 0, "config": c})
            e["runs"] += 1
            if nb not in e["notebooks"]:
                e["notebooks"].append(nb)
            if _size(c) > _size(e["config"]):
                e["config"] = c
    return list(out.values())


def stand_in_data(c: RunConfig) -> Data:
    """Random data of ``c``'s data set's shape, classes and split sizes (its defaults where ``c``
    leaves them unset), for a data set that is not on disk."""
    info = DATASETS[c.dataset]
    n_train = c.n_train or info.n_train_total - info.n_val_default
    n_val = c.n_val if c.n_val is not None else info.n_val_default
    n_test = c.n_test if c.n_test is not None else 10_000
    n_measure = c.n_measure if c.n_measure is not None else max(1, math.ceil(0.05 * n_train))
    g = torch.Generator().manual_seed(c.data_seed)

    def split(n):
        return Split(torch.randn((n, *INPUT_SHAPES[c.dataset]), generator=g, device="cpu"),
                     torch.randint(0, info.num_classes, (n,), generator=g, device="cpu"))
    train = split(n_train)
    return Data(name=c.dataset, source="synthetic", label=f"{info.title} (random stand-in)",
                num_classes=info.num_classes, train=train, val=split(n_val), test=split(n_test),
                measure=Split(train.x[:n_measure], train.y[:n_measure]))


def _write_idx(path: Path, a: np.ndarray) -> None:
    """``a`` (uint8) as an idx file: zero, zero, type 0x08 (ubyte), the number of dimensions, then
    each dimension as a big-endian int32 and the bytes (the layout torchvision's MNIST reads)."""
    header = bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, dtype=">i4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(a, dtype=np.uint8).tobytes())


@contextlib.contextmanager
def stand_in_root(names, root=None, seed: int = 0):
    """A temporary data root for executing a notebook while the data sets ``names`` are not on
    disk: every entry of the data root (``core.data.data_root(root)``) linked, and random images
    and labels of each set in ``names`` written in torchvision's idx layout at its full size
    (60,000 training and 10,000 test examples), which ``core.data.load_data`` then reads as it
    would the real files. The decoded-data cache is a folder of its own with the real caches
    linked, so a stand-in's cache never lands beside the real data. Removed on exit. Raises
    ValueError for a set that has no idx layout (:data:`IDX_FOLDERS`)."""
    names = sorted(set(names))
    bad = [n for n in names if n not in IDX_FOLDERS]
    if bad:
        raise ValueError(f"no stand-in data root for {', '.join(bad)}: only the idx-layout sets "
                         f"({', '.join(IDX_FOLDERS)}) can be stood in for by files")
    real = data_root(root)
    g = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="preflight_data_") as tmp:
        base = Path(tmp)
        cache = base / "breakeven_cache"
        cache.mkdir()
        for entry in sorted(real.iterdir()) if real.is_dir() else []:
            if entry.name == cache.name:
                for f in sorted(entry.iterdir()):
                    if not any(f.name.startswith(f"{n}-") for n in names):
                        (cache / f.name).symlink_to(f.resolve())
            elif entry.name not in {IDX_FOLDERS[n] for n in names}:
                (base / entry.name).symlink_to(entry.resolve())
        for n in names:
            raw = base / IDX_FOLDERS[n] / "raw"
            raw.mkdir(parents=True)
            k, shape = DATASETS[n].num_classes, INPUT_SHAPES[n][1:]
            for part, size in (("train", DATASETS[n].n_train_total), ("t10k", 10_000)):
                images = g.integers(0, 256, (size, *shape), dtype=np.uint8)
                _write_idx(raw / f"{part}-images-idx3-ubyte", images)
                _write_idx(raw / f"{part}-labels-idx1-ubyte", g.integers(0, k, size, dtype=np.uint8))
        yield base


def _memory_mb(field: str) -> float:
    """This process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), MB, from
    /proc/self/status: unlike ``ru_maxrss``, which a spawned process inherits from the parent
    it was forked from (the first stage's data sets), ``VmHWM`` starts anew at the exec. Where
    there is no /proc: ``ru_maxrss`` for both."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def execute_one(config_dict: dict, root: str, threads: int, stand_in: bool) -> dict:
    """Run one truncated configuration into the store ``root`` on the CPU (meant for a fresh
    process: the peak memory is then the run's). Never raises: an error is returned."""
    torch.set_num_threads(threads)
    c = RunConfig.from_dict(config_dict)
    data = stand_in_data(c) if stand_in else None
    rss0, t0 = _memory_mb("VmRSS"), time.perf_counter()
    out = {"ok": False, "error": "", "status": ""}
    stamps: list[float] = []  # after every step: their differences are the steps' own time
    try:
        res = run(c, root, device="cpu", checkpoint_every=None, progress=False, data=data,
                  hooks=[lambda info: stamps.append(time.perf_counter())])
        out["status"] = res.status
        out["ok"] = res.status == "done"
        if not out["ok"]:
            out["error"] = f"run {res.status} at iteration {res.diverged_at}"
    except Exception as e:  # noqa: BLE001 -- recorded in the report; the preflight goes on
        out["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300] + \
            f" ({traceback.extract_tb(e.__traceback__)[-1].name})"
    st = read_status(root, c.key()) or {}
    info = st.get("info") or {}
    n_meas = int(st.get("n_measurements") or 0)
    iters = int(st.get("iteration") or 0)
    seconds, meas = float(st.get("seconds") or math.nan), float(st.get("measure_seconds") or math.nan)
    slow = max((info.get("metric_seconds") or {}).items(), key=lambda kv: kv[1], default=("", math.nan))
    # the fastest interval between two steps' hooks: a step without the warm-up of the first or
    # the measurement after the last
    diffs = np.diff(stamps)
    step = float(diffs.min()) if len(diffs) else ((seconds - meas) / iters if iters else math.nan)
    return {**out, "iterations": iters, "measurements": n_meas, "s_per_step": step,
            "end_s": max(0.0, seconds - meas - step * iters) if iters else math.nan,
            "s_per_measurement": meas / n_meas if n_meas else math.nan,
            "slowest_metric": slow[0], "slowest_metric_s": slow[1] / n_meas if n_meas else math.nan,
            "start_mb": round(rss0), "peak_mb": round(_memory_mb("VmHWM")),
            "wall_s": time.perf_counter() - t0}


def estimates(configs: list, store, progress: bool = False) -> list[float]:
    """Estimated seconds of each truncated run of ``configs`` (with its truncated parents', for a run
    that starts from one, up to the first parent already done in ``store``: that one is copied, not
    run) by the plan's cost model (``store.plan.run_cost``; the CPU's primitives calibrated once
    and cached in ``store``); NaN where a run cannot be costed. How far the full-size runs at ``paper`` were
    from these: docs/reproducing.md, "Checked by the preflight"."""
    chain = []
    for c in configs:
        cs = [c]
        while cs[-1].init_from is not None:
            parent = RunConfig.from_dict(cs[-1].init_from["config"])
            if (read_status(store, parent.key()) or {}).get("status") == "done":
                break
            cs.append(parent)
        chain.append(cs)
    try:
        cal = calibrate([c for cs in chain for c in cs], "cpu", store, progress=progress)
    except Exception:  # noqa: BLE001 -- no estimates: the groups keep their order, the budget its deadline
        return [math.nan] * len(configs)
    out = []
    for cs in chain:
        try:
            out.append(float(sum(run_cost(c, cal)["total"] for c in cs)))
        except Exception:  # noqa: BLE001 -- this one is not costed
            out.append(math.nan)
    return out


#: estimates shorter than this are left out of :func:`estimate_scale` (starting the process and
#: loading the data dominate them)
SCALE_MIN_ESTIMATE_S = 300.0


def estimate_scale(rows) -> float:
    """What the plan's estimates are scaled by for the budget and the time left: the median
    measured / estimated wall time of the signatures executed without error whose estimate is at
    least :data:`SCALE_MIN_ESTIMATE_S`, and at least 1 (1 when there are none); the ratios measured
    at ``paper``: docs/reproducing.md, "Checked by the preflight"."""
    ratios = [r["wall_s"] / r["estimated_s"] for r in rows
              if r.get("ok") and not r.get("skipped")
              and isinstance(r.get("wall_s"), (int, float)) and isinstance(r.get("estimated_s"), (int, float))
              and math.isfinite(r["wall_s"]) and math.isfinite(r["estimated_s"])
              and r["estimated_s"] >= SCALE_MIN_ESTIMATE_S]
    return max(1.0, float(np.median(ratios))) if ratios else 1.0


def measured(earlier: dict | None, rows: list) -> list:
    """The signatures executed so far, each once: ``earlier``'s rows ({group: row}) and this
    call's, a group executed again counting by its new row; the rows :func:`estimate_scale` reads."""
    return list({**(earlier or {}), **{r["group"]: r for r in rows if not r.get("resumed")}}.values())


def execute(runs: dict, store, *, steps: int = PREFLIGHT_STEPS, threads: int = 2,
            progress: bool = True, on_row=None, earlier: dict | None = None,
            deadline: float | None = None) -> pd.DataFrame:
    """The second stage on ``runs`` ({notebook: [RunConfig, ...] or a reason}): each group's
    largest run (:func:`groups`) cut by :func:`truncate` and run into ``store`` in a fresh
    process (:func:`execute_one`), one after the other; one row per group, each also passed to
    ``on_row`` as it is done (a long preflight keeps what it measured if it is stopped).

    Order: the groups' truncated runs cheapest first by the plan's estimates (:func:`estimates`,
    kept in each row as ``estimated_s``; a resumed row keeps the one it was measured against),
    so a sitting with a budget covers the most code paths.
    Resuming: ``earlier`` ({group: row}, what :func:`save_results` kept) gives the row of a group
    already executed without error into ``store`` (same truncated run, done there), which is
    not run again (``resumed`` True). ``deadline`` (a ``time.perf_counter()`` value): a group is
    not started after it, nor when its estimate, scaled by :func:`estimate_scale` of the
    signatures executed so far (``earlier``'s and this call's), runs past it (``skipped`` True,
    not a failure; run again with ``earlier``)."""
    rows, earlier = [], earlier or {}
    todo = groups(runs)
    cut = [truncate(g["config"], steps) for g in todo]
    est = estimates(cut, store, progress=progress)
    order = sorted(range(len(todo)), key=lambda i: math.inf if math.isnan(est[i]) else est[i])
    source = ["on disk" if on_disk(c.dataset) else "stand-in (not on disk)" for c in cut]
    resumed = {i for i in order if resumable(earlier.get(todo[i]["group"]), cut[i], source[i], store)}
    # the bar counts the plan's estimated seconds of the signatures to run, so its rate is measured
    # over estimated / wall seconds and its time left is the estimates left at that rate (a count
    # of signatures, resumed ones instant and the cheapest first, read minutes for hours)
    to_run = sum(est[i] for i in order if i not in resumed and not math.isnan(est[i]))
    bar = tqdm(total=round(to_run), unit="s", unit_scale=True,
               desc="preflight: signatures, estimated seconds done", disable=not progress, leave=False)
    ctx = multiprocessing.get_context("spawn")
    scale = estimate_scale(measured(earlier, rows))  # changes only when a signature is executed
    for n, i in enumerate(order):
        g, c, cost = todo[i], cut[i], est[i]
        stand_in = source[i] != "on disk"
        if i in resumed:
            # its own estimate kept: the one its wall time was measured against (a parent then
            # run in its process was charged; now stored, it is not)
            rows.append({"estimated_s": cost, **earlier[g["group"]], "runs": g["runs"],
                         "notebooks": ", ".join(g["notebooks"]), "resumed": True, "skipped": False})
            continue
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and (left <= 0 or cost * scale > left):
            why = ("the time budget ran out" if left <= 0 else
                   f"estimated {format_seconds(cost)}"
                   + (f" ({format_seconds(cost * scale)} at the {scale:.1f}x measured so far)"
                      if scale > 1 else "")
                   + f", more than the {format_seconds(left)} left of the budget")
            rows.append({"group": g["group"], "notebooks": ", ".join(g["notebooks"]), "runs": g["runs"],
                         "key": c.key()[:10], "ok": False, "skipped": True, "resumed": False,
                         "estimated_s": cost, "error": f"not run: {why} (run again with --resume)"})
            if not math.isnan(cost):   # not run in this call: not part of its time left
                bar.total = max(bar.n, bar.total - round(cost))
                bar.refresh()
            continue
        discard(c, store)  # executed afresh: a stored result (a stand-in's, a stopped one) has no timings
        if stand_in and c.init_from is not None:
            res = {"ok": False, "error": f"{c.dataset} is not on disk and the run starts from a parent: "
                   "get the data set (README, Data) to preflight it"}
        else:
            try:
                with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as ex:
                    res = ex.submit(execute_one, c.to_dict(), str(Path(store)), threads, stand_in).result()
            except Exception as e:  # noqa: BLE001 -- the process died (out of memory, killed)
                res = {"ok": False, "error": f"the run's process died: {type(e).__name__}: {e}"[:300]}
        rows.append({"group": g["group"], "notebooks": ", ".join(g["notebooks"]), "runs": g["runs"],
                     "key": c.key()[:10], "data_source": source[i], **res, "estimated_s": cost,
                     "resumed": False, "skipped": False})
        if on_row is not None:
            on_row(pd.DataFrame(rows[-1:]))
        scale = estimate_scale(measured(earlier, rows))
        if not math.isnan(cost):
            bar.update(round(cost))
        if progress:
            ahead = [j for j in order[n + 1:] if j not in resumed]
            rest = sum(est[j] for j in ahead if not math.isnan(est[j]))
            bar.write(f"preflight: {g['group'][:70]}: {'ok' if res.get('ok') else 'FAILED'} "
                      f"in {res.get('wall_s', 0):.0f} s (estimated {format_seconds(cost)}); the rest: "
                      f"{len(ahead)} signatures, {format_seconds(rest)} by the plan's estimates"
                      + (f", {format_seconds(rest * scale)} at the {scale:.1f}x measured so far"
                         if scale > 1 else ""))
    bar.close()
    return pd.DataFrame(rows)


def resumable(prev: dict | None, c, source: str, store) -> bool:
    """Whether ``prev``, a saved row of ``c``'s group, stands for ``c``: executed without error,
    the same truncated run from data of the same ``source`` (not a stand-in's row once the data
    is on disk), and that run is done in ``store``."""
    return (prev is not None and bool(prev.get("ok")) and prev.get("key") == c.key()[:10]
            and prev.get("data_source") == source
            and (read_status(store, c.key()) or {}).get("status") in ("done", "diverged"))


def per_notebook(df: pd.DataFrame) -> pd.DataFrame:
    """Per notebook, its signatures in the second stage's rows ``df``: how many, ok, failed, not
    run yet (``skipped``); a row whose ``notebooks`` names several counts for each."""
    d = df.assign(notebook=df["notebooks"].str.split(", "),
                  skipped=df["skipped"].fillna(False).astype(bool) if "skipped" in df else False,
                  ok=df["ok"].fillna(False).astype(bool)).explode("notebook")
    out = pd.DataFrame({"signatures": d.groupby("notebook").size(),
                        "ok": d[d["ok"]].groupby("notebook").size(),
                        "failed": d[~d["ok"] & ~d["skipped"]].groupby("notebook").size(),
                        "not run yet": d[d["skipped"]].groupby("notebook").size()})
    return out.fillna(0).astype(int).rename_axis("notebook").reset_index()


def execution_report(df: pd.DataFrame, profile: str, seconds: float, steps: int = PREFLIGHT_STEPS) -> str:
    """The second stage as Markdown: totals, failures, groups not run yet, and per group its
    timing and memory."""
    df = df.copy()
    for flag in ("skipped", "resumed"):
        df[flag] = df[flag].fillna(False).astype(bool) if flag in df else False
    counts = per_notebook(df)
    skipped = df[df["skipped"]]
    df = df[~df["skipped"]]
    bad = df[~df["ok"].astype(bool)]
    n_nb = df["notebooks"].str.split(", ").explode().nunique()
    lines = [f"# Preflight, second stage: profile {profile!r}", "",
             f"{len(df)} signatures executed at full size for {steps} steps each (the one rule: "
             f"`store.truncation.truncate`), every metric measured, in {seconds:.0f} s on the CPU "
             f"(the sum of their processes' wall times; {n_nb} notebooks): "
             f"{int(df['ok'].sum())} ok, {len(bad)} failed"
             + (f" ({int(df['resumed'].sum())} of them measured by an earlier invocation, `--resume`)"
                if df["resumed"].any() else "")
             + (f"; {len(skipped)} not run yet (the time budget ran out: `--resume` runs them)"
                if len(skipped) else "") + ".", "",
             "Columns: seconds per training step (the fastest between two steps), per measurement and of its "
             "slowest metric; `end_s`: work at the end of the run (the final top-k spectrum of H, "
             "`H_spectrum`); `wall_s`: the process, parent replays and data loading included.", "",
             "Memory (`run_mb`): the process's peak resident memory (`VmHWM`) minus its memory before "
             "the run (the libraries): what the run itself holds (data, model, activations, Krylov "
             "bases), the memory it needs on a GPU to within the allocator's slack.", "",
             "`estimated_s`: the plan's estimate of the truncated run (`make plan`'s cost model, "
             "calibrated on this CPU; Lanczos at a small proxy's cold-start product counts): the "
             "signatures run cheapest first, and a `--budget` starts none whose estimate, scaled by the "
             "median measured/estimated ratio of those executed so far, runs past it.", "",
             "## Per notebook", "",
             "A signature shared by notebooks counts for each of them.", "",
             to_markdown(counts), ""]
    if len(bad):
        lines += ["## Failures", "", to_markdown(bad[["notebooks", "key", "group", "error"]]), ""]
    if len(skipped):
        e = pd.to_numeric(skipped.get("estimated_s", pd.Series(np.nan, skipped.index)))
        ratio = (pd.to_numeric(df.get("wall_s", pd.Series(dtype=float)))
                 / pd.to_numeric(df.get("estimated_s", pd.Series(dtype=float)))).dropna()
        seen = (f" (the signatures executed took {ratio.min():.1f}-{ratio.max():.1f}x their estimates)"
                if len(ratio) else "")
        scale = estimate_scale(df.to_dict("records"))
        total = float(e.sum(min_count=1))
        lines += ["## Not run yet", "",
                  f"Estimated by the plan's cost model{seen}: {format_seconds(total)} in all"
                  + (f", {format_seconds(total * scale)} at their median ratio ({scale:.1f}x, "
                     f"estimates of at least {SCALE_MIN_ESTIMATE_S / 60:.0f} min), which the budget uses"
                     if scale > 1 else "")
                  + "; `--resume` with a `--budget` above a signature's scaled estimate runs it.", "",
                  to_markdown(skipped.assign(estimated=e.map(format_seconds))[
                      ["notebooks", "runs", "key", "group", "estimated"]]), ""]
    t = df.assign(run_mb=df["peak_mb"] - df["start_mb"])
    cols = ["group", "notebooks", "runs", "key", "data_source", "ok", "s_per_step", "s_per_measurement",
            "slowest_metric", "slowest_metric_s", "end_s", "run_mb", "peak_mb", "wall_s", "estimated_s"]
    for col in ("end_s", "estimated_s"):
        if col not in t:
            t[col] = np.nan
    for col in ("s_per_step", "s_per_measurement", "slowest_metric_s", "end_s", "wall_s", "estimated_s"):
        t[col] = t[col].map(lambda v: f"{v:.3g}" if pd.notna(v) else "")
    lines += ["## Signatures", "", to_markdown(t[cols]), ""]
    return "\n".join(lines)


def save_results(df: pd.DataFrame, path, profile: str, steps: int) -> None:
    """The second stage's rows as JSON (``{"profile", "steps", "notebooks", "created", "groups":
    [row, ...]}``), merged into ``path``'s earlier groups (a preflight of some notebooks keeps
    the others' measurements), written atomically."""
    path = Path(path)
    old = load_results(path) or {}
    groups = {g["group"]: g for g in old.get("groups", []) if old.get("profile") == profile}
    for row in json.loads(df.to_json(orient="records")):
        groups[row["group"]] = row
    atomic_write_text(path, json.dumps({"profile": profile, "steps": steps, "created": time.time(),
                                        "notebooks": sorted({n for g in groups.values()
                                                             for n in g["notebooks"].split(", ")}),
                                        "groups": list(groups.values())}, indent=1))


def load_results(path) -> dict | None:
    """What :func:`save_results` wrote, or None when there is nothing readable at ``path``."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- memory per run

#: what a CUDA process holds before any tensor of a run (its context, cuBLAS and cuDNN
#: workspaces), GB: counted once per run sharing a GPU
CUDA_CONTEXT_GB = 1.0


def memory_plan(runs: dict, results: dict | None, gpu_gb: float) -> pd.DataFrame:
    """Per run of ``runs`` ({notebook: [RunConfig, ...] or a reason}): the GPU memory it needs,
    ``need_gb``, as its group's run memory measured by the second stage (``results``:
    :func:`load_results`; the group's largest run, so an upper bound for the others; NaN where
    the group was not preflighted), and ``per_gpu``: how many such runs fit on a GPU of
    ``gpu_gb`` GB, each with its own :data:`CUDA_CONTEXT_GB`."""
    if not gpu_gb > 0:
        raise ValueError(f"the GPU's memory must be positive (GPU_MEM, GB), got {gpu_gb!r}")
    measured = {g["group"]: g for g in (results or {}).get("groups", []) if g.get("ok")}
    rows = []
    for nb, cfgs in runs.items():
        if isinstance(cfgs, str):
            continue
        for c in cfgs:
            g = measured.get(group_of(c))
            need = (g["peak_mb"] - g["start_mb"]) / 1024 if g else math.nan
            rows.append({"notebook": nb, "key": c.key()[:10], "group": group_of(c), "need_gb": need,
                         "per_gpu": int(gpu_gb // (need + CUDA_CONTEXT_GB)) if g else None})
    df = pd.DataFrame(rows, columns=["notebook", "key", "group", "need_gb", "per_gpu"])
    df["per_gpu"] = df["per_gpu"].astype("Int64")
    return df


def auto_jobs(mem: pd.DataFrame, notebook: str, n_gpus: int) -> int | None:
    """``JOBS=auto`` on GPUs: the runs of ``notebook`` that share ``n_gpus`` GPUs at once, the
    fewest that fit on one (:func:`memory_plan`) times ``n_gpus``; None when a run of it was not
    preflighted (its memory is unknown) or does not fit at all."""
    m = mem[mem["notebook"] == notebook]
    if not len(m) or m["per_gpu"].isna().any():
        return None
    k = int(m["per_gpu"].min())
    return k * n_gpus if k >= 1 else None


def memory_tables(mem: pd.DataFrame, gpu_gb: float, rows: bool = False) -> str:
    """The plan's memory section as Markdown: per notebook the largest need and the runs that
    fit on one GPU of ``gpu_gb`` GB; with ``rows`` one row per run."""
    lines = [f"GPU memory per run (the second preflight stage's peak memory per signature, `make "
             f"preflight`), on a GPU of {gpu_gb:g} GB with {CUDA_CONTEXT_GB:g} GB per process for CUDA "
             "itself:", ""]
    if not len(mem):
        return "\n".join(lines + ["no runs", ""])
    summ = []
    for nb, m in mem.groupby("notebook", sort=False):
        missing = int(m["need_gb"].isna().sum())
        summ.append({"notebook": nb, "runs": len(m), "largest need (GB)": round(float(m["need_gb"].max()), 2)
                     if missing < len(m) else None,
                     "runs per GPU (JOBS=auto)": int(m["per_gpu"].min()) if not missing else None,
                     "not preflighted": missing})
    lines += [to_markdown(pd.DataFrame(summ)), ""]
    if mem["need_gb"].isna().any():
        lines += ["Runs not preflighted have no measured memory: `make preflight PROFILE=... NOTEBOOKS=...` "
                  "measures them.", ""]
    if rows:
        lines += [to_markdown(mem.assign(need_gb=mem["need_gb"].round(2))), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- third stage

def materialise(runs: dict, store, steps: int = PREFLIGHT_STEPS) -> pd.DataFrame:
    """The third stage's run store: every run of ``runs``, cut by :func:`truncate`, present in
    ``store``, so its notebook executes at the profile on them. A run the second stage executed
    is there; every other run of an executed signature gets that run's results under its own
    configuration (``store.runs.copy_run``: the numbers are the signature's, the labels the
    run's; the figures are not results, only the code paths are exercised). One row per run:
    ``source`` 'executed', 'copy of <key>', or 'missing' (its signature failed or was not
    executed)."""
    rep = {}
    for g in groups(runs):
        t = truncate(g["config"], steps)
        st = read_status(store, t.key()) or {}
        if st.get("status") in ("done", "diverged"):
            rep[g["group"]] = t
    rows, seen = [], set()
    for nb, cfgs in runs.items():
        if isinstance(cfgs, str):
            continue
        for c in cfgs:
            t = truncate(c, steps)
            if t.key() in seen:
                continue
            seen.add(t.key())
            src = rep.get(group_of(c))
            st = read_status(store, t.key()) or {}
            if st.get("status") in ("done", "diverged"):
                source = "executed" if not st.get("copy_of") else f"copy of {st['copy_of'][:10]}"
            elif src is None:
                source = "missing"
            else:
                copy_run(src, t, store, note="preflight: the results of its signature's executed run")
                source = f"copy of {src.key()[:10]}"
            rows.append({"notebook": nb, "key": t.key()[:10], "group": group_of(c), "source": source})
    return pd.DataFrame(rows, columns=["notebook", "key", "group", "source"])


def notebooks_report(mat: pd.DataFrame, nbs: pd.DataFrame, profile: str, steps: int) -> str:
    """The third stage as Markdown: per notebook its runs (executed / copied / missing) and how its
    execution at ``profile`` on them ended (``nbs``: notebook, status, error, seconds)."""
    lines = [f"# Preflight, third stage: the notebooks executed at {profile!r} on the truncated runs", "",
             f"Every run of each notebook cut to {steps} steps and measured at 0 and at {steps}; the "
             "second stage "
             "executed one run per signature, the others carry its results under their own "
             "configurations (the figures and verdicts are meaningless; every cell, figure, table "
             "and claim code path of the notebook runs at the profile's settings).", ""]
    rows = []
    for r in nbs.itertuples():
        m = mat[mat["notebook"] == r.notebook]
        rows.append({"notebook": r.notebook, "runs": len(m),
                     "executed": int((m["source"] == "executed").sum()),
                     "copied": int(m["source"].str.startswith("copy").sum()),
                     "missing": int((m["source"] == "missing").sum()),
                     "data": getattr(r, "data", "") or "", "status": r.status,
                     "seconds": f"{r.seconds:.0f}", "error": r.error})
    lines += [to_markdown(pd.DataFrame(rows)), ""]
    return "\n".join(lines)
