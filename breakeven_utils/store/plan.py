"""The cost plan: every run each notebook launches at a profile, with an estimated
cost measured on this device, before anything is trained (``make plan``).

* The runs to cost come from the caller: ``papers.registry.notebook_runs`` lists
  every notebook's runs at a profile (the store never names a paper section).
* :func:`check_config` repeats the checks ``recorder.loop.train`` makes once the data are
  loaded (sizes against the data set), from the data sets' known sizes, so an
  invalid setting fails here and in CI, not hours into a run.
* :func:`calibrate` times, on random inputs of each distinct model and input shape
  (once for all notebooks), forward+backward passes at two batch sizes, an evaluation
  pass, single Hessian-vector products at two sizes, per-example gradients and
  curvatures; the update rules' own costs (one timing shared by every rule that steps
  as SGD does); plugin metrics; and, on a small proxy, the number of HVPs of one cold
  Lanczos solve per (k, tol, which). Each timing repeats only while it is shorter than
  :data:`TIME_BUDGET`. Cached per device for the session
  (``<run store>/_plan/calibration.json``, 12 hours).
* :func:`run_cost` is the cost model: ``steps x step(S) + sum over measurements of the
  metrics' costs + once-per-run costs``, every term linear in the examples it touches
  (``a + b n`` fitted from the two timed sizes). Every Lanczos solve (lambda_H, the
  spectrum, ``hessian_top``, the eigenvector refreshes of NSGD-type rules) costs its
  proxy HVP count times one HVP on its examples: runs that stop at a target training
  accuracy are costed to their epoch budget, and Lanczos at its cold-start count
  (along a trajectory it is warm-started: fewer), so the counts are upper bounds; the time
  per example is not (the preflight's full-size runs at ``paper`` against these estimates:
  docs/reproducing.md, "Checked by the preflight").
"""

from __future__ import annotations

import json
import math
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from breakeven_utils import __version__
from breakeven_utils.core.console import tqdm
from breakeven_utils.core.data import DATASETS, Data, Split, data_root
from breakeven_utils.core.device import device_label, resolve_device
from breakeven_utils.core.io import atomic_write_json
from breakeven_utils.core.models import build_model
from breakeven_utils.core.params import parameters_vector
from breakeven_utils.core.tables import to_markdown
from breakeven_utils.curvature import (
    HessianOperator,
    hessian_eigs,
    per_example_curvature,
    per_example_gradients,
)
from breakeven_utils.recorder.loop import build_run_model
from breakeven_utils.recorder.metrics import (
    K_M,
    USER_METRICS,
    MeasureContext,
    evaluate,
    measurement_iterations,
)
from breakeven_utils.recorder.rules import UPDATE_RULES, RuleContext, SGDRule, weight_decay_mask
from breakeven_utils.store.runs import read_status, store_root

__all__ = ["makespan", "sizes", "check_config", "calibrate", "run_cost", "plan", "plan_tables", "on_disk",
           "missing_data", "format_seconds", "CostPrimitives", "metric_hooks", "lanczos_cost",
           "notebook_overheads", "DEFAULT_OVERHEAD_S"]

# input shape and test-set size of each data set (the loader's; no file is read)
INPUT_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "fashion_mnist": (1, 28, 28),
                "mnist": (1, 28, 28), "synthetic": (3, 8, 8)}
TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "fashion_mnist": 10_000, "mnist": 10_000,
              "synthetic": 1_024}
CACHE_HOURS = 12.0
CAL_VERSION = 3  # bump when the calibration's fields change: older cached entries are redone
# examples of the timed Hessian-vector product: 32 in one batch ('cached' graph, as the
# recorder for up to 512 examples), 64 in two batches of 32 (forward-over-reverse, as for more)
HVP_N = {"cached": 32, "chunked": 64}
TIME_BUDGET = 0.3  # seconds: a timing repeats (up to its reps) while the total is below this
_FREE = ("grad_cos", "grad_norm", "dist_init", "param_norm", "gamma_norm", "g_over_g5", "H_spectrum")


# ----------------------------------------------------------------------------- sizes


