"""Sharpest-directions paper (Jastrzebski et al. 2018), Sec. 2-3: Hessian top
eigenpairs and the Fig. 4 probes of the loss along the sharpest direction.

* :func:`top_eigs`: top-K eigenpairs of H ordered by magnitude (``which='LM'``,
  the authors' ``eigsh`` default) on a fixed measurement set, inference mode,
  **L2 term included**: with weight decay wd on the masked parameters (the
  recorder's ``weight_decay_on``), H = H_loss + wd * diag(mask).
* :func:`spectrum_summary`: rho(H) = the largest-magnitude eigenvalue returned,
  ||H||_F approximated by the top 5 (sqrt of the sum of squares, Sec. 4), and a
  flag when a returned eigenvalue is negative.
* Fig. 4 (Sec. 3.2): the typical SGD step along e_i,
  dtheta_i = eta * mean_j |<g_j, e_i>| over 10 mini-batch gradients g_j of size S
  (:func:`minibatch_projections`); the loss L(theta + k dtheta_i e_i) for k in
  [-8, 8] (:func:`loss_along`); k_min, the smallest |k| at which the loss
  changes by at least 1% (10%) of L(theta) (:func:`k_min`); and
  E_j[L(theta - alpha eta <g_j, e_1> e_1)] - L(theta) relative to L(theta) for
  alpha in {0.25, 0.5, 1, 2, 4} (:func:`alpha_experiment`).
* :func:`mean_weight_spectral_norm`: Table 1's rho(W), the mean over weight
  matrices of the largest singular value; a conv kernel out x in x kh x kw is
  reshaped to out x (in*kh*kw) (``params.weight_spectral_norms``).

Recorder metrics (use by name in ``RunConfig.metrics``): ``hessian_top``
(columns ``H_eig_1..k``, ``rho_H``, ``frob_H``, ``H_negative``, ``H_n_hvp``,
warm-started from the previous measurement), ``sharpest_probe`` (needs
``hessian_top``; columns ``dtheta_1``, ``kmin1_e1``, ``kmin10_e1``,
``alpha_<a>``; arrays ``loss_line_e1/e3/e5``) and ``rho_W``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .curvature import HessianEigs, _Objective, _ordered_eigs, _start_vector, frobenius_from_top
from .eigensolver import lanczos_topk
from .params import trainable_parameters, weight_spectral_norms
from .train import register_metric, weight_decay_mask

__all__ = [
    "K_GRID", "ALPHAS", "N_GRAD_BATCHES", "PROBE_DIRECTIONS",
    "top_eigs", "spectrum_summary", "check_k_grid", "loss_along", "k_min",
    "minibatch_projections", "alpha_experiment", "probe", "mean_weight_spectral_norm",
    "l2_mask_vector", "first_decrease", "schedule_claim",
]

#: k in [-8, 8] (Sec. 3.2) in steps of 0.5 (k_min is resolved to 0.5)
K_GRID = tuple(float(k) for k in np.linspace(-8, 8, 33))
ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)
N_GRAD_BATCHES = 10
PROBE_DIRECTIONS = (1, 3, 5)  # e1 (Fig. 4), e3 (Fig. 9), e5 (Fig. 10)


def l2_mask_vector(model: nn.Module, weight_decay_on: str = "all") -> torch.Tensor:
    """1.0 on the coordinates weight decay applies to, 0.0 elsewhere (flat layout)."""
    mask = weight_decay_mask(model, weight_decay_on)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([torch.full((p.numel(),), float(m), dtype=p.dtype, device=p.device)
                      for p, m in zip(params, mask)])


def top_eigs(model: nn.Module, loss_fn, data, k: int, *, which: str = "LM", tol: float = 1e-3,
             v0=None, weight_decay: float = 0.0, mask: torch.Tensor | None = None,
             bn_mode: str = "eval", seed: int = 0, max_hvp: int | None = None,
             batch_size: int | None = 512, dtype=None) -> HessianEigs:
    """Top-k eigenpairs of H = Hessian of the mean loss over ``data`` + ``weight_decay``
    * diag(``mask``) (the L2 term, Sec. 2), by Lanczos with full reorthogonalisation
    (``curvature.hessian_eigs``'s solver), stopped at ARPACK's residual criterion
    ``tol``; ``v0`` warm-starts from previous eigenvectors. ``which='LM'``: ordered by
    |lambda| as ``eigsh``'s default. ``mask=None`` applies the L2 term to every
    parameter. Raises ValueError when k >= D or k exceeds the Lanczos space."""
    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' or 'LM', got {which!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    obj = _Objective(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype, batch_size=batch_size)
    steps = min(obj.dim, max_hvp if max_hvp is not None else 300)
    if k >= obj.dim:
        raise ValueError(f"k={k} eigenvectors need more than D={obj.dim} parameters")
    if k > steps:
        raise ValueError(f"k={k} exceeds the Lanczos space of {steps} vectors (max_hvp)")
    if weight_decay > 0:
        m = (torch.ones(obj.dim) if mask is None else torch.as_tensor(mask)).to(obj.device, obj.dtype)
        if m.shape != (obj.dim,):
            raise ValueError(f"mask must have shape ({obj.dim},), got {tuple(m.shape)}")

        def matvec(v):
            return obj.hvp(v) + weight_decay * m * v
    else:
        matvec = obj.hvp
    start = _start_vector(obj, v0, seed)
    vals, vecs, ok = lanczos_topk(matvec, start, k, which, max(tol, 1e-14), steps, seed=seed)
    if not ok:
        raise RuntimeError(f"top_eigs: Lanczos did not reach tol={tol} within {steps} HVPs")
    return _ordered_eigs(vals.numpy(), vecs, obj, which)


def spectrum_summary(values) -> dict:
    """rho(H) (the largest-magnitude eigenvalue returned), ||H||_F from the top 5
    (Sec. 4) and whether a returned eigenvalue is negative."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("spectrum_summary: no eigenvalues")
    top = v[torch.argsort(v.abs(), descending=True, stable=True)]
    return {"rho_H": float(top[0]), "frob_H": frobenius_from_top(top[:5]),
            "H_negative": bool((v < 0).any())}


def check_k_grid(ks) -> np.ndarray:
    """The interpolation grid as a sorted float array; it must contain k = 0
    (the reference loss L(theta)) and only finite values."""
    k = np.asarray(ks, dtype=float).reshape(-1)
    if k.size < 2 or not np.isfinite(k).all():
        raise ValueError(f"k grid needs at least 2 finite values, got {ks!r}")
    if not (k == 0).any():
        raise ValueError("k grid must include k = 0 (the loss at the current parameters)")
    if np.any(np.diff(k) <= 0):
        raise ValueError("k grid must be strictly increasing")
    return k


def _param_dict(model):
    return {n: p.detach() for n, p in trainable_parameters(model)}


@torch.no_grad()
def _loss_at(model, loss_fn, x, y, params: dict, buffers: dict, batch_size: int = 1024) -> float:
    tot = 0.0
    for i in range(0, len(y), batch_size):
        out = functional_call(model, (params, buffers), (x[i:i + batch_size],))
        tot += float(loss_fn(out, y[i:i + batch_size])) * len(y[i:i + batch_size])
    return tot / len(y)


@torch.no_grad()
def loss_along(model: nn.Module, loss_fn, data, direction: torch.Tensor, steps) -> np.ndarray:
    """L(theta + s * direction) for each s in ``steps`` (flat ``direction`` in the layout
    of the trainable parameters), in inference mode; the model is not modified."""
    x, y = data
    params = _param_dict(model)
    names = list(params)
    d = torch.as_tensor(direction).reshape(-1)
    dim = sum(p.numel() for p in params.values())
    if d.numel() != dim:
        raise ValueError(f"direction has {d.numel()} entries, the model {dim} parameters")
    chunks = d.to(next(iter(params.values()))).split([p.numel() for p in params.values()])
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    was = model.training
    model.eval()
    try:
        out = []
        for s in np.asarray(steps, dtype=float):
            p = {n: params[n] + float(s) * c.view_as(params[n]) for n, c in zip(names, chunks)}
            out.append(_loss_at(model, loss_fn, x, y, p, buffers))
        return np.asarray(out)
    finally:
        model.train(was)


def k_min(ks, losses, frac: float) -> float:
    """Smallest |k| at which |L(k) - L(0)| >= frac * |L(0)| (Sec. 3.2); NaN if no k of
    the grid changes the loss that much."""
    k = check_k_grid(ks)
    L = np.asarray(losses, dtype=float)
    if L.shape != k.shape:
        raise ValueError("ks and losses differ in length")
    L0 = L[k == 0][0]
    hit = np.abs(L - L0) >= frac * abs(L0)
    return float(np.min(np.abs(k[hit]))) if hit.any() else float("nan")


def minibatch_projections(model: nn.Module, loss_fn, train, vectors: torch.Tensor, *,
                          n_batches: int = N_GRAD_BATCHES, batch_size: int = 128,
                          seed: int = 0) -> torch.Tensor:
    """<g_j, e_i> for ``n_batches`` mini-batch gradients g_j of size ``batch_size`` drawn
    without replacement from ``train`` (inference mode): an (n_batches x k) tensor."""
    x, y = (train.x, train.y) if hasattr(train, "x") else train
    need = n_batches * batch_size
    if need > len(y):
        raise ValueError(f"{n_batches} mini-batches of {batch_size} need {need} examples, "
                         f"the training set has {len(y)}")
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(y), generator=gen)[:need].to(y.device)
    params = [p for p in model.parameters() if p.requires_grad]
    V = torch.as_tensor(vectors)
    was = model.training
    model.eval()
    try:
        out = []
        for j in range(n_batches):
            b = idx[j * batch_size:(j + 1) * batch_size]
            gs = torch.autograd.grad(loss_fn(model(x[b]), y[b]), params, allow_unused=True)
            g = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                           for gi, p in zip(gs, params)])
            out.append(V.to(g) @ g)
        return torch.stack(out)
    finally:
        model.train(was)


