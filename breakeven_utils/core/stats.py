"""Bootstrap statistics of a gradient-noise estimate: standard errors of lambda_K^1 and
Tr(K) from the L x L Gram matrix of the L mini-batch gradients (break-even paper, App. C),
without recomputing a gradient. Shared by ``curvature.gradient_noise`` (the estimate's
``.bootstrap_se()``) and ``reporting.claims`` (the verdicts' standard errors)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_N_BOOT", "K_STATS", "resampled_grams", "bootstrap_se"]

#: bootstrap resamples for the standard error of a K estimate
DEFAULT_N_BOOT = 200


#: statistics of a K estimate by name, as functions of the descending eigenvalues of
#: Gram estimates: lambda_K^1 and Tr(K). The ratio lambda_K^*/lambda_K^1 is left out on
#: purpose: lambda_K^* is the smallest non-zero eigenvalue of L gradients, an extreme
#: order statistic whose bootstrap SE is wrong (measured in tests/reporting/test_claims.py: 4x the
#: Monte Carlo SE with resampling; 1/3 of it with Dirichlet weights); use the seed spread.
K_STATS = {"lambda_1": lambda ev: ev[..., 0], "trace": lambda ev: ev.sum(-1)}
_REFUSED = {"ratio": "the bootstrap SE of lambda_K^*/lambda_K^1 is not reliable (an extreme eigenvalue of "
                     "L gradients; 4x the Monte Carlo SE in tests/reporting/test_claims.py): use the spread "
                     "over seeds"}


def resampled_grams(gram, idx) -> np.ndarray:
    """Grams K* = P A[r][:, r] P / L (A = L * gram, P = I - 11^T/L) of the gradients
    g_r for each row r of ``idx`` (B x L' integer indices into the L gradients; L' = L for
    a bootstrap), i.e. the Gram of the resampled gradients re-centred on their own mean
    (see :func:`bootstrap_se`). Returns a (B, L', L') float64 array."""
    A = np.asarray(gram, dtype=float)
    idx = np.atleast_2d(np.asarray(idx))
    if idx.size and (idx.min() < 0 or idx.max() >= A.shape[0]):
        raise ValueError(f"indices must lie in [0, {A.shape[0] - 1}]")
    m = idx.shape[1]
    P = np.eye(m) - 1.0 / m
    out = P @ (A * A.shape[0])[idx[:, :, None], idx[:, None, :]] @ P / m
    return 0.5 * (out + np.swapaxes(out, 1, 2))


def bootstrap_se(gram, stat="lambda_1", n_boot: int = DEFAULT_N_BOOT, seed: int = 0):
    """Bootstrap standard error of a statistic of the L x L Gram estimate of K (App. C).

    ``gram``: K^M_ij = <c_i, c_j> / L with c_i = g_i - g the centred mini-batch
    gradients (``GradientCovariance.gram``); the uncentred G_ij = <g_i, g_j> / L works
    too. A resample draws L indices r with replacement; its gradients g_r have the Gram
    K*_kl = <g_{r_k} - g*, g_{r_l} - g*> / L, g* their mean. With P = I - 11^T/L and
    A = L * gram: K* = P A[r][:, r] P / L, because P removes any vector common to all
    rows (c_{r_k} = g_{r_k} - g, so re-centring the resampled centred vectors with their
    own mean gives g_{r_k} - g*). No gradient is recomputed: each resample costs one
    L x L eigen-decomposition.

    ``stat``: a name in :data:`K_STATS` ("lambda_1", "trace"), a callable of the
    resampled Gram (numpy L x L) returning a float, or a list of these (-> a dict keyed
    by name / function name). Returns the standard deviation (ddof=1) of the ``n_boot``
    replicates. Checked in tests/reporting/test_claims.py: Tr(K) of i.i.d. Gaussian gradients
    against its analytic SE sqrt(2 (L-1) sum_j sigma_j^4) / L, lambda_K^1 against the
    Monte Carlo SE when lambda_K^1 stands out of the bulk (the outliers of Fig. 3);
    inside the bulk the bootstrap overstates it (conservative: more "within noise").
    "ratio" is refused (see :data:`K_STATS`).
    """
    A = np.asarray(gram.detach().cpu() if hasattr(gram, "detach") else gram, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 2:
        raise ValueError(f"gram must be a square L x L matrix with L >= 2, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError("gram holds NaN/inf")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    names = [stat] if isinstance(stat, str) or callable(stat) else list(stat)
    for s in names:
        if not callable(s) and s in _REFUSED:
            raise ValueError(_REFUSED[s])
        if not callable(s) and s not in K_STATS:
            raise ValueError(f"unknown statistic {s!r}; use one of {list(K_STATS)} or a callable")
    L = A.shape[0]
    r = np.random.default_rng(seed).integers(0, L, size=(int(n_boot), L))
    boot = resampled_grams(A, r)
    out = {}
    if any(not callable(s) for s in names):
        ev = np.linalg.eigvalsh(boot)[:, ::-1]
    for s in names:
        reps = np.array([float(s(b)) for b in boot]) if callable(s) else K_STATS[s](ev)
        reps = reps[np.isfinite(reps)]
        key = s if isinstance(s, str) else getattr(s, "__name__", repr(s))
        out[key] = float(np.std(reps, ddof=1)) if len(reps) > 1 else math.nan
    return out[next(iter(out))] if len(names) == 1 and (isinstance(stat, str) or callable(stat)) else out