def sizes(c) -> dict:
    """The sizes ``recorder.loop.train`` would use for config ``c``, from the data set's known
    sizes (``data.load_data``'s defaults), plus the iteration and measurement counts."""

    info = DATASETS[c.dataset]
    n_train = c.n_train if c.n_train is not None else info.n_train_total - info.n_val_default
    n_val = c.n_val if c.n_val is not None else info.n_val_default
    n_measure = c.n_measure if c.n_measure is not None else max(1, math.ceil(0.05 * n_train))
    n_test = c.n_test if c.n_test is not None else TEST_SIZES.get(c.dataset)
    S = n_train if c.full_batch else c.batch_size
    bpe = max(1, n_train // S)
    total = int(min(c.max_iters or math.inf, (c.max_epochs or math.inf) * bpe))
    meas = measurement_iterations(c, bpe, total)
    return dict(n_train=n_train, n_val=n_val, n_test=n_test, n_measure=n_measure, S=S, bpe=bpe,
                iterations=total, epochs=total / bpe, n_measurements=len(meas),
                hessian_n=c.hessian_n if c.hessian_n is not None else n_measure,
                K_M=K_M(c, n_train), shape=INPUT_SHAPES.get(c.dataset),
                num_classes=info.num_classes)


def check_config(c) -> dict:
    """Raise ``ValueError`` where ``recorder.loop.train`` would once the data are loaded."""

    c.validate()
    info = DATASETS[c.dataset]
    pool = info.n_train_total - info.n_val_default
    for name, n, avail in (("n_train", c.n_train, pool), ("n_val", c.n_val, info.n_val_default),
                           ("n_test", c.n_test, TEST_SIZES.get(c.dataset))):
        if n is not None and avail is not None and n > avail:
            raise ValueError(f"{name}={n} but {c.dataset} has only {avail} examples there")
    s = sizes(c)
    if s["n_measure"] > s["n_train"]:
        raise ValueError(f"n_measure={s['n_measure']} is larger than n_train={s['n_train']}")
    if c.optimizer == "sgd" and c.batch_size > s["n_train"]:
        raise ValueError(f"batch_size={c.batch_size} is larger than the {s['n_train']} training examples")
    if "K" in c.metrics and c.K_L * s["K_M"] > s["n_train"]:
        raise ValueError(f"K needs K_L*K_M = {c.K_L}*{s['K_M']} <= n_train = {s['n_train']}")
    if "K1" in c.metrics and c.K1_L > s["n_train"]:
        raise ValueError(f"K1_L={c.K1_L} is larger than n_train={s['n_train']}")
    if c.hessian_n is not None and c.hessian_n > s["n_measure"]:
        raise ValueError(f"hessian_n={c.hessian_n} exceeds the {s['n_measure']} examples of the "
                         "measurement set")
    if c.schedule == "plateau" and s["n_val"] == 0:
        raise ValueError("the plateau schedule needs a validation set")
    if s["iterations"] < 1:
        raise ValueError(f"the budget gives {s['iterations']} iterations")
    return s


# ----------------------------------------------------------------------------- calibration


def _shape_key(c, s) -> str:
    return json.dumps({"model": c.model, "kw": c.model_kwargs, "init": c.init, "shape": s["shape"],
                       "classes": s["num_classes"]}, sort_keys=True)


def _timed(fn, reps: int = 3, sync=None, budget: float | None = None, warmup: bool = True) -> float:
    """Median of up to ``reps`` timed calls after one warm-up; stops repeating once the
    timed calls took ``budget`` seconds (default :data:`TIME_BUDGET`): a slow primitive
    (a ResNet-56 pass at batch 128) is timed once, a fast one several times."""
    budget = TIME_BUDGET if budget is None else budget
    if warmup:
        fn()  # warm-up (allocations, lazy init, graph caches)
        if sync:
            sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
        if sum(ts) >= budget:
            break
    return statistics.median(ts)


def _fit(n1, t1, n2, t2) -> tuple[float, float]:
    """(a, b) of t = a + b n through the two timed points (b >= 0, a >= 0)."""
    b = max((t2 - t1) / (n2 - n1), t2 / n2 * 0.25, 0.0)
    return max(t2 - b * n2, 0.0), b


def _fake_data(shape, classes, n, device, seed=0):

    g = torch.Generator().manual_seed(seed)

    def split(m):
        return Split(torch.randn(m, *shape, generator=g, device="cpu").to(device),
                     torch.randint(0, classes, (m,), generator=g, device="cpu").to(device))

    tr = split(n)
    return Data(name="calibration", source="synthetic", label="random inputs", num_classes=classes,
                train=tr, val=split(64), test=split(64), measure=Split(tr.x[:64], tr.y[:64]))


def _calibrate_shape(c, s, need: dict, device: str) -> dict:
    """Primitive costs (seconds) of one model/input shape on ``device``."""

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    data = _fake_data(s["shape"], s["num_classes"], 256, device)
    model = build_run_model(c, data, device)
    loss_fn = nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = data.train.x, data.train.y
    out = {"n_params": int(sum(p.numel() for p in params)), "hessian_chunked": need["hessian_chunked"],
           "fb_sizes": list(need["fb_sizes"])}

    def fb(n, train=True):
        def go():
            model.train(train)
            for p in params:
                p.grad = None
            loss_fn(model(x[:n]), y[:n]).backward()
        return go

    n1, n2 = need["fb_sizes"]
    # the warm-up at n1 warms the model: the pass at n2 and the evaluation need none
    # (measured: the first pass at a new batch size costs what the next ones do)
    t1, t2 = _timed(fb(n1), sync=sync), _timed(fb(n2), sync=sync, warmup=False)
    out["fb_a"], out["fb_b"] = _fit(n1, t1, n2, t2)
    out["eval_b"] = _timed(lambda: evaluate(model, loss_fn, x[:64], y[:64]), sync=sync,
                           warmup=False) / 64
    # one Hessian-vector product, batched as the recorder batches them; an HVP costs a
    # fixed multiple of a forward+backward pass on the same examples (2-4 on this CPU), so
    # hvp(n) = ratio x fb(n), the ratio measured at HVP_N examples. The 'cached' path's first
    # product builds the graph (the warm-up); forward-over-reverse needs no warm-up once
    # the process has run one (_warm_hvp_paths): its first product costs what the next do
    chunked = need["hessian_chunked"]
    n = HVP_N["chunked" if chunked else "cached"]
    obj = HessianOperator(model, loss_fn, (x[:n], y[:n]), bn_mode=c.hessian_bn_mode,
                     batch_size=n // 2 if chunked else None, method=c.hessian_method)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(1), device="cpu").to(device)
    if chunked:
        _warm_hvp_paths(device)
    t_hvp = _timed(lambda: obj.hvp(v), reps=1, sync=sync, warmup=not chunked)
    out["hvp_ratio"] = t_hvp / (out["fb_a"] + out["fb_b"] * n)
    out["hvp_a"], out["hvp_b"] = out["hvp_ratio"] * out["fb_a"], out["hvp_ratio"] * out["fb_b"]
    if need["pe_grad"]:
        out["pe_grad_b"] = _timed(lambda: per_example_gradients(model, loss_fn, x[:8], y[:8]),
                                  reps=1, sync=sync) / 8
    if need["pe_curv"]:
        v = torch.randn(out["n_params"], generator=torch.Generator().manual_seed(2), device="cpu").to(device)
        out["pe_curv_b"] = _timed(lambda: per_example_curvature(
            model, loss_fn, (x[:16], y[:16]), v, bn_mode=c.hessian_bn_mode), reps=1, sync=sync) / 16
    return out


_WARM: set = set()


def _warm_hvp_paths(device: str) -> None:
    """Pay the first-use cost of the batched HVP paths (lazy initialisation of
    torch.func, 1-2 s on CPU) once per process, on a tiny model."""
    if device in _WARM:
        return

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10)).to(device)
    x = torch.randn(8, 3, 8, 8, device=device)
    model(x)
    y = torch.arange(8, device=device) % 10
    obj = HessianOperator(model, nn.CrossEntropyLoss(), (x, y), batch_size=4)
    for _ in range(2):
        obj.hvp(torch.randn(obj.dim, device=device))
    _WARM.add(device)