def alpha_experiment(model: nn.Module, loss_fn, data, e1: torch.Tensor, proj_1, lr: float,
                     alphas: Sequence[float] = ALPHAS) -> dict[float, float]:
    """(E_j[L(theta - alpha lr <g_j, e1> e1)] - L(theta)) / L(theta) per alpha (Fig. 4
    right), the expectation over the mini-batch projections ``proj_1``."""
    steps = []
    for a in alphas:
        steps += [-float(a) * lr * float(p) for p in np.asarray(proj_1).reshape(-1)]
    losses = loss_along(model, loss_fn, data, e1, [0.0] + steps)
    L0, rest = losses[0], losses[1:].reshape(len(alphas), -1)
    return {float(a): float((r.mean() - L0) / L0) for a, r in zip(alphas, rest)}


def probe(model: nn.Module, loss_fn, data, train, eigs: HessianEigs, lr: float, *,
          batch_size: int = 128, ks=K_GRID, alphas=ALPHAS, n_batches: int = N_GRAD_BATCHES,
          directions: Sequence[int] = PROBE_DIRECTIONS, seed: int = 0) -> dict:
    """The Fig. 4 probes at the current parameters: per direction i (1-based, those
    <= k): dtheta_i = lr * mean_j |<g_j, e_i>| and the loss L(theta + k dtheta_i e_i)
    over ``ks``; k_min at 1% and 10% for e_1 and the alpha experiment along e_1.
    ``data``: the (x, y) the loss is evaluated on (the Hessian measurement set)."""
    ks = check_k_grid(ks)
    dirs = [i for i in directions if i <= len(eigs.values)]
    proj = minibatch_projections(model, loss_fn, train, eigs.vectors[[i - 1 for i in dirs]],
                                 n_batches=n_batches, batch_size=batch_size, seed=seed)
    out = {"lines": {}, "dtheta": {}}
    for c, i in enumerate(dirs):
        dt = lr * float(proj[:, c].abs().mean())
        out["dtheta"][i] = dt
        out["lines"][i] = loss_along(model, loss_fn, data, eigs.vectors[i - 1], ks * dt)
    L1 = out["lines"][1]
    out["kmin1"], out["kmin10"] = k_min(ks, L1, 0.01), k_min(ks, L1, 0.10)
    out["alpha"] = alpha_experiment(model, loss_fn, data, eigs.vectors[0], proj[:, 0], lr, alphas)
    return out


