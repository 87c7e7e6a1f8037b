"""Notebook 1's runs (break-even paper Sec. 4.1, App. C): SimpleCNN trained with SGD at
each learning rate and seed, and the runs of Fig. 9; ``run_configs(profile)`` lists every
run the notebook launches (``papers.registry``, ``make plan``)."""

from __future__ import annotations

from breakeven_utils.papers.break_even.settings import FIG9_METRICS, TRAJECTORY_METRICS, settings
from breakeven_utils.recorder.config import RunConfig

__all__ = ["trajectory_configs", "fig9_configs", "run_label", "run_configs"]


def _config(s: dict, lr: float, seed: int, metrics, max_epochs: int) -> RunConfig:
    """One SGD run of the profile's model at learning rate ``lr`` recording ``metrics``."""
    return RunConfig(
        dataset=s["dataset"], n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"],
        n_measure=s["n_measure"], data_seed=0, normalize=s["normalize"],
        model=s["model"], model_kwargs=dict(s["model_kwargs"]),
        optimizer="sgd", lr=float(lr), batch_size=s["batch_size"], seed=int(seed),
        max_epochs=max_epochs, target_train_acc=s["target_train_acc"],
        acc_thresholds=(s["target_train_acc"],),
        measure_every=s["measure_every"], measure_dense_until=s["measure_dense_until"],
        metrics=metrics, hessian_k=1, hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"],
        K_L=s["K_L"], K_M=s["K_M"], K1_L=s["K1_L"], spectrum_k=s["spectrum_k"])


def trajectory_configs(s: dict) -> list:
    """SimpleCNN trained with SGD at each of ``s['lrs']`` and seed, until the target
    training accuracy (65%) or ``max_epochs`` (Sec. 4.1)."""
    return [_config(s, lr, seed, TRAJECTORY_METRICS, s["max_epochs"])
            for lr in s["lrs"] for seed in s["seeds"]]


def fig9_configs(s: dict) -> list:
    """Trajectories for Fig. 9 (lambda_K^1 at M=128 vs M=1): the first seed of the main
    runs plus cheaper runs (K only) for the learning rates the main runs lack."""
    main = {c.lr: c for c in trajectory_configs(s) if c.seed == s["seeds"][0]}
    return [main.get(float(lr)) or _config(s, lr, s["seeds"][0], FIG9_METRICS, s["fig9_max_epochs"])
            for lr in s["fig9_lrs"]]


def run_label(lr: float, seed: int) -> str:
    """A trajectory's name in the tables and the UMAP of Fig. 1, e.g. 'eta=0.01/seed0'."""
    return f"eta={lr:g}/seed{seed}"


def run_configs(profile: str = "smoke", **overrides) -> list:
    """Every run notebook 1 launches at ``profile`` (the trajectories, then the Fig. 9
    runs they do not already contain), validated, without training (``make plan``)."""
    s = settings(profile, **overrides)
    return list({c.key(): c for c in trajectory_configs(s) + fig9_configs(s)}.values())
