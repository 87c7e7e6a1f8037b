"""Notebook 3's settings (break-even paper Sec. 4.3, App. H): the profile's ``batchnorm``
section validated before any training, the two models and the metrics their runs record,
and the numbers the paper's text reports with their sentences (:data:`PAPER_VALUES`)."""

from __future__ import annotations

import math

import numpy as np

from breakeven_utils.core.profiles import get_profile

__all__ = ["settings", "check_settings", "BN_MODEL", "PLAIN_MODEL", "METRICS_BN", "METRICS_PLAIN",
           "PAPER_VALUES", "G5_READING"]

#: SimpleCNN with BatchNorm after every layer but the last, and plain SimpleCNN
BN_MODEL, PLAIN_MODEL = "simple_cnn_bn", "simple_cnn"
#: recorded along the runs of SimpleCNN-BN (lambda_H where the profile says so) and of SimpleCNN
METRICS_BN = ("train", "val", "K", "g_over_g5", "gamma_norm", "lambda_H")
METRICS_PLAIN = ("train", "val", "K", "g_over_g5")

_G5_QUOTE = ("Sec. 4.3: \"First, the maximum and minimum values of ||g||/||g_5|| are 1.90 (1.37) "
             "and 2.02 (1.09), respectively.\"")
#: how the table reads the sentence above (README of the papers: two readings exist)
G5_READING = ("sentence read per setting: SimpleCNN-BN eta=0.001 max 1.90 (min 1.37), SimpleCNN eta=0.01 "
              "max 2.02 (min 1.09); the per-statistic reading gives SimpleCNN-BN a minimum above its maximum")

#: numbers the paper's text reports: key -> (value, the sentence it comes from)
PAPER_VALUES = {
    "g_over_g5_max_bn_0.001": (1.90, _G5_QUOTE),
    "g_over_g5_min_bn_0.001": (1.37, _G5_QUOTE),
    "g_over_g5_max_plain_0.01": (2.02, _G5_QUOTE),
    "g_over_g5_min_plain_0.01": (1.09, _G5_QUOTE),
    "lambda_K_1_max_bn_0.001": (12.05, "Sec. 4.3: \"Second, the maximum and minimum values of "
                                       "lambda_K^1 are 12.05 and 3.30, respectively.\""),
    "lambda_K_1_max_plain_0.01": (3.30, "Sec. 4.3 (same sentence); Sec. 4.2 gives 3.30 for SimpleCNN "
                                        "at eta=0.01"),
    "lambda_K_ratio_max_bn_0.001": (0.343, "Sec. 4.3: \"Finally, lambda_K^*/lambda_K^1 reaches 0.343 "
                                           "in the first setting, and 0.24 in the second setting.\""),
    "lambda_K_ratio_max_plain_0.01": (0.24, "Sec. 4.3 (same sentence)"),
}


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``batchnorm`` section and ``overrides``,
    validated by :func:`check_settings` (bad input fails here, before any training)."""
    s = get_profile(profile, section="batchnorm", **overrides)
    check_settings(s)
    return s


def _numbers(s, key, kind, positive=True):
    v = s.get(key)
    if v is None or isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
        raise ValueError(f"{key} must be a list of {kind}s, got {v!r}")
    if len(v) == 0:
        raise ValueError(f"{key} is empty: give at least one {kind}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) \
                or not math.isfinite(x) or (positive and x <= 0):
            raise ValueError(f"{key} must hold positive finite numbers, got {x!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"{key} holds duplicates: {list(v)}")
    return list(v)


def check_settings(s: dict) -> None:
    """Raise ValueError for settings no run could use: an empty eta or S list, a batch
    size above the training set, K's L*M above it, ||g||/||g_5|| with L < 6."""
    _numbers(s, "bn_lrs", "learning rate")
    _numbers(s, "plain_lrs", "learning rate")
    sizes = _numbers(s, "batch_sizes", "batch size")
    for S in sizes:
        if int(S) != S:
            raise ValueError(f"batch sizes must be integers, got {S!r}")
    n = s["n_train"]
    for S in sizes + [s["batch_size"]]:
        if n is not None and S > n:
            raise ValueError(f"batch size S={S} is larger than the training set (n_train={n})")
    if not (isinstance(s["lr_for_S"], (int, float)) and s["lr_for_S"] > 0):
        raise ValueError(f"lr_for_S must be a positive number, got {s['lr_for_S']!r}")
    if s["K_L"] < 6:
        raise ValueError(f"||g||/||g_5|| needs K_L >= 6 (5 non-zero eigenvectors of K), got {s['K_L']}")
    if n is not None and s["K_L"] * s["K_M"] > n:
        raise ValueError(f"K needs K_L*K_M = {s['K_L']}*{s['K_M']} <= n_train = {n}")
    if int(s["window"]) != s["window"] or s["window"] < 1:
        raise ValueError(f"window must be a positive integer, got {s['window']!r}")