def mean_weight_spectral_norm(model: nn.Module) -> float:
    """Table 1's rho(W): mean largest singular value over the weight matrices; a conv
    kernel out x in x kh x kw is reshaped to out x (in*kh*kw)."""
    norms = weight_spectral_norms(model)
    return float(np.mean(list(norms.values()))) if norms else float("nan")


# ----------------------------------------------------------------------------- recorder metrics


def _measure_xy(ctx):
    m, n = ctx.data.measure, ctx.config.hessian_n
    return (m.x, m.y) if n is None else (m.x[:n], m.y[:n])


@register_metric("hessian_top")
def _m_hessian_top(ctx) -> dict:
    """Top ``hessian_k`` eigenpairs (``hessian_which``, L2 included) on the first
    ``hessian_n`` measurement examples, warm-started from the previous measurement; an
    NSGD-type rule that refreshed at this very iteration with the same settings (LM,
    inference mode, at least k vectors, the same examples, a tolerance as tight) gives
    its eigenpairs instead (``H_n_hvp`` is then 0)."""
    c = ctx.config
    reuse = getattr(ctx.rule, "eigs_at", None)
    h = None
    if reuse is not None and c.hessian_which == "LM" and c.hessian_bn_mode == "eval":
        h = reuse(ctx.iteration, c.hessian_k, c.hessian_n, c.hessian_tol)
    if h is None:
        mask = l2_mask_vector(ctx.model, c.weight_decay_on) if c.weight_decay > 0 else None
        h = top_eigs(ctx.model, ctx.loss_fn, _measure_xy(ctx), c.hessian_k, which=c.hessian_which,
                     tol=c.hessian_tol, v0=ctx.state.get("top_v0"), weight_decay=c.weight_decay,
                     mask=mask, bn_mode=c.hessian_bn_mode, seed=c.seed)
    ctx.state["top_v0"] = h.vectors.detach().clone()
    ctx.cache["hessian_top"] = h
    row = {f"H_eig_{i + 1}": float(v) for i, v in enumerate(h.values)}
    row.update(spectrum_summary(h.values))
    row["H_negative"] = float(row["H_negative"])
    row["H_n_hvp"] = float(h.n_hvp)
    return row


