"""Scale profiles: ``smoke`` (seconds, tests), ``cpu`` (a laptop, minutes, real data),
``paper`` (the papers' settings, for a GPU).

A profile is a plain dictionary of defaults that a notebook reads by name and
may override: ``get_profile("cpu", n_train=5000)``. Keys shared by every
notebook sit at the top level; a notebook's own settings sit under its section
name (``break_even``, ``conjectures``, ...) and are merged over the shared ones
by ``get_profile(name, section=...)``.

Shared keys
-----------
dataset, n_train, n_val, n_test, n_measure
    data set and subset sizes (``n_measure``: the curvature measurement set, the
    papers use about 5% of the training set; ``None`` means the full split);
seeds
    initialisation/shuffling seeds, one run per seed;
K_L, K_M
    number and size of the mini-batch gradients behind K (break-even App. C:
    L=25, M=128);
hessian_k, hessian_tol
    Lanczos eigenpairs and relative tolerance for the Hessian;
hessian_n
    examples in the Hessian measurement set;
measure_every, measure_dense_until
    measure every ``measure_every`` iterations up to ``measure_dense_until``,
    then once per epoch;
max_epochs
    training budget in epochs.
"""

from __future__ import annotations

import copy

__all__ = ["PROFILES", "get_profile", "check_override"]