def _calibrate_device(device: str) -> dict:
    """Dense linear algebra rates: Gram matrices and the L x L eigendecomposition of K."""

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    L, D = 256, 20_000
    G = torch.randn(L, D, device=device)
    t = _timed(lambda: G @ G.T, sync=sync)
    A = torch.randn(L, L, dtype=torch.float64, device=device)
    A = A @ A.T
    te = _timed(lambda: torch.linalg.eigh(A), sync=sync)
    return {"gram_flops": 2 * L * L * D / t, "eigh_c": te / L ** 3}


def _lanczos_count(key: str) -> int:
    """Hessian-vector products of one cold Lanczos solve for ``key`` = [k, tol, which].

    The count is a property of the solver and the spectrum, not of the model's cost,
    so it is measured once on a small proxy (SimpleCNN on random 3x8x8 inputs, 32
    examples: the counts agree with the project's measurements on CIFAR-10, about 9
    products for the top-1 and 20 for the top-5 eigenpairs) and the time of one product
    is measured on each real model."""

    k, tol, which = json.loads(key)
    data = _fake_data((3, 8, 8), 10, 64, "cpu", seed=3)
    model = build_model("simple_cnn", num_classes=10, in_channels=3, image_size=8, seed=0,
                        width=[8, 8, 16, 16], hidden=32)
    h = hessian_eigs(model, nn.CrossEntropyLoss(), (data.train.x[:32], data.train.y[:32]), k=k,
                     which=which, tol=tol, seed=0)
    return int(h.n_hvp)


def _steps_as_sgd(c) -> bool:
    """True for rules whose step costs what SGD's does: ``sgd`` itself (SGD, GD, momentum)
    and rules that declare their extra work for the plan (``plan_solves``: NSGD-type
    rules, whose projection on k eigenvectors is O(k D), negligible beside a pass)."""

    cls = UPDATE_RULES[c.rule_name]
    return cls is SGDRule or hasattr(cls, "plan_solves")