@register_metric("sharpest_probe")
def _m_sharpest_probe(ctx) -> dict:
    """Fig. 4 probes (see :func:`probe`) with the eigenvectors of ``hessian_top``."""
    h = ctx.cache.get("hessian_top")
    if h is None:
        raise ValueError("metric 'sharpest_probe' needs 'hessian_top' in RunConfig.metrics")
    c = ctx.config
    r = probe(ctx.model, ctx.loss_fn, _measure_xy(ctx), ctx.data.train, h, ctx.lr,
              batch_size=c.batch_size, seed=c.seed * 1_000_003 + ctx.iteration + 11)
    arrays = ctx.cache.setdefault("arrays", {})
    for i, line in r["lines"].items():
        arrays[f"loss_line_e{i}"] = line
    row = {f"dtheta_{i}": v for i, v in r["dtheta"].items()}
    row.update(kmin1_e1=r["kmin1"], kmin10_e1=r["kmin10"])
    row.update({f"alpha_{a:g}": v for a, v in r["alpha"].items()})
    return row


@register_metric("rho_W")
def _m_rho_W(ctx) -> dict:
    return {"rho_W": mean_weight_spectral_norm(ctx.model)}


# ----------------------------------------------------------------------------- claims (Sec. 3)


def _series(m, col):
    m = m.sort_values("iteration")
    return m["epoch"].to_numpy(float), pd_num(m[col])