PROFILES: dict[str, dict] = {
    "smoke": {
        "description": "seconds on a CPU; synthetic 3x8x8 images; for tests and nbval",
        "dataset": "synthetic",
        "n_train": 1024, "n_val": 256, "n_test": 256, "n_measure": 128,
        "seeds": [0],
        "K_L": 8, "K_M": 16,
        "hessian_k": 1, "hessian_tol": 1e-3, "hessian_n": 128,
        "measure_every": 8, "measure_dense_until": 64,
        "max_epochs": 2,
        "break_even": {
            "model": "simple_cnn",
            "model_kwargs": {"image_size": 8, "width": [8, 8, 16, 16], "hidden": 32},
            "normalize": "standard", "n_train": 512, "n_test": 128, "hessian_n": 64,
            "lrs": [0.1, 0.01], "fig9_lrs": [0.1, 0.01, 0.001], "batch_size": 32,
            "target_train_acc": 0.65, "max_epochs": 2, "fig9_max_epochs": 1,
            "measure_every": 8, "measure_dense_until": 32,
            "K_L": 8, "K_M": 16, "K1_L": 32, "spectrum_k": 4,
        },
        "conjectures": {
            # 15 tiny runs on the synthetic set; ResNet-32 skipped (too slow for seconds)
            "n_train": 512, "n_measure": 128, "hessian_n": 64, "acc_threshold": 0.3,
            "measure_every": 8, "measure_dense_until": 32, "max_epochs": 2,
            "simple_cnn": {"model_kwargs": {"image_size": 8, "width": [8, 8, 16, 16], "hidden": 32},
                           "lrs": [0.1, 0.05, 0.01], "batch_sizes": [16, 32, 64],
                           "batch_for_eta": 32, "lr_for_S": 0.05, "lambda_H": True},
            "resnet32": {"skip": "ResNet-32 takes minutes per run on a CPU; run the cpu or paper profile"},
            "mlp": {"dataset": "synthetic", "normalize": "unit", "model_kwargs": {"hidden": [32, 16]},
                    "lrs": [0.1, 0.05, 0.01], "batch_size": 64, "lambda_H": True},
            "momentum": {"betas": [0.1, 0.5, 0.9], "lr": 0.01, "fixed_beta": 0.9, "fixed_lrs": [0.01, 0.001]},
            "decay": {"lrs": [0.1, 0.01], "decay_epoch": 1},
            "unavailable": {},
        },
    },
    "cpu": {
        "description": "minutes on 2 CPU cores; real data subsets; shows the papers' effects",
        "dataset": "cifar10",
        "n_train": 10_000, "n_val": 2_000, "n_test": 2_000, "n_measure": 500,
        "seeds": [0, 1],
        "K_L": 25, "K_M": 128,
        "hessian_k": 1, "hessian_tol": 1e-3, "hessian_n": 500,
        "measure_every": 25, "measure_dense_until": 200,
        "max_epochs": 10,
        "break_even": {
            # eta in {0.1, 0.01}, not the paper's {0.01, 0.001}: at 0.001 SimpleCNN needs
            # thousands of CPU-minutes to reach 65% training accuracy
            "model": "simple_cnn", "model_kwargs": {}, "normalize": "standard",
            # 8 epochs (624 steps): past eta=0.01's lambda_K^1 peak (~iteration 400-470 here);
            # measured every 12 steps up to 96 (eta=0.1 reaches its break-even point near
            # iteration 60-80: 6-7 measurements before it), then every epoch; 3 seeds, whose
            # spread the verdicts use (#21)
            "lrs": [0.1, 0.01], "fig9_lrs": [0.1, 0.01, 0.001], "batch_size": 128,
            "target_train_acc": 0.65, "max_epochs": 8, "fig9_max_epochs": 3,
            "measure_every": 12, "measure_dense_until": 96,
            "K1_L": 250, "spectrum_k": 10, "n_test": 1_000, "hessian_n": 250,
            "seeds": [0, 1, 2],
            # Lanczos stops at residual <= tol |lambda|: eigenvalues ~tol^2 accurate
            "hessian_tol": 1e-2,
        },
        "conjectures": {
            # CIFAR-10 subset, 8 epochs, K about once per epoch, one seed; lambda_H only for
            # the SimpleCNN sweeps
            "n_train": 5_000, "n_val": 1_000, "n_test": 1_000, "n_measure": 500, "hessian_n": 250,
            "hessian_tol": 1e-2, "seeds": [0], "acc_threshold": 0.4, "max_epochs": 8,
            "measure_every": 50, "measure_dense_until": 100,
            # SimpleCNN: 3 seeds, every run 400 steps whatever its eta or S (equal steps: at
            # equal epochs S=512 got 78 steps), measured every 50 steps; S in {32, 128, 256}
            # (the paper's text: 10 and 100; 256 stands for its 300 at a cpu cost: 400 steps
            # of S=512 take 6 single-thread minutes per seed)
            "simple_cnn": {"model_kwargs": {}, "lrs": [0.1, 0.05, 0.01], "batch_sizes": [32, 128, 256],
                           "batch_for_eta": 128, "lr_for_S": 0.05, "lambda_H": True,
                           "seeds": [0, 1, 2], "max_iters": 400, "measure_iters": [50, 100, 50]},
            # ResNet-32 skipped: shrunk to 3,500 images and 5 epochs it cost 56 of the notebook's
            # 64 cpu minutes (K at 52 s a measurement) and gave 8 claims, all not testable (every
            # maximum at the first measurement after its transient, training accuracy <= 37%)
            "resnet32": {"skip": "ResNet-32 does not reach its lambda_K^1 peak within a cpu budget "
                                 "(3,500 images, 5 epochs: training accuracy <= 37%, 56 of 64 minutes); "
                                 "run the paper profile"},
            "mlp": {"dataset": "fashion_mnist", "normalize": "unit", "model_kwargs": {},
                    "n_train": 10_000, "lrs": [0.1, 0.05, 0.01], "batch_size": 64, "lambda_H": True},
            "momentum": {"betas": [0.1, 0.5, 0.9], "lr": 0.01, "fixed_beta": 0.9, "fixed_lrs": [0.01, 0.001]},
            "decay": {"lrs": [0.1, 0.01], "decay_epoch": 4},
            "unavailable": {
                "lstm_imdb": "IMDB is not in the offline data; run profile paper with the data present",
                "bert_mnli": "MNLI/BERT need user-supplied data and a GPU",
                "densenet_imagenet": "ImageNet needs user-supplied data and a GPU"},
        },
    },
    "paper": {
        "description": "the papers' settings (45k/5k CIFAR-10 split, 5 seeds); for a GPU",
        "dataset": "cifar10",
        "n_train": 45_000, "n_val": 5_000, "n_test": None, "n_measure": 2_250,
        "seeds": [0, 1, 2, 3, 4],
        "K_L": 25, "K_M": 128,
        "hessian_k": 5, "hessian_tol": 1e-3, "hessian_n": 2_250,
        "measure_every": 10, "measure_dense_until": 1_000,
        "max_epochs": 200,
        "break_even": {
            "model": "simple_cnn", "model_kwargs": {}, "normalize": "standard",
            "lrs": [0.01, 0.001], "fig9_lrs": [0.1, 0.01, 0.001], "batch_size": 128,
            "target_train_acc": 0.65, "max_epochs": 200, "fig9_max_epochs": 50,
            "measure_every": 10, "measure_dense_until": 2_000,
            "K1_L": 4_500, "spectrum_k": 20, "n_test": None,
        },
        "conjectures": {
            # Sec. 4.2 / App. D-G; the text reports eta=0.1, 0.01 and S=10, 100 for SimpleCNN;
            # the third value of each sweep is this project's choice
            "acc_threshold": 0.6, "max_epochs": 200,
            "simple_cnn": {"model_kwargs": {}, "lrs": [0.1, 0.05, 0.01], "batch_sizes": [10, 100, 300],
                           "batch_for_eta": 128, "lr_for_S": 0.05, "lambda_H": True},
            "resnet32": {"model_kwargs": {}, "lrs": [0.1, 0.05, 0.01], "batch_sizes": [32, 128, 512],
                         "batch_for_eta": 128, "lr_for_S": 0.05, "lambda_H": True,
                         "weight_decay": 1e-4, "weight_decay_on": "conv_kernels", "augment": True},
            "mlp": {"dataset": "fashion_mnist", "normalize": "unit", "model_kwargs": {},
                    "n_train": 55_000, "n_val": 5_000, "lrs": [0.1, 0.05, 0.01], "batch_size": 64,
                    "lambda_H": True},
            # App. F: eta=0.1 with beta=0.9 diverges (recorded as diverged)
            "momentum": {"betas": [0.1, 0.5, 0.9], "lr": 0.01, "fixed_beta": 0.9,
                         "fixed_lrs": [0.1, 0.01, 0.001]},
            "decay": {"lrs": [0.1, 0.01], "decay_epoch": 100},
            "unavailable": {
                "lstm_imdb": "IMDB is not in the offline data; supply it to run LSTM (Fig. 4, 14, 15)",
                "bert_mnli": "MNLI/BERT need user-supplied data (Fig. 6, 16)",
                "densenet_imagenet": "ImageNet needs user-supplied data (Fig. 6, 17)"},
        },
    },
}


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, (list, tuple)):
        return "list"
    return type(v).__name__