def _rule_key(c, sk: str) -> str:
    """Calibration key of ``c``'s update rule: one timing per shape (and momentum) for
    every rule that steps as SGD does, else per rule, its kwargs and optimizer."""
    if _steps_as_sgd(c):
        return json.dumps([sk, "sgd", {}, "sgd", c.momentum > 0], sort_keys=True)
    return json.dumps([sk, c.rule_name, c.rule_kwargs, c.optimizer, c.momentum > 0], sort_keys=True)


def _rule_solves(c, s) -> list:
    """[(k, tol, which, n_examples, count)] of the Lanczos solves the update rule runs
    per run (its ``plan_solves(config, iterations, epochs)``), [] for other rules."""

    hook = getattr(UPDATE_RULES[c.rule_name], "plan_solves", None)
    if hook is None:
        return []
    return [(k, tol, which, s["n_measure"] if n is None else n, count)
            for k, tol, which, n, count in hook(c, s["iterations"], s["epochs"])]


def _calibrate_rule(c, s, device: str) -> dict:
    """The update rule's own costs: one update, ``on_start`` and ``on_epoch_start``
    (timed on the 64-example calibration measurement set). A rule that steps as SGD
    does is timed as plain SGD (its hooks' work is in ``plan_solves``)."""

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    data = _fake_data(s["shape"], s["num_classes"], 256, device)
    model = build_run_model(c, data, device)
    loss_fn = nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    name, kwargs = ("sgd", {}) if _steps_as_sgd(c) else (c.rule_name, c.rule_kwargs)
    rule = UPDATE_RULES[name](params, c, mask=weight_decay_mask(model, c.weight_decay_on), **kwargs)
    ctx = RuleContext(model, loss_fn, data, c)
    t0 = time.perf_counter()
    try:
        rule.on_start(ctx)
        t_start = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 -- needs more than the calibration data (e.g. 50 batches
        t_start = float("nan")  # of 100 for the walk's noise variance): unknown cost, shown as such
    try:
        t_epoch = _timed(lambda: rule.on_epoch_start(ctx), reps=1, sync=sync)
    except Exception:  # noqa: BLE001
        t_epoch = float("nan")
    loss_fn(model(data.train.x[:8]), data.train.y[:8]).backward()
    grads = [p.grad.detach().clone() for p in params]
    with torch.no_grad():
        snapshot = [p.detach().clone() for p in params]
    try:
        t_upd = _timed(lambda: rule(params, grads, 1e-6, ctx), sync=sync)
    except Exception:  # noqa: BLE001 -- its on_start could not run here: time a plain SGD step
        sgd = UPDATE_RULES["sgd"](params, c, mask=weight_decay_mask(model, c.weight_decay_on))
        t_upd = _timed(lambda: sgd(params, grads, 1e-6, ctx), sync=sync)
    with torch.no_grad():
        for p, q in zip(params, snapshot):
            p.copy_(q)
    n = len(data.measure)
    return {"update": t_upd, "on_start_per_example": t_start / n, "epoch_per_example": t_epoch / n}


@dataclass(frozen=True)
class CostPrimitives:
    """The calibrated costs (seconds) a registered metric's ``plan_cost`` hook composes:
    ``fb(n)`` a forward+backward pass on n examples, ``hvp(n)`` one Hessian-vector product
    on n examples, ``ev`` an evaluation pass per example, ``lanczos(k, tol, which)`` the HVP
    count of a cold Lanczos solve."""

    fb: Callable[[int], float]
    hvp: Callable[[int], float]
    ev: float
    lanczos: Callable[..., float]


def metric_hooks(name: str) -> tuple:
    """(plan_cost, plan_solves, per_call) of a registered (plugin) metric: a metric function
    may declare ``plan_cost(config, sizes, CostPrimitives) -> seconds per measurement`` and
    ``plan_solves(config, sizes) -> [(k, tol, which, n_examples)]`` (the Lanczos solves the
    calibration must count), and ``plan_per_call = True`` when its cost does not grow with
    the measurement set; one without ``plan_cost`` is timed on the calibration data."""
    fn = USER_METRICS.get(name)
    return (getattr(fn, "plan_cost", None), getattr(fn, "plan_solves", None),
            bool(getattr(fn, "plan_per_call", False)))


def _calibrate_metric(name, c, s, device: str) -> float:
    """Seconds per example of the measurement set for a plugin metric (one timed call
    on a 64-example calibration measurement set; seconds per call for a metric declaring
    ``plan_per_call``); NaN if it cannot run there."""

    data = _fake_data(s["shape"], s["num_classes"], 256, device)
    model = build_run_model(c, data, device)
    th0 = parameters_vector(model).clone()
    ctx = MeasureContext(model, nn.CrossEntropyLoss(), data, c, 0, 0.0, c.lr, th0, {}, {})
    try:
        t = _timed(lambda: USER_METRICS[name](ctx), reps=1,
                   sync=torch.cuda.synchronize if device.startswith("cuda") else None)
    except Exception:  # noqa: BLE001 -- needs more than the calibration data: unknown cost
        return float("nan")
    return t if metric_hooks(name)[2] else t / len(data.measure)


def _device_key(device: str) -> str:
    return (f"{socket.gethostname()} | {device_label(device)} | torch {torch.__version__} | "
            f"breakeven_utils {__version__}")


def calibrate(configs, device: str = "auto", store=None, *, recalibrate: bool = False,
              progress: bool = True, cached_only: bool = False) -> dict | None:
    """Costs of the primitives every config needs, measured on ``device`` (cached per
    device in ``<store>/_plan/calibration.json`` for :data:`CACHE_HOURS` hours).
    ``cached_only``: measure nothing; None unless the cache covers every config."""

    device = resolve_device(device)
    path = store_root(store) / "_plan" / "calibration.json"
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        cache = {}
    dkey = _device_key(device)
    entry = cache.get(dkey) or {}
    if (recalibrate or time.time() - entry.get("created", 0) > CACHE_HOURS * 3600
            or entry.get("version") != CAL_VERSION):
        entry = {"created": time.time(), "version": CAL_VERSION, "shapes": {}, "rules": {},
                 "metrics": {}}

    todo_shapes, todo_rules, todo_metrics = {}, {}, {}
    for c in configs:
        s = sizes(c)
        if s["shape"] is None:
            raise ValueError(f"no input shape known for data set {c.dataset!r}; add it to "
                             "plan.INPUT_SHAPES")
        sk = _shape_key(c, s)
        need = todo_shapes.setdefault(sk, {"c": c, "s": s, "fb_sizes": (8, 16), "lanczos": set(),
                                           "pe_grad": False, "pe_curv": False,
                                           "hessian_chunked": False})
        # the second size: the largest batch the runs use, up to 128 (per-example costs
        # fall with the batch size on a CPU; beyond 128 they hardly change)
        big = max(16, min(128, max(s["S"], s["K_M"] if "K" in c.metrics else 0)))
        need["fb_sizes"] = (8, max(need["fb_sizes"][1], big))
        if "lambda_H" in c.metrics or "H_spectrum" in c.metrics:
            need["lanczos"].add(json.dumps([c.hessian_k, c.hessian_tol, c.hessian_which]))
            need["hessian_chunked"] |= s["hessian_n"] > 512
        if "H_spectrum" in c.metrics:
            need["lanczos"].add(json.dumps([c.spectrum_k, c.hessian_tol, c.hessian_which]))
        need["pe_grad"] |= "K1" in c.metrics
        need["pe_curv"] |= "breakeven_lhs" in c.metrics
        for m in c.metrics:  # the Lanczos solves registered metrics declare (plan_solves)
            solves = metric_hooks(m)[1]
            for k, tol, which, n in (solves(c, s) if solves else []):
                need["lanczos"].add(json.dumps([k, tol, which]))
                need["hessian_chunked"] |= n > 512
        for k, tol, which, n, _ in _rule_solves(c, s):
            need["lanczos"].add(json.dumps([k, tol, which]))
            need["hessian_chunked"] |= n > 512
        rk = _rule_key(c, sk)
        if rk not in entry["rules"]:
            todo_rules.setdefault(rk, (c, s))
        for m in c.metrics:
            mk = json.dumps([sk, m])
            if m in USER_METRICS and metric_hooks(m)[0] is None and mk not in entry["metrics"]:
                todo_metrics.setdefault(mk, (m, c, s))

    def covered(k, need):
        have = entry["shapes"].get(k)
        return bool(have) and have.get("fb_sizes", [0, 0])[1] >= need["fb_sizes"][1] and \
            (not need["pe_grad"] or "pe_grad_b" in have) and (not need["pe_curv"] or "pe_curv_b" in have) \
            and have.get("hessian_chunked") == need["hessian_chunked"]

    lanczos = set().union(*(v["lanczos"] for v in todo_shapes.values()))
    lanczos -= set(entry.setdefault("lanczos", {}))
    todo_shapes = {k: v for k, v in todo_shapes.items() if not covered(k, v)}

    jobs = [("shape", k) for k in todo_shapes] + [("lanczos", k) for k in sorted(lanczos)] + \
        [("rule", k) for k in todo_rules] + [("metric", k) for k in todo_metrics] + \
        ([("device", None)] if "device" not in entry else [])
    if jobs and cached_only:
        return None
    for kind, k in tqdm(jobs, desc="calibrating", disable=not progress or not jobs, leave=False):
        t0 = time.perf_counter()
        if kind == "shape":
            n = todo_shapes[k]
            entry["shapes"][k] = _calibrate_shape(n["c"], n["s"], n, device)
        elif kind == "lanczos":
            entry["lanczos"][k] = _lanczos_count(k)
        elif kind == "rule":
            entry["rules"][k] = _calibrate_rule(*todo_rules[k], device)
        elif kind == "metric":
            entry["metrics"][k] = _calibrate_metric(*todo_metrics[k], device)
        else:
            entry["device"] = _calibrate_device(device)
        entry.setdefault("seconds", {})[f"{kind} {k}"] = round(time.perf_counter() - t0, 2)
    entry["device_name"] = device
    if jobs:
        cache[dkey] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cache)
    return {**entry, "key": dkey, "path": str(path), "calibrated_now": len(jobs)}