def pd_num(s) -> np.ndarray:
    import pandas as pd
    return pd.to_numeric(s, errors="coerce").to_numpy(float)


def growth_claim(metrics, setting: str, window: int = 3, figure_file: str = ""):
    """Sec. 3.1 / Fig. 2: rho(H) grows early to a peak, then decays or stabilises.
    Holds when the smoothed peak exceeds the first value by more than 5% and lies
    before the last measurement; still rising at the end -> not testable here."""
    from . import claims as cl

    ep, rho = _series(metrics, "rho_H")
    rho = np.abs(rho)
    sm = cl.smoothed_max(rho, window)
    ours = {"rho_H(0)": rho[0] if len(rho) else np.nan, "smoothed peak": sm.value,
            "peak epoch": ep[sm.index] if sm.index >= 0 else np.nan,
            "final": cl.smooth(rho, window)[-1] if len(rho) else np.nan}
    grew = np.isfinite(sm.value) and sm.value > 1.05 * rho[0]
    if not np.isfinite(sm.value):
        v, why = None, "no finite rho(H) measured"
    elif not grew:
        v, why = False, "the smoothed rho(H) never exceeds its initial value by 5%"
    elif sm.at_end:
        v, why = None, "rho(H) is still rising at the last measurement of the budget"
    else:
        v, why = True, f"moving average over {window} measurements"
    return cl.Claim("sharpest", "3.1", "Fig. 2", "The largest Hessian eigenvalues grow in the first "
                    "epochs up to a peak, then decay (SimpleCNN) or stabilise", setting,
                    "peak within the first epoch, then decay", ours, v, why, figure_file)


def peak_claims(runs: dict, param: str, setting: str, window: int = 3, figure_file: str = "") -> list:
    """Sec. 3.1 / Fig. 3: a larger eta (smaller S) gives a smaller and earlier peak of
    rho(H). ``runs``: {setting value: metrics}; ``param``: 'lr' or 'batch_size'.
    Orderings by ``claims.ordering_verdict`` (5% margin: no standard error per run).

    A run whose smoothed rho(H) is largest at its first measurement has no peak (left
    out, said). One still rising at its last measurement has not peaked within the run:
    its height and epoch are lower bounds, so a verdict stands only if it is the same
    with that run's peak moved arbitrarily higher and later; else not testable."""
    from . import claims as cl

    xs, peaks, where, at_start, at_end = [], [], [], [], []
    sym = "eta" if param == "lr" else "S"
    for x, m in sorted(runs.items()):
        ep, rho = _series(m, "rho_H")
        sm = cl.smoothed_max(np.abs(rho), window)
        xs.append(float(x))
        peaks.append(sm.value if not sm.at_start else np.nan)
        where.append(ep[sm.index] if sm.index >= 0 and not sm.at_start else np.nan)
        if sm.at_start:
            at_start.append(f"{sym}={float(x):g}")
        at_end.append(sm.at_end and not sm.at_start)
    sign = -1 if param == "lr" else +1
    notes = []
    if at_start:
        notes.append(f"no peak after the start for {', '.join(at_start)} (the smoothed rho(H) is largest "
                     "at the first measurement: a denser early schedule would be needed)")
    rising = [f"{sym}={x:g}" for x, e in zip(xs, at_end) if e]
    out = []
    for _what, vals, claim in (
            ("height", peaks, f"A larger {'eta' if param == 'lr' else 'batch size S'} gives a "
                              f"{'smaller' if param == 'lr' else 'larger'} peak of rho(H)"),
            ("position", where, f"A larger {'eta' if param == 'lr' else 'batch size S'} gives "
                                f"{'an' if param == 'lr' else 'a'} "
                                f"{'earlier' if param == 'lr' else 'later'} peak of rho(H) (epochs)")):
        o = cl.ordering_verdict(xs, vals, None, sign, symbol=sym)
        verdict, why = o.verdict, [o.reason or f"margin {o.margin}"]
        if rising:
            big = 1e6 * (np.nanmax(np.abs(vals)) + 1.0)  # the censored peaks pushed far up / later
            bound = [big if e else v for v, e in zip(vals, at_end)]
            if cl.ordering_verdict(xs, bound, None, sign, symbol=sym).verdict != verdict:
                verdict = cl.UNTESTABLE
                why.insert(0, "the verdict depends on where the unreached peak lies")
            why.insert(0, f"{', '.join(rising)} still rising at the last measurement (its value is a "
                          "lower bound of the peak; a longer run would decide it)")
        out.append(cl.Claim("sharpest", "3.1", "Fig. 3", claim, setting,
                            "smaller, earlier peak for larger eta / smaller S (no numbers given)",
                            {f"{sym}={x:g}": v for x, v in zip(xs, vals)}, verdict,
                            "; ".join(notes + why), figure_file))
    return out