def check_override(key: str, value, default) -> None:
    """Raise ``ValueError`` naming ``key`` when an override does not have the shape of the
    profile's own value: a number for a number (positive where the profile's is), a non-empty
    list of the same kind of elements for a list, a bool for a bool, a dict for a dict; None
    (the key's "use the default" value in several profiles) and any value where the profile
    has None are accepted."""
    if default is None or value is None:
        return
    want, got = _kind(default), _kind(value)
    example = repr(default) if len(repr(default)) <= 40 else repr(default)[:37] + "..."
    if want != got:
        raise ValueError(f"override {key!r}: expected a {want} like the profile's {example}, "
                         f"got {type(value).__name__} {value!r}")
    if want == "number":
        if isinstance(default, int) and not isinstance(value, int):
            raise ValueError(f"override {key!r}: expected an integer like the profile's {example}, "
                             f"got {value!r}")
        if default > 0 and not value > 0:
            raise ValueError(f"override {key!r}: must be positive (the profile has {example}), got {value!r}")
    if want == "list":
        if default and not value:
            raise ValueError(f"override {key!r}: must not be empty (the profile has {example})")
        kinds = {_kind(x) for x in default}
        bad = [x for x in value if kinds and _kind(x) not in kinds]
        if bad:
            raise ValueError(f"override {key!r}: elements must be {' or '.join(sorted(kinds))} like the "
                             f"profile's {example}, got {bad[0]!r}")


