"""Preflight of a profile, first stage (issue 22): every run the notebooks would launch is built
and checked before any GPU time is spent on it.

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
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import pandas as pd
import torch

from breakeven_utils.core.console import tqdm
from breakeven_utils.core.data import DATASETS, BatchIterator
from breakeven_utils.core.tables import to_markdown
from breakeven_utils.recorder import RunConfig
from breakeven_utils.recorder.loop import build_run_model, load_run_data
from breakeven_utils.store.plan import on_disk

__all__ = ["MAX_PASS", "INPUT_SHAPES", "RunCheck", "signature", "first_batch", "check_run", "preflight",
           "report"]

#: the largest full-batch pass checked (the first this many examples of a chunk); a run whose
#: full-batch gradient goes over more of its training set in one pass (``gd_chunk`` unset) is flagged
MAX_PASS = 1024

#: the input shape of one example of each data set (what a stand-in for a missing one draws)
INPUT_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "fashion_mnist": (1, 28, 28),
                "mnist": (1, 28, 28), "synthetic": (3, 8, 8)}


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
        x = torch.randn((min(n, c.n_train), *INPUT_SHAPES[c.dataset]), generator=g)
        return x, torch.randint(0, k, (len(x),), generator=g), k, "stand-in (not on disk)"
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
    lines += ["Not yet in this preflight (issue 22): the signatures executed at full size for a few steps "
              "with every metric measured, the notebooks executed on those truncated runs, memory per "
              "run.", ""]
    return "\n".join(lines)
