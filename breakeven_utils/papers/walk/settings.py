"""A Walk with SGD (Xing et al. 2018): notebook 4's settings and the paper's numbers.

``settings(profile)`` reads the profile's ``walk`` section and validates it before any
training (an epoch to interpolate beyond the run's budget, a negative noise factor, an
unknown model family raise ``ValueError``); ``PAPER_VALUES`` are the numbers the text
reports, each with where it says so.
"""
from __future__ import annotations

import math

from breakeven_utils.core.profiles import get_profile

__all__ = ["EXPERIMENTS", "FAMILY_KEYS", "PAPER_VALUES", "settings", "validate", "batches_per_epoch"]

#: the experiments of notebook 4 (the paper's figures and tables, see ``runs``)
EXPERIMENTS = ("trajectory", "tables", "cosine", "noise", "schedules")

#: the keys of a model family (data set, model, sizes, batch size, label)
FAMILY_KEYS = ("dataset", "normalize", "model", "model_kwargs", "n_train", "n_val", "n_test",
               "batch_size", "label")

#: numbers the paper's text reports: key -> (value, where)
PAPER_VALUES = {
    "barriers_vgg11": ((0, 0, 5, 13), "Table 1, VGG-11 on CIFAR-10, epochs 1/10/25/100"),
    "barriers_resnet56": ((0, 0, 2, 23), "Table 1, ResNet-56 on CIFAR-10, epochs 1/10/25/100"),
    "barriers_mlp": ((0, 3, 5, None), "Table 1, MLP on MNIST, epochs 1/10/25 (trained 40 epochs)"),
    "height_vgg11_lr0.1": ((0.0625, 0.0199, 0.0104, 0.0025), "Table 2, VGG-11, lr 0.1, epochs 1/10/25/100"),
    "height_vgg11_lr0.05": ((0.0102, 0.0050, 0.0035, 0.0011), "Table 2, VGG-11, lr 0.05"),
    "height_resnet56_lr0.3": ((0.0380, 0.0131, 0.0094, 0.0017), "Table 2, ResNet-56, lr 0.3"),
    "height_resnet56_lr0.15": ((0.0084, 0.0034, 0.0020, 0.0013), "Table 2, ResNet-56, lr 0.15"),
    "dist_40_gd": (1.4, "Sec. 3.1: GD distance from init after 40 iterations, VGG-11 (~1.4)"),
    "dist_40_sgd": (1.7, "Sec. 3.1: SGD distance after 40 iterations, VGG-11 (~1.7)"),
    "gd_cos": (-1.0, "Fig. 1: GD cosine close to -1 after ~20 iterations (and for 1500 iterations, Sec. 4)"),
    "param_norm_gd": (87, "Sec. 4: final parameter norm, GD (VGG-11)"),
    "param_norm_sgd": (82, "Sec. 4: final parameter norm, SGD"),
    "param_norm_noise": ((369, 443), "Sec. 4: final parameter norms with isotropic variance 0.014 / 0.028"),
}


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``walk`` section and ``overrides``; validated."""
    s = get_profile(profile, section="walk", **overrides)
    validate(s)
    return s


def batches_per_epoch(fam: dict, batch_size: int | None = None) -> int:
    """Mini-batches per epoch (the recorder drops the last incomplete batch)."""
    return int(fam["n_train"]) // int(batch_size or fam["batch_size"])


def validate(s: dict) -> None:
    """Bad settings raise ValueError before any training."""
    fams = s.get("families") or {}
    for name, fam in fams.items():
        missing = [k for k in ("dataset", "model", "n_train", "batch_size") if k not in fam]
        if missing:
            raise ValueError(f"walk family {name!r} lacks {missing}")
        if batches_per_epoch(fam) < 1:
            raise ValueError(f"walk family {name!r}: batch_size exceeds n_train")

    def fam_of(sec, key="family"):
        f = sec.get(key)
        if f not in fams:
            raise ValueError(f"unknown walk model family {f!r}; defined: {sorted(fams)}")
        return fams[f]

    tr = s.get("trajectory") or {}
    for f in tr.get("families", []):
        if f not in fams:
            raise ValueError(f"unknown walk model family {f!r}; defined: {sorted(fams)}")
        bad = [e for e in tr["sgd_epochs"] if not 1 <= int(e) <= int(tr["max_epochs"])]
        if bad:
            raise ValueError(f"trajectory epochs {bad} to interpolate are beyond the run's budget "
                             f"of {tr['max_epochs']} epochs")
    tb = s.get("tables") or {}
    if tb:
        fam_of(tb)
        for key in ("epochs", "barrier_epochs"):
            bad = [e for e in tb.get(key, []) if not 1 <= int(e) <= int(tb["max_epochs"])]
            if bad:
                raise ValueError(f"tables: {key} {bad} to interpolate are beyond the run's budget "
                                 f"of {tb['max_epochs']} epochs")
    nz = s.get("noise") or {}
    if nz:
        fam_of(nz)
        for f in nz["factors"]:
            if not (isinstance(f, (int, float)) and f > 0 and math.isfinite(f)):
                raise ValueError(f"noise factors must be positive (sigma^2 = factor x max variance "
                                 f">= 0; 0 is plain GD), got {f!r}")
    cs = s.get("cosine") or {}
    if cs:
        fam_of(cs)
    sc = s.get("schedules") or {}
    if sc:
        fam_of(sc)
        if not 0 < sc["warmup_frac"] and sc["warmup_frac"] + sc["flat_frac"] < 1:
            pass
        if not (0 < sc["warmup_frac"] < 1 and 0 <= sc["flat_frac"] < 1
                and sc["warmup_frac"] + sc["flat_frac"] < 1):
            raise ValueError("schedules: need 0 < warmup_frac, 0 <= flat_frac, warmup + flat < 1")