def get_profile(name: str, section: str | None = None, **overrides) -> dict:
    """The profile ``name`` as a new dict: shared keys, then ``section``'s keys, then ``overrides``.

    Unknown profile names, sections or override keys, and override values of the wrong
    shape (:func:`check_override`), raise ``ValueError`` naming the key, so a typo in a
    notebook's parameters cell fails before any compute.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    base = copy.deepcopy(PROFILES[name])
    sections = {k for k, v in base.items() if isinstance(v, dict)}
    merged = {k: v for k, v in base.items() if k not in sections}
    if section is not None:
        if section not in sections:
            raise ValueError(f"profile {name!r} has no section {section!r}; "
                             f"sections: {', '.join(sorted(sections)) or 'none'}")
        merged.update(base[section])
    unknown = set(overrides) - set(merged)
    if unknown:
        raise ValueError(f"unknown profile key(s) {sorted(unknown)}; valid: {', '.join(sorted(merged))}")
    for key, value in overrides.items():
        check_override(key, value, merged[key])
    merged.update(overrides)
    merged["profile"] = name
    return merged


# ----------------------------------------------------------------------------- notebook 3 (batchnorm)
# Break-even Sec. 4.3 / App. H: SimpleCNN-BN over eta and S, SimpleCNN over eta
# (breakeven_utils.papers.batchnorm). bn_lrs / plain_lrs: eta of SimpleCNN-BN / SimpleCNN
# at S = batch_size; batch_sizes: S of SimpleCNN-BN at eta = lr_for_S (the paper does
# not name it; 0.01 is the eta its Sec. 4.3 comparison uses, and makes S = 128 the
# same run as the eta sweep's eta = 0.01). measure_early: dense measurement
# iterations (Fig. 7b's iteration axis), then every epoch (None: the shared
# measure_every / measure_dense_until schedule); early_iters: the window of the
# early-phase claims; early_plot_iters: the iteration axis of Fig. 7b / 26b; window:
# moving average (measurements) for curves and maxima. Worker processes and
# threads per run: store.sweeps.sweep_env (2 x 1 thread except at smoke).
_BATCHNORM = {
    "smoke": {
        "n_train": 512, "n_val": 256, "n_test": 128, "n_measure": 128, "hessian_n": 64,
        "model_kwargs": {"image_size": 8, "width": [8, 8, 16, 16], "hidden": 32},
        "bn_lrs": [0.001, 0.01, 0.1, 1.0], "plain_lrs": [0.01, 1.0], "batch_size": 32,
        "batch_sizes": [8, 16, 32, 64], "lr_for_S": 0.01, "K_L": 8, "K_M": 16,
        "max_epochs": 2, "measure_early": [0, 2, 4, 8, 16], "early_iters": 16, "early_plot_iters": 32,
        "window": 3, "lambda_H": True, "lambda_H_S": True, "lambda_H_plain": False,
    },
    "cpu": {
        # CIFAR-10 subset of 3,200 images (K needs L*M = 3,200), one seed, lambda_H (64
        # examples) for the eta sweep only
        "n_train": 3_200, "n_val": 500, "n_test": 500, "n_measure": 250, "hessian_n": 64,
        "hessian_tol": 1e-2, "seeds": [0], "model_kwargs": {},
        "bn_lrs": [0.001, 0.01, 0.1, 1.0], "plain_lrs": [0.01, 1.0], "batch_size": 128,
        "batch_sizes": [10, 32, 128, 512], "lr_for_S": 0.01, "K_L": 25, "K_M": 128,
        # every run 300 steps (12 epochs at S=128; it was 2 epochs = 50 steps, and S=512 had
        # 12), measured at 0, 5, 12, every 25 steps to 100, then every 50 (#21)
        "max_epochs": 2, "max_iters": 300, "measure_iters": [25, 100, 50],
        "measure_early": [0, 5, 12], "early_iters": 100, "early_plot_iters": 200,
        "window": 3, "lambda_H": True, "lambda_H_S": False, "lambda_H_plain": False,
    },
    "paper": {
        # 45k/5k split, 5 seeds, the shared dense-then-per-epoch schedule; for a GPU
        "model_kwargs": {}, "bn_lrs": [0.001, 0.01, 0.1, 1.0], "plain_lrs": [0.01, 1.0],
        "batch_size": 128, "batch_sizes": [10, 32, 128, 512], "lr_for_S": 0.01,
        "max_epochs": 200, "measure_early": None, "early_iters": 1_000, "early_plot_iters": 2_000,
        "window": 3, "lambda_H": True, "lambda_H_S": True, "lambda_H_plain": False,
    },
}
for _name, _sec in _BATCHNORM.items():
    PROFILES[_name]["batchnorm"] = _sec

# ----------------------------------------------------------------------------- walk (notebook 4)
# A Walk with SGD (Xing et al. 2018): see breakeven_utils/papers/walk for what each
# experiment runs. Families: the model/data pairs the experiments refer to by name.
_WALK = {
    "smoke": {
        "seeds": [0], "hessian_n": 64, "hessian_tol": 1e-2,
        "families": {
            "mlp": {"dataset": "synthetic", "normalize": "unit", "model": "mlp",
                    "model_kwargs": {"hidden": [32, 16]}, "n_train": 256, "n_val": 128,
                    "n_test": 128, "batch_size": 32, "label": "MLP"},
            "conv": {"dataset": "synthetic", "normalize": "standard", "model": "simple_cnn_bn",
                     "model_kwargs": {"width": [4, 4, 8, 8], "hidden": 16}, "n_train": 128,
                     "n_val": 64, "n_test": 64, "batch_size": 16, "label": "SimpleCNN-BN"},
        },
        "trajectory": {"families": ["mlp", "conv"], "lr": 0.1, "iterations": 8,
                       "sgd_epochs": [1, 2], "max_epochs": 2},
        "tables": {"family": "mlp", "lrs": [0.1, 0.05], "epochs": [1, 2, 4], "barrier_epochs": [3],
                   "max_epochs": 4, "curve_every": 1},
        "cosine": {"family": "mlp", "lr": 0.1, "batch_sizes": [8, 32, 128], "batch_size": 32,
                   "lrs": [0.05, 0.1, 0.2], "iterations": 40, "transient": 10},
        "noise": {"family": "mlp", "lr": 0.1, "factors": [0.1, 0.05], "iterations": 30,
                  "measure_every": 5, "noise_batch_size": 32, "n_batches": 8},
        "schedules": {"family": "mlp", "epochs": 4, "lrs": [0.1], "seeds": [0],
                      "warmup_frac": 0.25, "flat_frac": 0.35, "step_at": [0.5, 0.75]},
        "quadratic": {"lambdas": [4.0, 1.0, 0.25], "eta": 0.35, "steps": 25},
    },
    "cpu": {
        # ~15 minutes on 2 cores from an empty run store (measured: see the README)
        "seeds": [0], "hessian_n": 500, "hessian_tol": 1e-2,
        "families": {
            # Fashion-MNIST stands in for MNIST (the offline copy); 4,000 training images
            "mlp": {"dataset": "fashion_mnist", "normalize": "unit", "model": "mlp",
                    "model_kwargs": {}, "n_train": 4_000, "n_val": 1_000, "n_test": 2_000,
                    "batch_size": 100, "label": "MLP 784-300-100-10"},
            "mlp_gd": {"dataset": "fashion_mnist", "normalize": "unit", "model": "mlp",
                       "model_kwargs": {}, "n_train": 2_000, "n_val": 1_000, "n_test": 2_000,
                       "batch_size": 100, "label": "MLP 784-300-100-10"},
            # a narrow SimpleCNN with BatchNorm on 480 CIFAR-10 images, batch 12: 40 steps/epoch
            # (each interpolated step costs 11 forward passes over the training set)
            "conv": {"dataset": "cifar10", "normalize": "standard", "model": "simple_cnn_bn",
                     "model_kwargs": {"width": [8, 8, 16, 16], "hidden": 32}, "n_train": 480,
                     "n_val": 1_000, "n_test": 1_000, "batch_size": 12,
                     "label": "SimpleCNN-BN (8,8,16,16)"},
        },
        "trajectory": {"families": ["conv", "mlp"], "lr": 0.1, "iterations": 40,
                       "sgd_epochs": [1], "max_epochs": 1},
        # MLP: every step of epochs 1, 2, 10, 25, 100; Fig. 8: every 3rd epoch of 1-40 (lr 0.1)
        "tables": {"family": "mlp", "lrs": [0.1, 0.05], "epochs": [1, 10, 25, 100],
                   "extra_epochs": [2], "barrier_epochs": list(range(1, 41, 3)),
                   "max_epochs": 100, "curve_every": 5},
        "cosine": {"family": "mlp", "lr": 0.1, "batch_sizes": [25, 100, 500], "batch_size": 100,
                   "lrs": [0.05, 0.1, 0.2], "iterations": 400, "transient": 50},
        # 2,000 steps (at 500 GD's training loss still fell 16% over the last fifth), 3 seeds
        # whose spread the verdicts use (#21)
        "noise": {"family": "mlp_gd", "lr": 0.1, "factors": [0.1, 0.05], "iterations": 2_000,
                  "measure_every": 40, "seeds": [0, 1, 2], "noise_batch_size": 100, "n_batches": 20},
        "schedules": {"family": "mlp", "epochs": 30, "lrs": [0.1, 0.2], "seeds": [0, 1, 2],
                      "warmup_frac": 0.2, "flat_frac": 0.4, "step_at": [0.5, 0.75]},
        "quadratic": {"lambdas": [4.0, 1.0, 0.25], "eta": 0.35, "steps": 25},
    },
    "paper": {
        # Sec. 3, App. A: VGG-11 (lr 0.1) and ResNet-56 (lr 0.3 in Fig. 7 / Table 2; 0.1 in
        # App. A: set resnet56 "lr" to choose) on CIFAR-10 (45k/5k), MLP on MNIST, batch 100,
        # no momentum, 100 epochs. GD's full-batch gradient accumulated over chunks of 5,000 images,
        # as the authors' gd.py does (--bs 45000 --mbs 5000; BatchNorm statistics per chunk): one
        # pass over 45,000 images would hold all their activations (make preflight flags it)
        "seeds": [0], "hessian_n": 2_250, "hessian_tol": 1e-3, "gd_chunk": 5_000,
        "families": {
            "vgg11": {"dataset": "cifar10", "normalize": "standard", "model": "vgg11",
                      "model_kwargs": {}, "n_train": 45_000, "n_val": 5_000, "n_test": None,
                      "batch_size": 100, "label": "VGG-11"},
            "resnet56": {"dataset": "cifar10", "normalize": "standard", "model": "resnet56",
                         "model_kwargs": {}, "n_train": 45_000, "n_val": 5_000, "n_test": None,
                         "batch_size": 100, "label": "ResNet-56"},
            "mlp": {"dataset": "mnist", "normalize": "unit", "model": "mlp", "model_kwargs": {},
                    "n_train": 55_000, "n_val": 5_000, "n_test": None, "batch_size": 100,
                    "label": "MLP 784-300-100-10"},
        },
        "trajectory": {"families": ["vgg11", "resnet56", "mlp"], "lr": 0.1, "iterations": 40,
                       "sgd_epochs": [1, 2, 25, 100], "max_epochs": 100},
        "tables": {"family": "vgg11", "lrs": [0.1, 0.05], "epochs": [1, 10, 25, 100],
                   "extra_epochs": [2], "barrier_epochs": list(range(1, 41)),
                   "max_epochs": 100, "curve_every": 1},
        "cosine": {"family": "vgg11", "lr": 0.1, "batch_sizes": [100, 500, 1000],
                   "batch_size": 100, "lrs": [0.1, 0.2, 0.3], "iterations": 4_500, "transient": 200},
        "noise": {"family": "vgg11", "lr": 0.1, "factors": [0.1, 0.05], "iterations": 3_000,
                  "measure_every": 10, "noise_batch_size": 100, "n_batches": 50},
        "schedules": {"family": "vgg11", "epochs": 100, "lrs": [0.05, 0.1, 0.2], "seeds": [0, 1],
                      "warmup_frac": 0.2, "flat_frac": 0.4, "step_at": [0.5, 0.75]},
        "quadratic": {"lambdas": [4.0, 1.0, 0.25], "eta": 0.35, "steps": 25},
    },
}
for _name, _sec in _WALK.items():
    PROFILES[_name]["walk"] = _sec

# ----------------------------------------------------------------------------- notebook 5 (nsgd)
# Sharpest directions and Nudged SGD (Jastrzebski et al. 2018). Eigenpairs by magnitude
# ('LM', the authors' eigsh default) on hessian_n examples; the paper: 2,250 = 5% of 45k.
# models: families {name: model, model_kwargs, L2, probe_lrs (Fig. 4 probes), "fig3": False
# (no eta / S sweeps), "figure" (the probe figure's number), "max_epochs" / "top_k" (of its
# Fig. 2/3 trajectories, default the trajectory block's / top_k), "skip": reason}; schedules /
# momentum: "models" (default ["simplecnn"]) with per-model overrides under the model name;
# schedules "kinds" (default all: constant, step, one cycle).
_TINY = {"model": "simple_cnn", "model_kwargs": {"image_size": 8, "width": [4, 4, 8, 8], "hidden": 16}}
_NSGD = {
    "smoke": {
        "n_train": 512, "n_val": 128, "n_test": 128, "n_measure": 64, "hessian_n": 64,
        "hessian_tol": 1e-2, "top_k": 3,
        "models": {
            "simplecnn": dict(_TINY, probe_lrs=[0.05]),
            "resnet32": {"skip": "ResNet-32 takes minutes per run on a CPU; run the cpu or paper profile"},
        },
        "trajectory": {"lr": 0.1, "batch_size": 32, "max_epochs": 2, "measure_every": 4,
                       "measure_dense_until": 16, "fig3_lrs": [0.1, 0.02], "fig3_batch_sizes": [16, 64]},
        "probe": {"batch_size": 32, "max_epochs": 2, "measure_every": 8, "hessian_k": 5},
        "variants": {"parent_lr": 0.05, "restart_epoch": 1, "iters": 6, "measure_every": 2,
                     "gammas": [0.1, 10], "hessian_n": 32, "tol": 1e-2},
        "table": {"models": ["simplecnn"], "lr": 0.05, "batch_size": 32, "k": 3, "max_epochs": 3,
                  "patience": 1, "gammas": [0.01, 0.1, 1, 10], "sgd_lrs": [0.1, 0.02, 0.01],
                  "momentum": 0.9, "momentum_gammas": [0.01, 1, 5], "train_eval_on": "measure",
                  "simplecnn": {}},
        "schedules": {"lr": 0.1, "max_epochs": 2, "milestones": [1]},
        "momentum": {"lr": 0.02, "betas": [0.0, 0.9]},
        "unavailable": {"cifar100": "Table 2 needs CIFAR-100 (not in the offline data); paper profile",
                        "vgg11": "VGG-11 (Fig. 3, 15, 16): paper profile only; SimpleCNN here",
                        "resnet32_bn": "Fig. 12 (ResNet-32 with BatchNorm): paper profile only"},
    },
    "cpu": {
        # CIFAR-10 subset of 5,000; Hessian set 100 examples (2%; the paper: 5%), Lanczos tol
        # 0.1 (residual; eigenvalues ~1% accurate), top-3 instead of top-10; measured here
        # (2 cores, shared): a step 0.6 s, an HVP on 100 examples ~1.4 s, a warm top-5 ~12 HVPs
        "n_train": 5_000, "n_val": 1_000, "n_test": 1_000, "n_measure": 250, "hessian_n": 100,
        "hessian_tol": 1e-1, "top_k": 3, "seeds": [0],
        "models": {
            "simplecnn": {"model": "simple_cnn", "model_kwargs": {}, "probe_lrs": [0.005]},
            # Fig. 2/3 only (no probes, tables or schedules), shortened to the first 2 epochs
            # (the paper's Fig. 3 marks the end of epoch 2) and the two largest eigenvalues: a
            # step costs ~3.5x a SimpleCNN step and an HVP ~4x, about 6 min on 2 cores
            "resnet32": {"model": "resnet32", "model_kwargs": {"bn": False}, "weight_decay": 0.005,
                         "weight_decay_on": "kernels", "probe_lrs": [], "max_epochs": 4, "top_k": 2},
        },
        # #21: trajectories 8 epochs (4 left eta=0.02 and S=512 still rising at the end), the
        # probe run (parent of Fig. 5's variants) 8 epochs, restarted at its end, Table 1 6
        # epochs, the schedules' step at epoch 4 of 8 (after eta=0.1's rho(H) peak, not before)
        "trajectory": {"lr": 0.1, "batch_size": 128, "max_epochs": 8, "measure_every": 13,
                       "measure_dense_until": 52, "fig3_lrs": [0.1, 0.02], "fig3_batch_sizes": [128, 512]},
        "probe": {"batch_size": 128, "max_epochs": 8, "measure_every": 26, "hessian_k": 3},
        "variants": {"parent_lr": 0.005, "restart_epoch": 8, "iters": 15, "measure_every": 1,
                     "gammas": [0.1, 10], "hessian_n": 64, "tol": 1e-1},
        "table": {"models": ["simplecnn"], "lr": 0.01, "batch_size": 128, "k": 3, "max_epochs": 6,
                  "patience": 1, "gammas": [0.01, 0.1, 1, 10], "sgd_lrs": [0.1, 0.005],
                  "momentum": 0.9, "momentum_gammas": [0.01, 1, 5], "train_eval_on": "measure",
                  "simplecnn": {}},
        "schedules": {"lr": 0.1, "max_epochs": 8, "milestones": [4],
                      "kinds": ["constant", "step", "one cycle"]},
        "momentum": {"lr": 0.02, "betas": [0.0, 0.9]},
        "unavailable": {"cifar100": "Table 2 needs CIFAR-100 (not in the offline data); paper profile",
                        "vgg11": "VGG-11 (Fig. 3, 15, 16): paper profile only; SimpleCNN here",
                        "resnet32_bn": "Fig. 12 (ResNet-32 with BatchNorm): paper profile only (budget)",
                        "sgd_0.0025": "the SGD(0.0025) row of Table 1: paper profile only (budget)"},
    },
    "paper": {
        "hessian_n": 2_250, "n_measure": 2_250, "hessian_tol": 1e-3, "top_k": 10, "augment": True,
        "models": {
            "simplecnn": {"model": "simple_cnn", "model_kwargs": {}, "probe_lrs": [0.005, 0.01]},
            "resnet32": {"model": "resnet32", "model_kwargs": {"bn": False}, "weight_decay": 0.005,
                         "weight_decay_on": "kernels", "probe_lrs": [0.025, 0.01]},
            "resnet32_nol2": {"model": "resnet32", "model_kwargs": {"bn": False}, "probe_lrs": []},
            # Fig. 12: the Fig. 4 probes for ResNet-32 with BatchNorm (L2 as ResNet-32), no sweeps
            "resnet32_bn": {"model": "resnet32", "model_kwargs": {"bn": True}, "weight_decay": 0.005,
                            "weight_decay_on": "kernels", "probe_lrs": [0.0025], "fig3": False,
                            "figure": "12"},
            # Fig. 3, 15, 16: VGG-11 (the model's default He init), final layer for 10 classes
            "vgg11": {"model": "vgg11", "model_kwargs": {}, "probe_lrs": []},
        },
        "trajectory": {"lr": 0.1, "batch_size": 128, "max_epochs": 100, "measure_every": 10,
                       "measure_dense_until": 1_000, "fig3_lrs": [0.1, 0.05, 0.01],
                       "fig3_batch_sizes": [32, 128, 512]},
        "probe": {"batch_size": 128, "max_epochs": 8, "measure_every": 5},
        "variants": {"parent_lr": 0.005, "restart_epoch": 4, "iters": 500, "measure_every": 5,
                     "gammas": [0.01, 0.1, 5, 10], "hessian_n": 2_250, "tol": 1e-3},
        "table": {"models": ["simplecnn", "resnet32"], "lr": 0.01, "batch_size": 128, "k": 5,
                  "max_epochs": 100, "patience": 5, "gammas": [0.01, 0.1, 1, 10],
                  "sgd_lrs": [0.1, 0.005, 0.0025], "momentum": 0.9, "momentum_gammas": [0.01, 1, 5],
                  "simplecnn": {"model": "simple_cnn_wide"}},  # footnote 10: 100 filters, 5x5
        # Fig. 15 / 16 are VGG-11's (Fig. 16: eta = 0.1, S = 128); SimpleCNN's runs beside them
        "schedules": {"lr": 0.1, "max_epochs": 100, "milestones": [50, 75],
                      "models": ["simplecnn", "vgg11"]},
        "momentum": {"lr": 0.01, "betas": [0.0, 0.5, 0.9], "models": ["simplecnn", "vgg11"],
                     "vgg11": {"lr": 0.1}},
        "unavailable": {"cifar100": "Table 2 needs CIFAR-100 (not in the offline data)"},
    },
}
for _name, _sec in _NSGD.items():
    PROFILES[_name]["nsgd"] = _sec