def probe_summary(metrics, from_epoch: float) -> dict:
    """Averages of the Fig. 4 probes over the measurements at epoch >= ``from_epoch``
    (the paper averages k_min over the last 100 iterations): k_min(1%), k_min(10%)
    (mean over the probes where the grid reached that change, and how many did), and
    the alpha experiment's mean relative change with its standard error."""
    from . import claims as cl

    m = metrics[metrics["epoch"] >= from_epoch]
    out = {"n_probes": int(len(m)), "from_epoch": float(from_epoch)}
    for c in ("kmin1_e1", "kmin10_e1"):
        v = pd_num(m[c]) if c in m else np.array([])
        out[c] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
        out[c + "_found"] = int(np.isfinite(v).sum())
    for a in ALPHAS:
        c = f"alpha_{a:g}"
        mean, se, n = cl.mean_se(pd_num(m[c]) if c in m else [])
        out[c], out[c + "_se"] = mean, se
    return out


def probe_claims(summary: dict, model: str, setting: str, figure_file: str = "") -> list:
    """Sec. 3.2: the SGD step is too large along e1 (alpha > 1 raises the loss, alpha < 1
    lowers it, each beyond 1.96 standard errors over the probes), and k_min."""
    from . import claims as cl

    key = "simplecnn" if "simple" in model else "resnet32"
    paper_alpha = PAPER_ALPHA.get(key, {})
    signs = {0.25: -1, 0.5: -1, 2.0: +1, 4.0: +1}
    res = []
    for a, sgn in signs.items():
        mean, se = summary[f"alpha_{a:g}"], summary[f"alpha_{a:g}_se"]
        if not np.isfinite(mean):
            res.append(None)
        elif np.isfinite(se) and sgn * mean > cl.Z * se:
            res.append(True)
        elif np.isfinite(se) and sgn * mean < -cl.Z * se:
            res.append(False)
        else:
            res.append(None)
    if any(r is False for r in res):
        v, why = False, "an alpha changes the loss against the prediction beyond 1.96 SE"
    elif all(r is True for r in res):
        v, why = True, f"each mean beyond 1.96 SE over {summary['n_probes']} probes"
    else:
        v, why = None, f"within noise: not every alpha beyond 1.96 SE over {summary['n_probes']} probes"
    ours = {f"alpha={a:g}": f"{100 * summary[f'alpha_{a:g}']:+.2f}%" for a in ALPHAS}
    paper = ", ".join(f"alpha={a:g}: {100 * p:+.1f}%" for a, p in paper_alpha.items())
    out = [cl.Claim("sharpest", "3.2", "Fig. 4", "Along e1 the SGD step is too large: a step "
                    "alpha eta g1 with alpha > 1 raises the loss, alpha < 1 lowers it", setting,
                    paper, ours, v, why, figure_file)]
    pk = PAPER_KMIN.get(key, (np.nan, np.nan))
    k1, k10 = summary["kmin1_e1"], summary["kmin10_e1"]
    found = summary["kmin1_e1_found"]
    if summary["n_probes"] == 0 or found == 0:
        v, why = None, "no probe changed the loss by 1% within k in [-8, 8]"
    else:
        v = found == summary["n_probes"]
        why = (f"k_min(1%) found in {found} of {summary['n_probes']} probes; "
               f"k_min(10%) in {summary['kmin10_e1_found']}")
    out.append(cl.Claim("sharpest", "3.2", "Fig. 4", "The loss along e1 is a narrow bowl: it changes "
                        "by 1% (10%) within a few typical SGD steps along e1 (k_min)", setting,
                        f"k_min = {pk[0]} ({pk[1]})", f"k_min = {k1:.2f} ({k10:.2f})", v, why,
                        figure_file))
    return out