# ----------------------------------------------------------------------------- cost model


def lanczos_cost(n_hvp: float, hvp, fb, n: int) -> float:
    """Seconds of a Lanczos solve of ``n_hvp`` products on ``n`` examples: the products,
    plus building the gradient's graph once (a forward+backward) when ``n <= 512`` (one
    batch: 'cached' HVPs, as ``curvature.hessian_eigs`` does)."""
    return n_hvp * hvp(n) + (fb(n) if n <= 512 else 0.0)


def run_cost(c, cal: dict) -> dict:
    """Estimated seconds of one run: ``train`` (steps), ``measure`` (all measurements),
    ``once`` (per-run extras) and ``total``, from the calibration ``cal``."""

    s = sizes(c)
    sk = _shape_key(c, s)
    p = cal["shapes"][sk]
    dev = cal["device"]
    rule = cal["rules"][_rule_key(c, sk)]
    fb = lambda n: p["fb_a"] + p["fb_b"] * n  # noqa: E731
    hvp = lambda n: p["hvp_a"] + p["hvp_b"] * n  # noqa: E731
    lanczos = lambda k, tol=c.hessian_tol, which=c.hessian_which: (  # noqa: E731
        cal["lanczos"][json.dumps([k, tol, which])])
    ev, m = p["eval_b"], s["n_measure"]
    n_train_eval = s["n_train"] if c.train_eval_on == "train" else m
    per = {}
    for name in c.metrics:
        if name == "train":
            per[name] = ev * n_train_eval
        elif name in ("val", "test"):
            per[name] = ev * (s[f"n_{name}"] or 0)
        elif name == "softmax":
            per[name] = ev * (s["n_test"] or 0) / c.softmax_every
        elif name == "delta_loss":
            per[name] = ev * n_train_eval * (1 if "train" in c.metrics else 2)
        elif name == "lambda_H":  # hessian_eigs: batches of 512, 'cached' HVPs for one,
            # whose graph costs a forward+backward to build
            per[name] = lanczos_cost(lanczos(c.hessian_k), hvp, fb, s["hessian_n"])
        elif name == "breakeven_lhs":
            per[name] = p["pe_curv_b"] * s["hessian_n"]
        elif name == "K":
            per[name] = c.K_L * fb(s["K_M"])
        elif name == "K1":
            L = c.K1_L
            per[name] = (L * p["pe_grad_b"] + 2 * L * L * p["n_params"] / dev["gram_flops"]
                         + dev["eigh_c"] * L ** 3)
        elif name in USER_METRICS:
            cost, _, per_call = metric_hooks(name)
            if cost is not None:  # the metric's own model from the calibrated primitives
                per[name] = cost(c, s, CostPrimitives(fb=fb, hvp=hvp, ev=ev, lanczos=lanczos))
            else:
                per[name] = cal["metrics"].get(json.dumps([sk, name]), float("nan")) * (
                    1 if per_call else m)
        else:  # vector norms and cosines of the step: negligible
            per[name] = 0.0
    # a rule hook that could not run on the calibration data (NaN) is costed at zero
    once = (np.nan_to_num(rule["on_start_per_example"]) * m
            + np.nan_to_num(rule["epoch_per_example"]) * m * math.ceil(s["epochs"]))
    if "H_spectrum" in c.metrics:
        once += lanczos(c.spectrum_k) * hvp(s["hessian_n"])
    train = s["iterations"] * (fb(s["S"]) + rule["update"])
    # the rule's eigenvector refreshes (NSGD-type rules), at cold-start HVP counts
    train += sum(count * lanczos(k, tol, which) * hvp(n) for k, tol, which, n, count in _rule_solves(c, s))
    measure = s["n_measurements"] * sum(per.values())
    return {"train": train, "measure": measure, "once": once, "total": train + measure + once,
            "per_measurement": per, **s}


