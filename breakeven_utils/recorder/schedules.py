"""Learning-rate schedules of the recorder: constant, step decay, decay on a
validation plateau, cyclic (CLR, triangular), trapezoid (A Walk with SGD Sec. 5)
and one-cycle (Smith's 1cycle, sharpest directions Fig. 15), see :class:`Schedule`.

``RunConfig`` is imported for type hints only.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from breakeven_utils.recorder.config import RunConfig

__all__ = ["SCHEDULES", "Schedule", "ONE_CYCLE_ANNEAL", "one_cycle_lr", "check_one_cycle"]

SCHEDULES = ("constant", "step", "plateau", "cyclic", "trapezoid", "one_cycle")


class Schedule:
    """Learning rate at iteration ``t`` (0-based step index), epoch ``t // bpe``.

    * ``constant``: lr.
    * ``step``: lr * gamma**(number of milestones <= epoch); ``milestones=(100,)``,
      ``gamma=0.1`` divides lr by 10 from epoch 100 on (break-even App. G).
    * ``plateau``: like ``torch.optim.lr_scheduler.ReduceLROnPlateau`` on the
      validation loss measured at the end of every epoch: after more than
      ``plateau_patience`` epochs without a relative improvement of
      ``plateau_threshold``, lr *= ``plateau_factor`` (not below ``min_lr``).
    * ``cyclic`` (CLR, Smith 2017, triangular): with step size s,
      c = floor(1 + t / (2s)), x = |t/s - 2c + 1|,
      lr_t = base + (lr - base) * max(0, 1 - x), base = ``clr_base_lr``
      (default lr / 10): lr_0 = base, lr_s = lr, lr_2s = base.
    * ``trapezoid`` (A Walk with SGD Sec. 5): W = warmup_iters, F = flat_iters,
      A = anneal_iters, m = min_lr: lr_t = m + (lr - m) t / W for t < W;
      lr for W <= t < W + F; lr - (lr - m)(t - W - F) / A for
      W + F <= t < W + F + A; m afterwards.
    * ``one_cycle`` (Smith's 1cycle: L. N. Smith, "A disciplined approach to neural
      network hyper-parameters: Part 1", 2018, Sec. 4.1, the policy behind the
      "single cycle" schedule of the sharpest-directions paper, Fig. 15): one
      triangular CLR cycle shorter than the schedule, linearly up from the base
      b to lr and linearly back down to b, then an annihilation phase linearly
      from b down to m for the remaining iterations. Parameters: T =
      ``one_cycle_iters`` (iterations of the whole schedule, usually the run's;
      required), f = ``one_cycle_anneal`` (fraction of T in the annihilation
      phase, default 0.1), b = ``clr_base_lr`` (default lr / 10), m = ``min_lr``
      (default 0). With h = (1 - f) T / 2 (the half cycle) and c = 2h:
      lr_t = b + (lr - b) t / h for t < h; lr - (lr - b)(t - h) / h for
      h <= t < c; b - (b - m)(t - c) / (T - c) for c <= t < T; m for t >= T.
      So lr_0 = b, lr_h = lr, lr_c = b, lr_T = m (f = 0: up and down only,
      then m). This is ``torch.optim.lr_scheduler.OneCycleLR(max_lr=lr,
      total_steps=T, pct_start=h / T, anneal_strategy='linear',
      three_phase=True, div_factor=lr / b, final_div_factor=b / m)`` except
      that torch ends each phase one or two iterations early (its phase ends
      are pct_start T - 1 and 2 pct_start T - 2).
    """

    def __init__(self, config: RunConfig, batches_per_epoch: int):
        self.c, self.bpe = config, batches_per_epoch
        self.scale = 1.0  # plateau state
        self.best = math.inf
        self.bad_epochs = 0

    def __call__(self, t: int) -> float:
        c = self.c
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "step":
            epoch = t // self.bpe
            return c.lr * c.gamma ** sum(1 for m in c.milestones if m <= epoch)
        if c.schedule == "plateau":
            return max(c.lr * self.scale, c.min_lr)
        if c.schedule == "cyclic":
            base = _base_lr(c)
            s = c.clr_step_size
            cycle = math.floor(1 + t / (2 * s))
            x = abs(t / s - 2 * cycle + 1)
            return base + (c.lr - base) * max(0.0, 1 - x)
        if c.schedule == "trapezoid":
            w, f, a, m = c.warmup_iters, c.flat_iters, c.anneal_iters, c.min_lr
            if t < w:
                return m + (c.lr - m) * t / w
            if t < w + f:
                return c.lr
            if t < w + f + a:
                return c.lr - (c.lr - m) * (t - w - f) / a
            return m
        if c.schedule == "one_cycle":
            return one_cycle_lr(t, c.lr, c.one_cycle_iters, _anneal_fraction(c),
                                _base_lr(c), c.min_lr)
        raise AssertionError(c.schedule)

    def observe(self, val_loss: float) -> None:
        """End of an epoch (plateau schedule): feed the validation loss."""
        if self.c.schedule != "plateau":
            return
        if val_loss < self.best * (1 - self.c.plateau_threshold):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.c.plateau_patience:
                self.scale *= self.c.plateau_factor
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict) -> None:
        self.scale, self.best, self.bad_epochs = d["scale"], d["best"], d["bad_epochs"]


#: one_cycle: the annihilation phase's default fraction of the schedule
ONE_CYCLE_ANNEAL = 0.1


def _base_lr(c) -> float:
    return c.lr / 10 if c.clr_base_lr is None else c.clr_base_lr


def _anneal_fraction(c) -> float:
    return ONE_CYCLE_ANNEAL if c.one_cycle_anneal is None else c.one_cycle_anneal


def one_cycle_lr(t: int, lr: float, total: int, anneal: float, base: float, final: float) -> float:
    """Smith's one-cycle learning rate at iteration ``t`` (see :class:`Schedule`):
    linearly ``base`` -> ``lr`` -> ``base`` over the first (1 - ``anneal``) ``total``
    iterations, then ``base`` -> ``final`` over the rest; ``final`` from ``total`` on."""
    h = (1.0 - anneal) * total / 2.0
    c = 2.0 * h
    if t < h:
        return base + (lr - base) * t / h
    if t < c:
        return lr - (lr - base) * (t - h) / h
    if t < total:
        return base - (base - final) * (t - c) / (total - c)
    return final


def check_one_cycle(c) -> None:
    """ValueError unless the one-cycle settings of RunConfig ``c`` are usable (called by
    ``RunConfig.validate``, before any compute); its fields are only for that schedule."""
    if c.schedule != "one_cycle":
        for name in ("one_cycle_iters", "one_cycle_anneal"):
            if getattr(c, name) is not None:
                raise ValueError(f"{name} is only used with schedule='one_cycle' "
                                 f"(schedule is {c.schedule!r})")
        return
    T = c.one_cycle_iters
    if T is None:
        raise ValueError("schedule='one_cycle' needs one_cycle_iters (the iterations of the whole "
                         "schedule, usually max_epochs x batches per epoch)")
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 2:
        raise ValueError(f"one_cycle_iters must be an integer >= 2, got {T!r}")
    f = _anneal_fraction(c)
    if not 0 <= f < 1:
        raise ValueError(f"one_cycle_anneal must be in [0, 1) (the annihilation phase's share "
                         f"of one_cycle_iters), got {f!r}")
    if (1 - f) * T < 2:
        raise ValueError(f"one_cycle: the cycle ((1 - one_cycle_anneal) x one_cycle_iters = "
                         f"{(1 - f) * T:g} iterations) needs at least 2 iterations")
    b = _base_lr(c)
    if not b > 0:
        raise ValueError(f"one_cycle: the base learning rate clr_base_lr must be positive, got {b!r}")
    if not c.min_lr <= b:
        raise ValueError(f"one_cycle: min_lr={c.min_lr!r} (the final learning rate) must not exceed "
                         f"the base learning rate {b!r}")