PAPER_KMIN = {"simplecnn": (3.36, 5.52), "resnet32": (1.56, 4.08)}
PAPER_ALPHA = {"simplecnn": {0.25: -0.02, 0.5: -0.02, 2.0: 0.021, 4.0: 0.111},
               "resnet32": {0.25: -0.03, 0.5: -0.03, 2.0: 0.03, 4.0: 0.131}}


def _three_way(checks) -> tuple:
    """checks: [(step in the predicted direction, margin)] -> (verdict, outcome words)."""
    if any(d < -m for d, m in checks):
        return False, "against the prediction beyond the margin"
    if any(abs(d) <= m for d, m in checks):
        return None, "within noise"
    return True, ""


def variant_claims(curves: dict, setting: str, figure_file: str = "") -> list:
    """Sec. 3.3 / Fig. 5 from {label: (iterations, loss, rho)} of the restarted runs, each
    end value the mean of the last 3 measurements:

    - "SGD no top" reduces the loss like SGD (its decrease at least half of SGD's) while
      rho(H) keeps rising (by more than 5%); the paper restarts where SGD's own rho(H) has
      stabilised, so when SGD's rho(H) also rises by more than 5% the contrast is not
      testable at this restart point;
    - "SGD top" ends with a lower rho(H) than SGD (by more than 5%) and reduces the loss
      less than half as much as SGD;
    - gamma < 1 along e1 ends sharper than SGD, gamma > 1 flatter (5% margins).
    A step against the prediction beyond its margin -> does not hold; inside it -> not
    testable (within noise)."""
    from . import claims as cl

    def ends(label):
        it, loss, rho = curves[label]
        rho = np.abs(np.asarray(rho, float))
        return float(loss[0]), float(np.mean(loss[-3:])), float(rho[0]), float(np.mean(rho[-3:]))

    out = []
    if "SGD" not in curves:
        return out
    l0, lS, r0, rS = ends("SGD")
    dS = l0 - lS  # SGD's loss decrease
    sgd_rise = rS / r0 - 1
    if "SGD no top" in curves:
        a0, aE, b0, bE = ends("SGD no top")
        v, why = _three_way([((a0 - aE) - 0.5 * dS, 0.0), (bE - 1.05 * b0, 0.0)])
        if v and sgd_rise > 0.05:
            v, why = None, (f"vanilla SGD's rho(H) rises by {100 * sgd_rise:.0f}% too: the restart point "
                            "is before the stabilisation the paper restarts at")
        out.append(cl.Claim("sharpest", "3.3", "Fig. 5", "\"SGD no top\" reduces the loss like SGD "
                            "while rho(H) keeps rising", setting, "loss like SGD, rho(H) rising",
                            {"loss decrease": a0 - aE, "SGD loss decrease": dS, "rho start": b0,
                             "rho end": bE, "SGD rho end": rS}, v,
                            why or "decrease >= half of SGD's, rho(H) up > 5%", figure_file))
    if "SGD top" in curves:
        a0, aE, b0, bE = ends("SGD top")
        v, why = _three_way([(0.95 * rS - bE, 0.0), (0.5 * dS - (a0 - aE), 0.0)])
        out.append(cl.Claim("sharpest", "3.3", "Fig. 5", "\"SGD top\" finds a region with lower "
                            "rho(H) than SGD but does not reduce the loss like SGD", setting,
                            "lower rho(H), loss not decreasing",
                            {"loss decrease": a0 - aE, "SGD loss decrease": dS, "rho end": bE,
                             "SGD rho end": rS}, v,
                            why or "rho(H) > 5% below SGD's, loss decrease < half of SGD's", figure_file))
    gam = {float(k.split("=")[1].split()[0]): k for k in curves if k.startswith("gamma=")}
    if gam:
        res = {g: ends(k)[3] for g, k in gam.items()}
        checks = [((r - rS) if g < 1 else (rS - r), 0.05 * max(r, rS)) for g, r in res.items()]
        v, why = _three_way(checks)
        out.append(cl.Claim("sharpest", "3.3", "Fig. 5", "Rescaling eta along e1 by gamma < 1 moves "
                            "to sharper regions (larger rho(H)), gamma > 1 to flatter ones", setting,
                            "gamma < 1 sharper, gamma > 1 flatter",
                            {**{f"gamma={g:g}": r for g, r in sorted(res.items())}, "SGD": rS}, v,
                            (why + "; " if why else "") + "rho(H) of the last 3 measurements vs SGD's, "
                            "5% margins", figure_file))
    return out