# ----------------------------------------------------------------------------- the plan


def format_seconds(t: float) -> str:
    if not np.isfinite(t):
        return "?"
    if t < 90:
        return f"{t:.0f} s"
    if t < 90 * 60:
        return f"{t / 60:.0f} min"
    if t < 48 * 3600:
        return f"{t / 3600:.1f} h"
    return f"{t / 86400:.1f} d"


def _cached_status(root: Path, key: str) -> str:
    st = read_status(root, key)
    if not st:
        return "no" if st == {} else "no (corrupt status)"
    status = st.get("status")
    if status in ("done", "diverged"):
        return "yes" if status == "done" else "yes (diverged)"
    return "partial" if (root / key / "checkpoint.pt").exists() else "no"


def plan(runs: dict, profile: str, *, device: str = "auto", store=None, recalibrate: bool = False,
         progress: bool = True) -> dict:
    """Calibrate and cost every run of ``runs`` ({notebook: [RunConfig, ...], or a string
    saying why it has none: ``papers.registry.notebook_runs``) built at ``profile``.

    Returns {'runs': DataFrame (one row per notebook run), 'not_built': {name: reason},
    'calibration': ..., 'seconds': wall time of the plan}."""

    t0 = time.perf_counter()
    built = {nb: v for nb, v in runs.items() if not isinstance(v, str)}
    all_cfgs = list({c.key(): c for v in built.values() for c in v}.values())
    cal = calibrate(all_cfgs, device, store, recalibrate=recalibrate, progress=progress)
    root = store_root(store)
    rows, seen = [], set()
    for nb, cfgs in runs.items():
        if isinstance(cfgs, str):
            continue
        for c in cfgs:
            cost = run_cost(c, cal)
            k = c.key()
            rows.append({
                "notebook": nb, "key": k[:10], "model": c.model, "data": c.dataset,
                "eta": c.lr, "S": cost["S"], "seed": c.seed, "optimizer": c.optimizer
                + (f" beta={c.momentum:g}" if c.momentum else "") + ("" if c.rule_name in ("sgd", "gd_noise")
                                                                  else f" {c.rule_name}"),
                "epochs": cost["epochs"], "stops early": (f"train acc {c.target_train_acc:.0%}"
                                                          if c.target_train_acc is not None else ""),
                "iterations": cost["iterations"], "measurements": cost["n_measurements"],
                "metrics": ",".join(c.metrics), "train_s": cost["train"],
                "measure_s": cost["measure"] + cost["once"], "cost_s": cost["total"],
                "cached": _cached_status(root, k), "shared": k in seen})
            seen.add(k)
    df = pd.DataFrame(rows)
    return {"profile": profile, "runs": df,
            "not_built": {nb: str(v) for nb, v in runs.items() if isinstance(v, str)},
            "calibration": cal, "device": cal["device_name"], "seconds": time.perf_counter() - t0}


#: a notebook's own time beside its runs when no redraw of it was measured (17-25 s at cpu here)
DEFAULT_OVERHEAD_S = 30.0


def notebook_overheads(manifest, profile: str, names: list) -> dict:
    """{notebook: seconds it spends beside its runs} from its last execution at ``profile`` in
    ``manifest``: the wall time of a redraw (no run computed); :data:`DEFAULT_OVERHEAD_S` for a
    notebook whose last execution computed runs or that never ran there."""
    try:
        entries = json.loads(Path(manifest).read_text())["notebooks"]
    except (OSError, ValueError, KeyError):
        entries = {}
    out = {}
    for nb in names:
        e = entries.get(nb) or {}
        redraw = (e.get("profile") == profile and e.get("status") == "ok" and e.get("runs_computed") == 0
                  and e.get("wall_time_s") is not None)
        out[nb] = float(e["wall_time_s"]) if redraw else DEFAULT_OVERHEAD_S
    return out


def makespan(costs, jobs: int) -> float:
    """Wall seconds of running ``costs`` (seconds, in submission order) on ``jobs`` workers,
    each run going to the worker that frees first (the local executor's process pool): at
    least the longest run, not only sum / jobs."""
    free = [0.0] * max(1, int(jobs))
    for t in costs:
        i = free.index(min(free))
        free[i] += float(t)
    return max(free)


def _total_row(name, g, todo, jobs: int, overhead: float = 0.0, wall: float | None = None) -> dict:
    t = g[todo]
    wall = makespan(t["cost_s"], jobs) + overhead if wall is None else wall
    return {"notebook": name, "runs": len(g), "cached": int((~todo).sum()), "to run": len(t),
            "training": format_seconds(t["train_s"].sum()),
            "measuring": format_seconds(t["measure_s"].sum()),
            "total (one job)": format_seconds(t["cost_s"].sum()),
            f"wall, {jobs} parallel job(s)": format_seconds(wall)}