def first_decrease(config, bpe: int, total: int) -> int | None:
    """The first iteration t < ``total`` at which the scheduled learning rate is lower
    than at t - 1 (step: the first milestone's first iteration; one cycle: just past
    the peak); None if it never decreases (constant)."""
    from .rules import Schedule

    sched = Schedule(config, bpe)
    prev = sched(0)
    for t in range(1, total):
        cur = sched(t)
        if cur < prev:
            return t
        prev = cur
    return None


def schedule_claim(runs: dict, drops: dict, setting: str, figure_file: str = "", rtol: float = 0.05):
    """App. D / Fig. 15: rho(H) decays after the learning rate decreases (step-wise decay,
    one cycle). ``runs``: {schedule: metrics}; ``drops``: {schedule: first iteration of
    lower eta} (:func:`first_decrease`; None for constant). Per decaying schedule: |rho(H)|
    at the last measurement before the drop vs the mean of the last 2 measurements: a
    fall by more than ``rtol`` holds, a rise by more does not, else within noise (no
    standard error per run). The constant schedule's change over the same window is
    reported beside it (the paper: the decay agrees with the general decay after the peak)."""
    from . import claims as cl

    ours, checks = {}, []
    for kind, m in runs.items():
        t0 = drops.get(kind)
        ref = next((t for k, t in drops.items() if t is not None), None)
        t0 = t0 if t0 is not None else ref
        if t0 is None:
            continue
        m = m.sort_values("iteration")
        it, rho = m["iteration"].to_numpy(), np.abs(pd_num(m["rho_H"]))
        before = rho[it < t0]
        if not len(before) or (it >= t0).sum() < 1 or not np.isfinite(rho[-2:]).all():
            continue
        change = float(np.mean(rho[-2:]) / before[-1] - 1)
        ours[f"{kind}: rho change after iter {t0}"] = f"{100 * change:+.1f}%"
        if drops.get(kind) is not None:
            checks.append(-change - rtol)  # > 0: a decay beyond the margin
    if not checks:
        v, why = None, "no run with a learning-rate decrease and measurements on both sides of it"
    elif any(c < -2 * rtol for c in checks):
        v, why = False, f"rho(H) rises by more than {100 * rtol:g}% after a decrease"
    elif all(c > 0 for c in checks):
        v, why = True, f"every decaying schedule: rho(H) falls by more than {100 * rtol:g}%"
    else:
        v, why = None, f"within noise: a change within {100 * rtol:g}%"
    return cl.Claim("sharpest", "App. D", "Fig. 15", "rho(H) decays after the learning rate "
                    "decreases (step-wise decay, one cycle)", setting,
                    "VGG-11: decays after the decrease (no numbers given)", ours, v,
                    why + "; |rho(H)| at the last measurement before the decrease vs the mean of the "
                    "last 2", figure_file)