#: files (globs under the data root) whose presence means ``core.data.load_data`` finds a data
#: set without a download: its decoded cache, the torchvision layout, the CIFAR-10 JPEG copy
_DATA_FILES = {"cifar10": ("breakeven_cache/cifar10-*.npz", "cifar-10-batches-py/data_batch_1",
                           "cifar10-jpeg/train"),
               "cifar100": ("breakeven_cache/cifar100-*.npz", "cifar-100-python/train"),
               "fashion_mnist": ("breakeven_cache/fashion_mnist-*.npz",
                                 "FashionMNIST/raw/train-images-idx3-ubyte*"),
               "mnist": ("breakeven_cache/mnist-*.npz", "MNIST/raw/train-images-idx3-ubyte*")}


def on_disk(name: str, root=None) -> bool:
    """Whether ``core.data.load_data`` finds the data set ``name`` under the data root
    (``core.data.data_root``) without a download. Looks at file names only, so the plan lists
    what is missing before anything is read; a name with no files (``synthetic``) is on disk."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    base = data_root(root)
    return name not in _DATA_FILES or any(any(base.glob(g)) for g in _DATA_FILES[name])


def missing_data(df: pd.DataFrame) -> list[str]:
    """One line per data set the plan's runs need that is not on disk (``core.data.on_disk``):
    how many runs of which notebooks need it and where its files go."""
    lines = []
    if not len(df):
        return lines
    for name, g in df.groupby("data", sort=False):
        if name in DATASETS and not on_disk(name):
            info = DATASETS[name]
            lines.append(f"- **{info.title} is not on disk** (data root {data_root()}): {len(g)} run(s) of "
                         f"{', '.join(dict.fromkeys(g['notebook']))} need it; put the files at "
                         f"{info.offline.replace('<root>', str(data_root()))} or allow torchvision to "
                         "download it (needs internet)")
    return lines


def plan_tables(p: dict, jobs: int = 1, rows: bool = False, overhead: dict | None = None) -> str:
    """The plan as Markdown: the data sets missing from disk and the totals first, then (with
    ``rows``) one table of runs per notebook. The wall column is the :func:`makespan` of the
    runs to compute on ``jobs`` workers plus ``overhead[notebook]`` (seconds the notebook
    spends beside its runs: kernel, loading, its own analysis and figures)."""
    overhead = overhead or {}

    df = p["runs"]
    lines = [f"# Plan: profile {p['profile']!r} on {p['calibration']['key']}", ""]
    missing = missing_data(df)
    lines += (["## Data sets missing from disk", "", *missing, ""] if missing
              else ["All data sets the runs need are on disk.", ""])
    for nb, reason in p["not_built"].items():
        lines.append(f"- {nb}: {reason}")
    totals, tables = [], []
    done = df["cached"].str.startswith("yes") if len(df) else None
    for nb, g in (df.groupby("notebook", sort=False) if len(df) else []):
        t = g.assign(cost=g["cost_s"].map(format_seconds),
                     epochs=g["epochs"].map(lambda e: f"{e:g}"),
                     cached=g["cached"] + g["shared"].map(lambda s: " (run above too)" if s else ""))
        tables += ["", f"## {nb}: {len(g)} runs", "",
                   to_markdown(t[["key", "model", "data", "eta", "S", "seed", "optimizer", "epochs",
                                  "stops early", "iterations", "measurements", "cost", "cached"]],
                               float_format="{:g}")]
        totals.append(_total_row(nb, g, ~done[g.index], jobs, overhead.get(nb, 0.0)))
    if totals:
        # the notebooks run one after the other, each computing the runs no earlier one did
        distinct = df[~df["shared"]]
        todo_all = ~done[distinct.index]
        wall = sum(makespan(g.loc[todo_all[g.index], "cost_s"], jobs) + overhead.get(nb, 0.0)
                   for nb, g in distinct.groupby("notebook", sort=False))
        totals.append(_total_row("all (distinct runs)", distinct, todo_all, jobs, wall=wall))
        lines += ["## Totals (runs still to compute)", "", to_markdown(pd.DataFrame(totals))]
    lines += tables if rows else ["", "One row per run: `make plan ROWS=1` (`reproduce.py --plan --rows`)."]
    if overhead:
        lines += ["", "Wall: the runs to compute on the parallel jobs (each to the first free one), plus "
                  "each notebook's own time beside its runs (its last redraw in the manifest, else 30 s): "
                  + ", ".join(f"{nb} {format_seconds(t)}" for nb, t in overhead.items()) + "."]
    cal = p["calibration"]
    lines += ["", f"Calibration: {cal['path']} ({'measured now' if cal['calibrated_now'] else 'cached'}); "
              "counts are upper bounds for runs that stop at a training accuracy (costed to their "
              "epoch budget) and for Lanczos (cold-start HVP counts), but full-size measurements at "
              "paper took 0.2-2.1x their estimates in the preflight, those over 10 minutes 0.5-2.1x "
              "(docs/reproducing.md); "
              f"plan built in {p['seconds']:.1f} s."]
    return "\n".join(lines) + "\n"

